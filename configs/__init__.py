"""Config files shipped with codealign (configs/tiny-cpu.yaml is the default of iterate)."""

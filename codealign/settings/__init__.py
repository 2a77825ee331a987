"""Every setting of codealign: one light dataclass per config-file section.

These modules import neither torch nor transformers nor the code that uses them, so a
command that only needs its settings (``--help``, ``tasks``, ``execute``) starts fast.
``codealign.config`` loads YAML files, ``--set`` overrides and flags into them.
"""

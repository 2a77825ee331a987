"""Every setting of codealign: one light dataclass per config-file section.

These modules import neither torch nor transformers nor the code that uses them, so a
command that only needs its settings (``--help``, ``tasks``, ``execute``) starts fast.
``sources`` loads YAML files, ``--set`` overrides and flags into them; ``helptext`` is how
a field carries its flag's help. Settings import nothing of codealign but each other and
``codealign.errors``: they are the floor every other package stands on.
"""

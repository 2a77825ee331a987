"""Degradations: ways to make a program harder to read without changing what it does.

A pure library on Python's ``ast`` and the program's text: nothing here imports the rest
of codealign, a model or torch.

- ``source``: the parsing and text-editing toolkit the degradations share;
- ``names``, ``comments``, ``formatting``, ``nesting``, ``variables``, ``loops``,
  ``constants``, ``dead_code``: the degradations, grouped by what they do to a program;
- ``registry``: every degradation once, with its weight, in a fixed order, and
  ``degrade``, which composes them.
"""

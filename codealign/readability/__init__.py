"""Readability: the reward for code people can read.

The readability reward model learns from preference pairs: a correct, readable program
(chosen) and the same program made harder to read by semantics-preserving degradations
(rejected), both checked in the sandbox against the task's tests.

Modules, from the ground up:

- ``source``: the parsing and text-editing toolkit the degradations share;
- ``names``, ``comments``, ``formatting``, ``nesting``, ``variables``, ``loops``,
  ``constants``, ``dead_code``: the degradations, grouped by what they do to a program;
- ``registry``: every degradation once, with its weight, in a fixed order, and
  ``degrade``, which composes them;
- ``pairs``: preference pairs from tasks (``generate_pairs``, ``builtin_pairs``);
- ``default_model``: the built-in readability model, trained once and cached;
- ``scorer``: the readability signal (``ReadabilityScorer``, ``readability_signal``).

Nothing is imported here, so that using the degradations never imports torch.
"""

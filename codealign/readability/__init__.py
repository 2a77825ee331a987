"""Readability: the reward for code people can read.

The readability reward model learns from preference pairs: a correct, readable program
(chosen) and the same program made harder to read by semantics-preserving degradations
(rejected), both checked in the sandbox against the task's tests.

Modules, from the ground up:

- ``degrade``: the degradations, a pure library on Python's ``ast`` (``degrade.registry``
  composes them);
- ``pairs``: preference pairs from tasks (``generate_pairs``, ``builtin_pairs``);
- ``default_model``: the built-in readability model, trained once and cached;
- ``scorer``: the models scored in batches, alone or as an ensemble
  (``ReadabilityScorer``); the readability *signal* is ``codealign.scoring.readability``.

Nothing is imported here, so that using the degradations never imports torch. Readability
imports nothing of scoring: scoring stands above it.
"""

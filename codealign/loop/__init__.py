"""The alignment loop: rounds of sampling, execution, scoring, pairs or rewards, training
and held-out evaluation, in a run directory that a rerun resumes."""

from codealign.loop.backends import Backends
from codealign.loop.run import Run, iterate

__all__ = ["Backends", "Run", "iterate"]

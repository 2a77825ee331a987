"""codealign: align code language models with execution-verified rewards."""

__version__ = "0.1.0"

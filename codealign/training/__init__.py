"""Training: pure loss functions and one straight-line recipe per method."""

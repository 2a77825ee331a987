"""Training: pure loss functions, the steps every recipe shares, and one recipe per method,
read as numbered phases."""

"""Scoring: one module per signal."""

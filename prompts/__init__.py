"""Prompt templates shipped with codealign."""

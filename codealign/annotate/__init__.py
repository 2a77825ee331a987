"""Developers in the loop: a local page for labelling which of two equally correct
programs reads better (``codealign annotate``)."""

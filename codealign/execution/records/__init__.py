"""What execution produces: a sample's result and its per-test verdicts, as typed records."""

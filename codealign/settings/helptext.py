"""The one way config dataclass fields carry their help text (read by the CLI)."""

from __future__ import annotations


def help_text(text: str) -> dict[str, str]:
    """``field(metadata=help_text("..."))``: the flag's help, written once at the field."""
    return {"help": text}

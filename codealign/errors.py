"""The one exception users see for bad input; its message names the file, line or task."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: a malformed file, a missing field, an unknown task or format."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line

"""Reading and atomically writing JSONL (optionally gzipped)."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from codealign.errors import InputError


def open_text(path: str | Path) -> IO[str]:
    """Open a text file for reading, transparently gunzipping ``.gz`` files."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8")
        return open(path, encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", path=path) from None


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line; every record must be an object."""
    with open_text(path) as fh:
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"malformed JSON: {exc.msg} (column {exc.colno})", path=path, line=lineno
                    ) from None
                if not isinstance(record, dict):
                    raise InputError(
                        f"expected a JSON object, got {type(record).__name__}",
                        path=path,
                        line=lineno,
                    )
                yield lineno, record
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
            raise InputError(f"cannot read file: {exc}", path=path) from None


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    A crash or exception leaves any previous file untouched and no partial file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Atomically write ``records`` as JSONL (gzipped when ``path`` ends in ``.gz``)."""
    path = Path(path)
    if path.suffix == ".gz":
        with atomic_writer(path, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        with atomic_writer(path) as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write one JSON document."""
    with atomic_writer(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
        fh.write("\n")

"""The model cache: where models built on this machine live, and how each is built once.

``cache_root()`` is ``$CODEALIGN_CACHE``, else ``$XDG_CACHE_HOME/codealign``, else
``~/.cache/codealign``; built models live in its ``models/`` folder, one folder per recipe
key (``model_dir``). ``ensure_built`` builds a missing one into a temporary folder next to
its target and renames it into place, under a file lock: a half-built model is never seen,
and processes that want the same model at the same time build it once and share it.

Light on purpose (no torch): the CLI and the scorers import it before deciding to build.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("CODEALIGN_CACHE", Path(base) / "codealign"))


def model_dir(name: str) -> Path:
    """Where the cached model called ``name`` lives (built or not)."""
    return cache_root() / "models" / name


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) meanwhile."""
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_built(target: Path, marker: str, build: Callable[[Path], object]) -> Path:
    """``target``, first built by ``build(folder)`` unless ``target / marker`` exists.

    ``build`` writes the whole model into ``folder`` (not created yet), a temporary folder
    beside ``target`` (same file system, so the rename is atomic), which then becomes
    ``target``. A failed build leaves neither. The lock (``.<target name>.lock`` beside
    it) makes a second builder wait, then find the first one's model and reuse it.
    """
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target.parent / f".{target.name}.lock"):
        if (target / marker).exists():  # another process built it while we waited
            return target
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
            build(Path(tmp) / "model")
            os.replace(Path(tmp) / "model", target)
    return target

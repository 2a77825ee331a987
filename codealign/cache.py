"""The model cache: where models built on this machine live, and how each is built once.

``cache_root()`` is ``$CODEALIGN_CACHE``, else ``$XDG_CACHE_HOME/codealign``, else
``~/.cache/codealign``; built models live in its ``models/`` folder, one folder per recipe
key (``model_dir``). ``ensure_built`` builds a missing one into a temporary folder next to
its target and renames it into place, under a file lock: a half-built model is never seen,
and processes that want the same model at the same time build it once and share it.
``BuildClock`` times a build's phases for the line that closes it.

Light on purpose (no torch): the CLI and the scorers import it before deciding to build.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("CODEALIGN_CACHE", Path(base) / "codealign"))


def model_dir(name: str) -> Path:
    """Where the cached model called ``name`` lives (built or not)."""
    return cache_root() / "models" / name


@contextlib.contextmanager
def locked(path: Path, on_wait: Callable[[], object] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) meanwhile;
    ``on_wait()`` is called first if another process holds it."""
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_built(
    target: Path,
    marker: str,
    build: Callable[[Path], object],
    *,
    log: Callable[[str], object] | None = None,
) -> Path:
    """``target``, first built by ``build(folder)`` unless ``target / marker`` exists.

    ``build`` writes the whole model into ``folder`` (not created yet), a temporary folder
    beside ``target`` (same file system, so the rename is atomic), which then becomes
    ``target``. A failed build leaves neither. The lock (``.<target name>.lock`` beside
    it) makes a second builder wait (saying so to ``log``), then find the first one's
    model and reuse it.
    """
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    def waiting() -> None:
        if log is not None:
            log(f"codealign: another process is building {target.name}; waiting for it")

    with locked(target.parent / f".{target.name}.lock", waiting):
        if (target / marker).exists():  # another process built it while we waited
            return target
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
            build(Path(tmp) / "model")
            os.replace(Path(tmp) / "model", target)
    return target


def say(line: str) -> None:
    """The builders' default ``log``: printed at once, so that a line announcing a build
    comes before its progress bars (on stderr) even when stdout is a pipe."""
    print(line, flush=True)


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class BuildClock:
    """Wall time of a first-run build, phase by phase, for the line that closes it."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start

    def summary(self) -> str:
        """``2m41s (data 3s, SFT 2m35s, ...)``: the total, then each timed phase."""
        total = format_duration(time.perf_counter() - self.started)
        parts = ", ".join(f"{name} {format_duration(s)}" for name, s in self.phases.items())
        return f"{total} ({parts})" if parts else total

"""The worker's between-jobs wipe, on a plain folder (no sandbox needed)."""

from __future__ import annotations

import os
from pathlib import Path

from codealign.sandbox.hygiene import wipe as _wipe


def test_wipe_removes_everything_but_kept_mounts(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    kept = scratch / "ci" / ".venv"  # a read-only venv mounted inside /tmp
    workdir = scratch / "jobs" / "worker-2"
    for folder in (kept / "lib", workdir / "job-1" / "deep", scratch / "locked" / "inner"):
        folder.mkdir(parents=True)
    (kept / "lib" / "site.py").write_text("kept")
    (scratch / "ci" / "left.txt").write_text("junk next to the venv")
    (scratch / "left.txt").write_text("junk")
    (workdir / "job-1" / "deep" / "out.txt").write_text("junk")
    os.symlink("/etc/passwd", scratch / "link")
    os.chmod(scratch / "locked", 0)

    assert _wipe(str(workdir), [str(scratch)], [str(kept)])
    assert sorted(p.name for p in scratch.iterdir()) == ["ci", "jobs"]
    assert [p.name for p in (scratch / "jobs").iterdir()] == ["worker-2"]
    assert [p.name for p in (scratch / "ci").iterdir()] == [".venv"]
    assert (kept / "lib" / "site.py").read_text() == "kept"
    assert list(workdir.iterdir()) == []


def test_wipe_of_a_workdir_outside_scratch(tmp_path: Path) -> None:
    workdir = tmp_path / "jobs"
    (workdir / "job-1").mkdir(parents=True)
    (workdir / "job-1" / "x").write_text("x")
    assert _wipe(str(workdir), [], [])
    assert list(workdir.iterdir()) == []

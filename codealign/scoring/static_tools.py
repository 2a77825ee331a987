"""Running ruff and mypy once over a whole batch of programs.

Each program becomes one file of a temporary folder; one tool run covers the folder and
its findings are split back per file. One process per batch, not per sample.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from codealign.errors import InputError


def _write_batch(folder: Path, programs: Sequence[str]) -> list[Path]:
    paths = []
    for index, program in enumerate(programs):
        path = folder / f"sample_{index}.py"
        path.write_text(program, encoding="utf-8")
        paths.append(path)
    return paths


def ruff_findings(programs: Sequence[str], select: Sequence[str]) -> list[list[str]]:
    """Rule codes ruff reports for each program (one ruff run for the batch)."""
    if not programs:
        return []
    with tempfile.TemporaryDirectory(prefix="codealign-ruff-") as tmp:
        paths = _write_batch(Path(tmp), programs)
        cmd = [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--output-format",
            "json",
            "--no-cache",
            "--isolated",
            "--exit-zero",
            "--select",
            ",".join(select),
            tmp,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise InputError(f"ruff failed: {result.stderr.strip()[-500:]}")
        index = {str(p.resolve()): i for i, p in enumerate(paths)}
        out: list[list[str]] = [[] for _ in programs]
        for finding in json.loads(result.stdout or "[]"):
            i = index.get(str(Path(finding["filename"]).resolve()))
            if i is not None:
                out[i].append(finding.get("code") or "syntax")
        return out


_MYPY_LINE = re.compile(
    r"^(?P<file>[^:]+\.py):\d+(?::\d+)?: error: (?P<msg>.*?)(?:\s+\[(?P<code>[a-z-]+)\])?$"
)


def mypy_errors(programs: Sequence[str], strict: bool = False) -> list[list[str]]:
    """Error codes mypy reports for each program (one mypy run for the batch)."""
    if not programs:
        return []
    with tempfile.TemporaryDirectory(prefix="codealign-mypy-") as tmp:
        paths = _write_batch(Path(tmp), programs)
        cmd = [
            sys.executable,
            "-m",
            "mypy",
            "--no-error-summary",
            "--no-pretty",
            "--show-error-codes",
            "--ignore-missing-imports",
            "--follow-imports=silent",
            "--explicit-package-bases",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
        ]
        if strict:
            cmd.append("--strict")
        result = subprocess.run(
            [*cmd, *map(str, paths)], capture_output=True, text=True, timeout=600, cwd=tmp
        )
        if result.returncode not in (0, 1):
            raise InputError(f"mypy failed: {(result.stderr or result.stdout).strip()[-500:]}")
        index = {p.name: i for i, p in enumerate(paths)}
        out: list[list[str]] = [[] for _ in programs]
        for line in result.stdout.splitlines():
            match = _MYPY_LINE.match(line.strip())
            if match and (i := index.get(Path(match["file"]).name)) is not None:
                out[i].append(match["code"] or "error")
        return out

"""Running ruff and mypy once over a whole batch of programs.

Each program becomes one file of a temporary folder; one tool run covers the folder and
its findings are split back per file. One process per batch, not per sample.

One program must never cost the batch its scores: when a tool stops on a program (mypy's
blocking errors), that program gets a ``ToolError`` and the rest run again; when a tool
fails without saying on which program (a crash, a time-out), the batch is halved until
the programs that make it fail are alone, and only they get a ``ToolError``.

Nor can a program talk the tools out of their findings: every comment's text is blanked
before a tool reads it (``# noqa``, ``# type: ignore``, ``# mypy: ignore-errors``,
``# ruff: noqa``, ``# isort: skip_file`` and every spelling of them), keeping each
line's length and layout, so line numbers, columns and line-length findings stay.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: A tool run should take seconds; one that takes this long is stuck on some program.
TOOL_TIMEOUT_S = 300


@dataclass(frozen=True)
class ToolError:
    """The tool could not judge this program (it stopped or crashed on it): why."""

    reason: str


#: Per program: the codes the tool reported, or why it could not judge the program.
Findings = list[str] | ToolError


class _Failed(Exception):
    """A tool run that gave no findings; ``culprits``: the programs it named, if any."""

    def __init__(self, reason: str, culprits: frozenset[int] = frozenset()) -> None:
        super().__init__(reason)
        self.reason, self.culprits = reason, culprits


def _isolating(count: int, run: Callable[[list[int]], dict[int, list[str]]]) -> list[Findings]:
    """``run`` over all ``count`` programs at once, and only where it fails, over fewer."""
    out: list[Findings] = [ToolError("not run")] * count
    pending = [list(range(count))] if count else []
    while pending:
        batch = pending.pop()
        try:
            found = run(batch)
        except _Failed as failure:
            blamed = failure.culprits & set(batch)
            for i in blamed:
                out[i] = ToolError(failure.reason)
            rest = [i for i in batch if i not in blamed]
            if blamed:
                pending += [rest] if rest else []
            elif len(batch) == 1:
                out[batch[0]] = ToolError(failure.reason)
            else:
                pending += [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
            continue
        for i in batch:
            out[i] = found.get(i, [])
    return out


#: Printable ASCII but the space: every letter a directive could be spelled with.
_VISIBLE = re.compile(r"[!-~]")


def blank_comments(program: str) -> str:
    """``program`` with the text of each comment after its ``#`` turned into underscores
    (spaces and non-ASCII characters kept, so every line keeps its length and width): no
    comment is left to direct a tool. Raises what tokenize raises on a program it cannot
    read (SyntaxError, tokenize.TokenError)."""
    # Lines as Python and the tools split them (a lone \r ends a line too).
    lines = io.StringIO(program.replace("\r\n", "\n").replace("\r", "\n")).readlines()
    for token in tokenize.generate_tokens(iter(lines).__next__):
        if token.type == tokenize.COMMENT:
            (row, start), (_, end) = token.start, token.end
            line = lines[row - 1]
            blank = "#" + _VISIBLE.sub("_", line[start + 1 : end])
            lines[row - 1] = line[:start] + blank + line[end:]
    return "".join(lines)


def _tool_input(program: str) -> str | ToolError:
    """What a tool reads for ``program`` (comments blanked, UTF-8 writable), or why it
    cannot be handed one."""
    try:
        blanked = blank_comments(program)
        blanked.encode("utf-8")
    except (SyntaxError, tokenize.TokenError, ValueError, RecursionError, MemoryError) as exc:
        return ToolError(f"its comments could not be read: {type(exc).__name__}: {exc}"[:300])
    return blanked


def _per_program(
    programs: Sequence[str], run: Callable[[list[str], list[int]], dict[int, list[str]]]
) -> list[Findings]:
    """``run`` over the programs' tool inputs; a program with none gets its ToolError."""
    inputs = [_tool_input(p) for p in programs]
    ready = [i for i, x in enumerate(inputs) if isinstance(x, str)]
    texts = [str(inputs[i]) for i in ready]
    out: list[Findings] = [x if isinstance(x, ToolError) else [] for x in inputs]
    for i, found in zip(ready, _isolating(len(texts), lambda b: run(texts, b)), strict=True):
        out[i] = found
    return out


def _write_batch(folder: Path, programs: Sequence[str], batch: Sequence[int]) -> dict[str, int]:
    """The batch's programs as files named by their index; file name -> index."""
    names = {}
    for index in batch:
        path = folder / f"sample_{index}.py"
        path.write_text(programs[index], encoding="utf-8")
        names[path.name] = index
    return names


def _run_tool(cmd: list[str], cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired:
        raise _Failed(f"{cmd[2]} took longer than {TOOL_TIMEOUT_S} s") from None


def ruff_findings(programs: Sequence[str], select: Sequence[str]) -> list[Findings]:
    """Rule codes ruff reports for each program (one ruff run for the batch)."""
    return _per_program(programs, lambda texts, batch: _ruff_batch(texts, batch, select))


def _ruff_batch(
    programs: Sequence[str], batch: list[int], select: Sequence[str]
) -> dict[int, list[str]]:
    with tempfile.TemporaryDirectory(prefix="codealign-ruff-") as tmp:
        names = _write_batch(Path(tmp), programs, batch)
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
            "--ignore-noqa",  # blanked comments hold none; this is the second lock
            "--select",
            ",".join(select),
            tmp,
        ]
        result = _run_tool(cmd)
        if result.returncode != 0:
            raise _Failed(f"ruff failed: {result.stderr.strip()[-300:]}")
        try:
            findings = json.loads(result.stdout or "[]")
        except ValueError:
            raise _Failed("ruff's report was not JSON") from None
        out: dict[int, list[str]] = {i: [] for i in batch}
        for finding in findings:
            i = names.get(Path(finding["filename"]).name)
            if i is not None:
                out[i].append(finding.get("code") or "syntax")
        return out


_MYPY_LINE = re.compile(
    r"^(?P<file>[^:]+\.py):\d+(?::\d+)?: error: (?P<msg>.*?)(?:\s+\[(?P<code>[a-z-]+)\])?$"
)


def mypy_errors(programs: Sequence[str], strict: bool = False) -> list[Findings]:
    """Error codes mypy reports for each program (one mypy run for the batch)."""
    return _per_program(programs, lambda texts, batch: _mypy_batch(texts, batch, strict))


def _mypy_batch(programs: Sequence[str], batch: list[int], strict: bool) -> dict[int, list[str]]:
    with tempfile.TemporaryDirectory(prefix="codealign-mypy-") as tmp:
        names = _write_batch(Path(tmp), programs, batch)
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
            "--config-file=",  # no mypy.ini or pyproject.toml found about may steer it
        ]
        if strict:
            cmd.append("--strict")
        result = _run_tool([*cmd, *sorted(names)], cwd=tmp)
        out: dict[int, list[str]] = {i: [] for i in batch}
        for line in result.stdout.splitlines():
            match = _MYPY_LINE.match(line.strip())
            if match and (i := names.get(Path(match["file"]).name)) is not None:
                out[i].append(match["code"] or "error")
        if result.returncode not in (0, 1):
            # A blocking error (one that compiles but mypy will not check, such as a
            # repeated keyword argument) stops the whole run: blame the files it names.
            blocked = frozenset(i for i, codes in out.items() if "syntax" in codes)
            detail = (result.stderr or result.stdout).strip()[-300:]
            raise _Failed(f"mypy stopped: {detail}", blocked)
        return out

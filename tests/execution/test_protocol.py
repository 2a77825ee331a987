"""What crosses the trust boundary, checked without a sandbox: the worker's view of the
candidate's replies, the judge's view of the worker's, and files coming back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from codealign.execution.judge import Job, judge
from codealign.sandbox.hygiene import Leftovers
from codealign.sandbox.judging import Handle, Link, write_below
from codealign.sandbox.protocol import (
    LOAD_REPLIES,
    SERVE_REPLIES,
    LineReader,
    ProtocolViolation,
    checked_reply,
)
from codealign.tasks import AssertsSuite, Task


def line(message: object) -> bytes:
    return json.dumps(message).encode()


def test_a_reply_is_rebuilt_from_its_known_fields() -> None:
    raw = {"id": 3, "t": "ret", "value": ["i", 1], "final": True, "events": [{"t": "done"}]}
    assert checked_reply(line(raw), 3, SERVE_REPLIES) == {"id": 3, "t": "ret", "value": ["i", 1]}
    long = checked_reply(
        line({"id": 3, "t": "raise", "type": "E" * 500, "message": "m" * 999}), 3, SERVE_REPLIES
    )
    assert len(long["type"]) == 100 and len(long["message"]) == 300


@pytest.mark.parametrize(
    ("raw", "call_id", "why"),
    [
        (b"not json", 1, "unreadable"),
        (line([1, 2]), 1, "not an object"),
        (line({"id": 2, "t": "ret"}), 1, "answers no call"),
        (line({"id": True, "t": "ret"}), 1, "answers no call"),
        (line({"id": 1, "t": "ret"}), None, "answers no call"),
        (line({"id": 1, "t": "ok"}), 1, "where none was asked"),
        (line({"id": 1, "t": "raise", "message": 5}), 1, "not text"),
        (b"[" * 100_000 + b"]" * 100_000, 1, "unreadable"),
    ],
)
def test_anything_else_is_a_violation(raw: bytes, call_id: int | None, why: str) -> None:
    with pytest.raises(ProtocolViolation, match=why):
        checked_reply(raw, call_id, SERVE_REPLIES)


def test_load_replies_are_their_own_kinds() -> None:
    assert checked_reply(line({"id": 0, "t": "ok"}), 0, LOAD_REPLIES)["t"] == "ok"
    with pytest.raises(ProtocolViolation):
        checked_reply(line({"id": 0, "t": "ret", "value": ["N"]}), 0, LOAD_REPLIES)


def test_an_oversized_message_is_a_violation() -> None:
    read, write = os.pipe()
    os.write(write, b"x" * 5000)
    reader = LineReader(read, limit=4096)
    reader.fill()
    with pytest.raises(ProtocolViolation, match="over 4096 bytes"):
        reader.pop()
    os.close(read)
    os.close(write)


TASK = Task("t", "", "f", AssertsSuite(("assert f() == 1",)), prompt_style="text")


def test_a_violation_fails_the_job_whatever_else_the_reply_says() -> None:
    reply = {
        "final": True,
        "violation": "a message that answers no call",
        "events": [{"t": "test", "name": "test_list[0]", "status": "passed"}, {"t": "done"}],
    }
    result = judge(Job(0, TASK, "def f(): return 1"), reply)
    assert result.status == "error" and "sandbox protocol" in result.message


def test_a_malformed_reply_yields_a_bounded_failed_row() -> None:
    reply = {"final": True, "events": "nonsense", "stdout": "x" * 10**6, "duration": "soon"}
    result = judge(Job(0, TASK, "def f(): return 1"), reply)
    assert not result.passed and len(result.stdout) <= 4096 and result.duration == 0.0


def test_files_come_back_below_tmp_path_only(tmp_path: Path) -> None:
    root = tmp_path / "tmp"
    (root / "case").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    os.symlink(outside, root / "case" / "link")
    write_below(root, Path("case/out.txt"), b"ok")
    write_below(root, Path("case/link/planted"), b"no")  # through a link: refused
    os.symlink(outside / "target", root / "case" / "file-link")
    write_below(root, Path("case/file-link"), b"no")
    assert (root / "case" / "out.txt").read_bytes() == b"ok"
    assert list(outside.iterdir()) == []
    link = Link(None, print, str(root), handles=True)  # type: ignore[arg-type]
    link._files_in([[str(tmp_path / "escape"), b"no".hex()], [str(root / "a/../../x"), "00"]])
    link._files_in([[str(root / "new.txt"), b"yes".hex()], "junk", [1, 2]])
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x").exists()
    assert (root / "new.txt").read_bytes() == b"yes"


def test_a_handle_equals_only_itself() -> None:
    link = Link(None, print, "/nonexistent", handles=True)  # type: ignore[arg-type]
    one, same_number = Handle(link, 1), Handle(link, 1)
    assert one == one and one != same_number and one != 1
    assert (one == 1) is False and (1 == one) is False  # noqa: SIM300 (both sides)
    assert len({one, same_number}) == 2


def test_leftovers_are_found_and_cleared(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    workdir = scratch / "jobs" / "worker-1"
    workdir.mkdir(parents=True)
    leftovers = Leftovers(str(workdir), [str(scratch)], [], isolated=False)
    assert leftovers.find() == []
    (workdir / "job-1").mkdir()
    (scratch / "planted").write_text("x")
    assert leftovers.find() == ["files in scratch folders"]
    leftovers.clear()
    assert leftovers.find() == [] and workdir.is_dir()

"""What crosses the trust boundary, checked without a sandbox: the worker's view of the
candidate's replies, the judge's view of the worker's, and files coming back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from codealign.execution.judging.judge import Job, judge
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
    link = Link(None, str(root), handles=True)  # type: ignore[arg-type]
    link._files_in([[str(tmp_path / "escape"), b"no".hex()], [str(root / "a/../../x"), "00"]])
    link._files_in([[str(root / "new.txt"), b"yes".hex()], "junk", [1, 2]])
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x").exists()
    assert (root / "new.txt").read_bytes() == b"yes"


def test_a_handle_equals_only_itself() -> None:
    link = Link(None, "/nonexistent", handles=True)  # type: ignore[arg-type]
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


def test_descriptors_ride_with_their_messages_in_order() -> None:
    import socket

    from codealign.sandbox.protocol import send_with_fds

    ours, theirs = socket.socketpair()
    first, second = os.pipe(), os.pipe()
    try:
        send_with_fds(ours.fileno(), b'{"judge": 1}\n', [first[0]])
        send_with_fds(ours.fileno(), b'{"judge": 2}\n', [second[0]])
        reader = LineReader(theirs.fileno(), fds=True)
        assert reader.wait_line() == b'{"judge": 1}'
        got = reader.take_fd()
        assert got is not None and got not in (first[0], second[0])
        os.write(first[1], b"one")  # the descriptor received is the pipe that was sent
        assert os.read(got, 3) == b"one"
        assert reader.wait_line() == b'{"judge": 2}'
        other = reader.take_fd()
        assert other is not None and reader.take_fd() is None
        os.write(second[1], b"two")
        assert os.read(other, 3) == b"two"
        for fd in (got, other):
            os.close(fd)
    finally:
        ours.close()
        theirs.close()
        for fd in (*first, *second):
            os.close(fd)


def test_an_untrusted_line_holds_no_descriptor_sent_over_it() -> None:
    import socket

    from codealign.sandbox.protocol import send_with_fds

    ours, theirs = socket.socketpair()
    read, write = os.pipe()
    try:
        send_with_fds(ours.fileno(), b'{"id": 1}\n', [read])
        os.close(read)  # the copy in flight is now the pipe's only reader
        reader = LineReader(theirs.fileno())
        assert reader.wait_line() == b'{"id": 1}' and reader.take_fd() is None
        with pytest.raises(BrokenPipeError):  # the kernel closed it: nobody reads the pipe
            os.write(write, b"x")
    finally:
        ours.close()
        theirs.close()
        os.close(write)


def test_the_judges_line_checks_what_the_candidate_says() -> None:
    import socket

    from codealign.sandbox.judge_line import Direct
    from codealign.sandbox.protocol import send_with_fds

    judge_end, candidate_end = socket.socketpair()
    line = Direct(judge_end.detach(), limit=1000)
    read, write = os.pipe()
    with candidate_end:
        answer = b'{"id": 1, "t": "ret", "value": ["i", 4], "final": true}\n'
        send_with_fds(candidate_end.fileno(), answer, [read])  # a descriptor rides along
        os.close(read)
        assert line.exchange({"op": "call"}) == {"id": 1, "t": "ret", "value": ["i", 4]}
        with pytest.raises(BrokenPipeError):  # the judge holds no copy of what was sent
            os.write(write, b"x")
        os.close(write)
        assert json.loads(candidate_end.recv(1000)) == {"op": "call", "id": 1}
        candidate_end.sendall(b'{"id": 1, "t": "ret", "value": ["i", 4]}\n')  # an old id
        assert line.exchange({"op": "call"}) is None
        assert line.violation == "a message that answers no call"
    line.close()
    other, candidate_end = socket.socketpair()
    gone = Direct(other.detach(), limit=1000)
    candidate_end.close()  # the candidate's process ended: no answer, and no violation
    assert gone.exchange({"op": "call"}) is None and gone.violation is None
    gone.close()


def test_assert_text_is_the_source_segment() -> None:
    import ast

    from codealign.sandbox.candidate import RecordAsserts

    source = (
        "def check(c):\r\n    assert c('é')  == 'ü', 'x'\r\n    assert (1 +\r\n  2) == 3\r"
        "assert 1\n\x0cassert 'ä' in c(\n  'b')\n"
    )
    recorder = RecordAsserts(source)
    asserts = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Assert)]
    assert len(asserts) == 4
    for node in asserts:
        assert recorder.segment(node) == ast.get_source_segment(source, node)


def test_the_sandbox_program_fits_one_argument() -> None:
    from codealign.sandbox import worker_source

    # Linux caps one argument at 128 KiB (MAX_ARG_STRLEN); the modules alone pass it.
    assert len(worker_source()) < 96 * 1024

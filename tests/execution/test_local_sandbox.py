"""The local backends for real: verdicts per test kind, limits, and bubblewrap isolation."""

from __future__ import annotations

import os
import time

import pytest

from codealign.errors import InputError
from codealign.execution import ExecResult, ExecutionConfig, Job, make_executor
from codealign.tasks import AssertsSuite, CheckSuite, IOCase, IOSuite, PytestSuite, Task

pytestmark = pytest.mark.sandbox

ADD_PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
ADD_CHECK = """
def check(candidate):
    assert candidate(1, 2) == 3
    for i in range(3):
        assert candidate(i, i) == 2 * i
    assert candidate(-1, 1) == 0
"""
ADD_TASK = Task("add", ADD_PROMPT, "add", CheckSuite(ADD_CHECK))

MBPP_TASK = Task(
    "Mbpp/1",
    "Write add.",
    "add",
    AssertsSuite(
        (
            "assert add(1, 2) == 3",
            "assert add(2, 2) == 4",
            "assert math.isclose(add(0.1, 0.2), 0.3)",
        ),
        setup="import math",
    ),
    prompt_style="text",
)

IO_TASK = Task(
    "io",
    "Read two ints and print their sum.",
    "main",
    IOSuite((IOCase("1 2\n", "3\n"), IOCase("5 5\n", "10"), IOCase("0 -1\n", "-1\n"))),
    prompt_style="text",
)

PYTEST_FILES = (
    ("conftest.py", "import pytest\n\n@pytest.fixture\ndef base():\n    return 10\n"),
    ("data/cases.txt", "1 2 3\n"),
    (
        "test_add.py",
        (
            "from pathlib import Path\n"
            "import pytest\n"
            "from solution import add\n\n"
            "def test_small():\n    assert add(1, 2) == 3\n\n"
            "def test_fixture(base):\n    assert add(base, 1) == 11\n\n"
            "def test_data():\n"
            "    text = (Path(__file__).parent / 'data' / 'cases.txt').read_text()\n"
            "    a, b, c = map(int, text.split())\n"
            "    assert add(a, b) == c\n\n"
            "@pytest.mark.skip(reason='not a pass')\n"
            "def test_skipped():\n    assert True\n\n"
            "@pytest.mark.xfail\n"
            "def test_xfail():\n    assert add(1, 1) == 3\n"
        ),
    ),
)
PYTEST_TASK = Task("suite", "", "add", PytestSuite(PYTEST_FILES), prompt_style="text")


def run(config: ExecutionConfig, task: Task, *programs: str) -> list[ExecResult]:
    with make_executor(config) as executor:
        results = list(executor.run(Job(i, task, p) for i, p in enumerate(programs)))
    return sorted(results, key=lambda r: r.sample_index)


def test_check_kind_gives_every_reached_assert_a_verdict(bwrap_config: ExecutionConfig) -> None:
    good, wrong, partly = run(
        bwrap_config,
        ADD_TASK,
        ADD_PROMPT + "    return a + b\n",
        ADD_PROMPT + "    return a - b\n",
        ADD_PROMPT + "    return a + b if a else 99\n",
    )
    assert good.status == "passed" and good.pass_rate == 1.0
    assert [t.name for t in good.tests] == [
        "check:L3",
        "check:L5",
        "check:L5#2",
        "check:L5#3",
        "check:L6",
    ]
    assert wrong.status == "failed"
    # a - b passes only candidate(0, 0) == 0
    assert [t.status for t in wrong.tests] == ["failed", "passed", "failed", "failed", "failed"]
    assert wrong.pass_rate == pytest.approx(1 / 5)
    assert partly.status == "failed"
    assert partly.pass_rate == pytest.approx(4 / 5)  # only candidate(0, 0) is wrong


def test_asserts_kind_runs_each_test_with_setup(bwrap_config: ExecutionConfig) -> None:
    good, bad = run(
        bwrap_config,
        MBPP_TASK,
        "def add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return 3\n",
    )
    assert good.status == "passed" and len(good.tests) == 3
    assert bad.status == "failed"
    assert [t.status for t in bad.tests] == ["passed", "failed", "failed"]


def test_io_kind_is_compared_on_the_host(bwrap_config: ExecutionConfig) -> None:
    good, bad, crash = run(
        bwrap_config,
        IO_TASK,
        "a, b = map(int, input().split())\nprint(a + b)\n",
        "a, b = map(int, input().split())\nprint(a + b if a else 7)\n",
        "import sys\nsys.exit(3)\n",
    )
    assert good.status == "passed" and good.pass_rate == 1.0
    assert bad.status == "failed" and [t.status for t in bad.tests] == [
        "passed",
        "passed",
        "failed",
    ]
    assert crash.status == "failed" and all(t.status == "error" for t in crash.tests)


def test_pytest_kind_reports_each_test_and_never_counts_skips(
    bwrap_config: ExecutionConfig,
) -> None:
    good, bad, broken = run(
        bwrap_config,
        PYTEST_TASK,
        "def add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return a * b\n",
        "def nothing(): pass\n",
    )
    names = {t.name.split("::")[-1]: t.status for t in good.tests}
    assert names == {
        "test_small": "passed",
        "test_fixture": "passed",
        "test_data": "passed",
        "test_skipped": "skipped",
        "test_xfail": "skipped",
    }
    assert good.status == "failed"  # a skip is not a pass: positive evidence only
    assert good.pass_rate == pytest.approx(3 / 5)
    bad_names = {t.name.split("::")[-1]: t.status for t in bad.tests}
    assert bad_names["test_small"] == "failed" and bad_names["test_fixture"] == "failed"
    assert broken.status == "failed" and broken.pass_rate == 0.0
    assert any(t.status == "error" for t in broken.tests)  # import error at collection


def test_pytest_suite_passes_when_every_test_passes(bwrap_config: ExecutionConfig) -> None:
    files = (
        *tuple(f for f in PYTEST_FILES if f[0] != "test_add.py"),
        ("test_add.py", "from solution import add\n\ndef test_a():\n    assert add(1, 2) == 3\n"),
    )
    task = Task("suite2", "", "add", PytestSuite(files), prompt_style="text")
    (result,) = run(bwrap_config, task, "def add(a, b):\n    return a + b\n")
    assert result.status == "passed" and len(result.tests) == 1


def test_syntax_error_timeout_and_memory(bwrap_config: ExecutionConfig) -> None:
    config = ExecutionConfig(sandbox="bwrap", workers=2, timeout_s=1.0, memory_mb=256)
    syntax, loop, memory, ok = run(
        config,
        ADD_TASK,
        ADD_PROMPT + "    return (\n",
        ADD_PROMPT + "    while True:\n        pass\n",
        ADD_PROMPT + "    x = bytearray(1 << 30)\n    return a + b\n",
        ADD_PROMPT + "    return a + b\n",
    )
    assert syntax.status == "syntax_error" and "never closed" in syntax.message
    assert loop.status == "timeout" and loop.result == "timed out"
    assert 0.9 < loop.duration < 3.0
    assert memory.status == "failed"
    assert all(t.status == "error" and "MemoryError" in t.message for t in memory.tests)
    assert ok.status == "passed"  # the pool is fine after all of that


def test_exit_codes_prove_nothing(bwrap_config: ExecutionConfig) -> None:
    results = run(
        bwrap_config,
        ADD_TASK,
        ADD_PROMPT + "    import os\n    os._exit(0)\n",
        ADD_PROMPT + "    raise SystemExit(0)\n",
        "import sys\nsys.exit(0)\n",
    )
    assert all(not r.passed for r in results)


def test_timeout_kills_ignoring_and_forked_processes(bwrap_config: ExecutionConfig) -> None:
    config = ExecutionConfig(sandbox="bwrap", workers=1, timeout_s=1.0)
    stubborn = (
        ADD_PROMPT + "    import os, signal, time\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    if os.fork() == 0:\n        os.setsid()\n        while True: time.sleep(1)\n"
        "    while True: pass\n"
    )
    first, after = run(config, ADD_TASK, stubborn, ADD_PROMPT + "    return a + b\n")
    assert first.status == "timeout"
    assert after.status == "passed"  # the worker survived and answers again


def test_a_job_cannot_kill_its_worker(bwrap_config: ExecutionConfig) -> None:
    # The worker is PID 1 of the sandbox (bwrap --as-pid-1): its namespace cannot kill it.
    config = ExecutionConfig(sandbox="bwrap", workers=1, timeout_s=2.0)
    killer = ADD_PROMPT + "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n"
    with make_executor(config) as executor:
        first, second = sorted(
            executor.run(
                [Job(0, ADD_TASK, killer), Job(1, ADD_TASK, ADD_PROMPT + "    return a + b\n")]
            ),
            key=lambda r: r.sample_index,
        )
        assert executor._pool.replaced == 0  # type: ignore[attr-defined]
    assert first.status == "failed" and not first.passed
    assert second.status == "passed"


def test_output_is_capped(bwrap_config: ExecutionConfig) -> None:
    config = ExecutionConfig(sandbox="bwrap", workers=1, timeout_s=3.0, max_output_bytes=10_000)
    (result,) = run(config, ADD_TASK, ADD_PROMPT + "    print('x' * 1_000_000)\n    return a + b\n")
    assert result.status == "error" and "output limit" in result.message
    assert len(result.stdout) <= 2048


def test_bwrap_isolation(
    bwrap_config: ExecutionConfig,
    listener: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEALIGN_CANARY_SECRET", "s3cr3t")
    host_file = f"/tmp/codealign-canary-{os.getpid()}"
    with open(host_file, "w") as fh:
        fh.write("host secret")
    probes = {
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {listener}), timeout=1)",
        "env": "import os\nassert 'CODEALIGN_CANARY_SECRET' not in os.environ",
        "host_tmp": f"import os\nassert not os.path.exists({host_file!r})",
        "write_usr": "open('/usr/codealign-x', 'w')",
        "home": "import os\nassert not os.path.exists('/root/.bashrc')",
        "cwd_empty": "import os\nassert os.listdir('.') == []",
    }
    task = Task("probe", "", "f", AssertsSuite(("assert ok",)), prompt_style="text")
    programs = [
        f"try:\n    exec({code!r})\n    ok = True\nexcept Exception:\n    ok = False\n"
        for code in probes.values()
    ]
    try:
        results = run(bwrap_config, task, *programs)
    finally:
        os.unlink(host_file)
    by_probe = dict(zip(probes, results, strict=True))
    assert not by_probe["network"].passed
    assert not by_probe["write_usr"].passed
    for name in ("env", "host_tmp", "home", "cwd_empty"):
        assert by_probe[name].passed, (name, by_probe[name])


def test_job_leaves_nothing_for_the_next(bwrap_config: ExecutionConfig) -> None:
    config = ExecutionConfig(sandbox="bwrap", workers=1, timeout_s=3.0)
    task = Task("state", "", "f", AssertsSuite(("assert ok",)), prompt_style="text")
    writer = (
        "import os\n"
        "for path in ('left.txt', '/tmp/left.txt', '/dev/shm/left.txt'):\n"
        "    open(path, 'w').write('x')\n"
        "os.makedirs('/tmp/locked/inner')\n"
        "os.chmod('/tmp/locked', 0)\n"
        "ok = True\n"
    )
    reader = (
        "import os\n"
        "ok = os.listdir('.') == [] and os.listdir('/dev/shm') == []\n"
        "ok = ok and not any(os.path.lexists(p) for p in ('/tmp/left.txt', '/tmp/locked'))\n"
    )
    unwritable = "ok = True\nfor path in ('/x', '/root/x', '/dev/x', '/usr/x'):\n" + (
        "    try:\n        open(path, 'w')\n        ok = False\n    except OSError:\n        pass\n"
    )
    first, second, third = run(config, task, writer, reader, unwritable)
    assert first.passed
    assert second.passed, "a job saw what the previous one left"
    assert third.passed, "the sandbox has writable places outside /tmp and /dev/shm"


def test_leftover_processes_holding_the_pipes_do_not_stall_a_finished_job(
    bwrap_config: ExecutionConfig,
) -> None:
    daemon = (
        ADD_PROMPT + "    import os, time\n"
        "    if os.fork() == 0:\n        time.sleep(60)\n"
        "    return a + b\n"
    )
    (result,) = run(bwrap_config, ADD_TASK, daemon)
    assert result.status == "passed"
    assert result.duration < 1.5


def test_process_sandbox_needs_explicit_consent() -> None:
    with pytest.raises(InputError, match="--allow-unisolated"):
        make_executor(ExecutionConfig(sandbox="process"))
    config = ExecutionConfig(sandbox="process", allow_unisolated=True, workers=2)
    results = run(config, ADD_TASK, *[ADD_PROMPT + "    return a + b\n"] * 40)
    assert [r.status for r in results] == ["passed"] * 40  # workers do not share job folders


def test_auto_without_bwrap_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("codealign.execution.backends.choice.bwrap_path", lambda: None)
    monkeypatch.setattr(
        "codealign.execution.backends.choice.daemon_problem", lambda **_: "no daemon"
    )
    with pytest.raises(InputError, match="apt-get install bubblewrap"):
        make_executor(ExecutionConfig(sandbox="auto"))


def test_root_workers_live_in_pids_cgroups_that_go_away(bwrap_config: ExecutionConfig) -> None:
    from codealign.execution.backends.cgroups import Caps, make_job_cgroups, remove_cgroup
    from codealign.execution.backends.local import launcher_cgroups

    probe = make_job_cgroups(Caps(memory_bytes=1 << 30, cpus=1.0, pids=1))
    for path in probe.paths if probe is not None else ():
        remove_cgroup(path)
    if probe is None or "pids" not in probe.controllers:
        pytest.skip("no pids cgroup can be made here (not root, or no pids controller)")
    bomb = ADD_PROMPT + "    import os\n    while True:\n        os.fork()\n"
    config = ExecutionConfig(sandbox="bwrap", workers=1, timeout_s=1.0, max_processes=16)
    with make_executor(config) as executor:
        (worker,) = executor._pool._all  # type: ignore[attr-defined]
        (mine,) = [p for p in launcher_cgroups(worker.argv) if (p / "pids.max").exists()]
        assert (mine / "pids.max").read_text().strip() == "24"
        results = list(executor.run([Job(0, ADD_TASK, bomb)]))
        assert int((mine / "pids.peak").read_text()) <= 24
    assert not results[0].passed
    assert not mine.exists()


def test_workers_outlive_the_threads_that_started_them(bwrap_config: ExecutionConfig) -> None:
    # bwrap --die-with-parent ties a sandbox to the thread that started it.
    with make_executor(bwrap_config) as executor:
        for _ in range(3):
            jobs = [Job(i, ADD_TASK, ADD_PROMPT + "    return a + b\n") for i in range(6)]
            assert all(r.passed for r in executor.run(jobs))
            time.sleep(0.2)
        assert executor._pool.replaced == 0  # type: ignore[attr-defined]


def test_docker_without_a_daemon_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    from codealign.execution.backends import docker_pool

    monkeypatch.setattr(
        docker_pool, "daemon_problem", lambda **_: "the Docker daemon is not reachable"
    )
    with pytest.raises(InputError, match="start dockerd"):
        make_executor(ExecutionConfig(sandbox="docker"))
    monkeypatch.setattr(docker_pool, "daemon_problem", lambda **_: None)
    monkeypatch.setattr(docker_pool, "image_present", lambda image: False)
    with pytest.raises(InputError, match="codealign sandbox build"):
        make_executor(ExecutionConfig(sandbox="docker", image="nope:1"))

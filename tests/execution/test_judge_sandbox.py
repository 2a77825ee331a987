"""The judge in a sandbox of its own: task code never runs in codealign's process, the
judge's work on a candidate's values is bounded, files cross only by declared intent,
the task's own classes travel by value, and a job that breaks its worker's folders costs
the next job nothing. On bubblewrap and Docker alike."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codealign.execution import make_executor
from codealign.execution.executor import Executor
from codealign.execution.judging.outside import plan_for
from codealign.tasks import AssertsSuite, CheckSuite, PytestSuite, Task
from tests.execution.conftest import ConfigFor, run_jobs

CANARY = "codealign-judge-canary"


@pytest.fixture(scope="module")
def executor(sandbox_config: ConfigFor) -> Iterator[Executor]:
    with make_executor(sandbox_config(workers=2, timeout_s=3.0)) as ex:
        yield ex


def _check_task(check: str, prompt: str = "def f(x):\n    pass\n") -> Task:
    return Task("judge/check", prompt, "f", CheckSuite(check), prompt_style="code")


def test_task_code_is_read_not_run_to_plan_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    prelude = f"open({str(marker)!r}, 'w').write('x')\nclass Node:\n    pass\n"
    task = Task("judge/plan", "", "f", AssertsSuite(("assert f(1) == 1",), setup=prelude))
    plan = plan_for(task)
    assert plan is not None and plan.task_types == ("Node",) and plan.proxied == ("f",)
    assert not marker.exists()


def test_the_tasks_code_cannot_reach_the_host(executor: Executor, tmp_path: Path) -> None:
    marker = tmp_path / "planted"
    os.environ["CODEALIGN_TEST_SECRET"] = CANARY
    check = (
        "import os\n"
        f"open({str(marker)!r}, 'w').write('x') if os.path.isdir({str(tmp_path)!r}) else None\n"
        "def check(candidate):\n"
        "    assert os.environ.get('CODEALIGN_TEST_SECRET') is None\n"
        "    assert candidate(2) == 4\n"
    )
    task = _check_task(check)
    (result,) = run_jobs(executor, (task, "def f(x):\n    return x * 2\n"))
    assert result.passed, result.message
    assert result.judged == "outside" and not marker.exists()


def test_a_stalled_judge_fails_that_job_only_and_in_time(executor: Executor) -> None:
    # The test's own work on the candidate's value explodes (a catastrophic regex, a set of
    # colliding keys): the judge is killed at the deadline, the pool goes on.
    regex = _check_task(
        "import re\ndef check(candidate):\n    assert re.match(r'^(a+)+$', candidate(0))\n"
    )
    colliding = _check_task("def check(candidate):\n    assert len(set(candidate(0))) == 1\n")
    evil_regex = "def f(x):\n    return 'a' * 40 + 'b'\n"
    # Ints equal to 0 modulo 2**61 - 1 all hash to 0: building the set is quadratic.
    evil_set = "def f(x):\n    return [(2**61 - 1) * k for k in range(1, 60000)]\n"
    start = time.monotonic()
    results = run_jobs(
        executor,
        (regex, evil_regex),
        (colliding, evil_set),
        (regex, "def f(x):\n    return 'aaa'\n"),
    )
    took = time.monotonic() - start
    assert not results[0].passed
    assert not results[1].passed
    assert results[2].passed, results[2].message
    assert took < 3.0 + 8.0


def test_a_candidates_path_is_data_to_the_judge(executor: Executor) -> None:
    # Passes only where the judge opens the candidate's path as a file of its own host.
    os.environ["CODEALIGN_TEST_SECRET"] = CANARY
    task = _check_task(
        f"def check(candidate):\n    assert {CANARY!r} in open(candidate(0)).read()\n"
    )
    secret = "def f(x):\n    import pathlib\n    return pathlib.Path('/proc/self/environ')\n"
    (result,) = run_jobs(executor, (task, secret))
    assert not result.passed


def test_files_the_check_makes_reach_the_candidate_and_come_back(executor: Executor) -> None:
    task = _check_task(
        "import os, tempfile\n"
        "def check(candidate):\n"
        "    folder = tempfile.mkdtemp()\n"
        "    path = os.path.join(folder, 'in.txt')\n"
        "    with open(path, 'w') as fh:\n"
        "        fh.write('1 2 3')\n"
        "    assert candidate(path) == 6\n"
        "    assert open(path + '.out').read() == '6'\n"
    )
    honest = (
        "def f(path):\n"
        "    total = sum(int(x) for x in open(path).read().split())\n"
        "    open(path + '.out', 'w').write(str(total))\n"
        "    return total\n"
    )
    lazy = "def f(path):\n    return 6\n"
    honest_result, lazy_result = run_jobs(executor, (task, honest), (task, lazy))
    assert honest_result.passed, honest_result.tests
    assert not lazy_result.passed


PYTEST_SUITE = """\
import pathlib
from solution import listing, echo, leaked

HERE = pathlib.Path(__file__).parent


def test_empty_name_reveals_nothing():
    assert listing("") == []
    assert leaked() == []


def test_round_trip_reveals_nothing():
    assert listing(echo(".")) == []
    assert leaked() == []


def test_named_data_crosses():
    assert listing(HERE / "data") == ["cases.txt"]
"""


def test_suite_files_cross_only_when_the_test_names_them(executor: Executor) -> None:
    task = Task(
        "judge/pytest",
        "",
        "listing",
        PytestSuite(
            (
                ("data/cases.txt", "1\n"),
                ("expected.txt", "secret"),
                ("test_files.py", PYTEST_SUITE),
            )
        ),
        prompt_style="text",
    )
    program = (
        "import os\n"
        "def listing(folder):\n"
        "    try:\n"
        "        return sorted(n for n in os.listdir(folder or '.') if n.endswith('.txt'))\n"
        "    except OSError:\n"
        "        return []\n"
        "def echo(x):\n    return x\n"
        "def leaked():\n"
        "    import glob\n"
        "    return glob.glob('/tmp/**/expected.txt', recursive=True)\n"
    )
    (result,) = run_jobs(executor, (task, program))
    verdicts = {t.name.rpartition("::")[2]: t.status for t in result.tests}
    assert verdicts == {
        "test_empty_name_reveals_nothing": "passed",
        "test_round_trip_reveals_nothing": "passed",
        "test_named_data_crosses": "passed",
    }, result.tests


LIST_NODE = """\
class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next


def build(values):
    head = None
    for v in reversed(values):
        head = ListNode(v, head)
    return head


def values(node):
    out = []
    while node is not None:
        out.append(node.val)
        node = node.next
    return out
"""


def test_objects_of_the_tasks_classes_travel_by_value(executor: Executor) -> None:
    task = Task(
        "judge/listnode",
        "Reverse a linked list.",
        "reverse",
        AssertsSuite(
            (
                "assert values(reverse(build([1, 2, 3]))) == [3, 2, 1]",
                "assert reverse(None) is None",
                "assert isinstance(reverse(build([1])), ListNode)",
            ),
            setup=LIST_NODE,
        ),
        prompt_style="text",
    )
    honest = (
        "def reverse(head):\n"
        "    prev = None\n"
        "    while head:\n"
        "        head.next, prev, head = prev, head, head.next\n"
        "    return prev\n"
    )
    wrong = "def reverse(head):\n    return head\n"
    own_class = (
        "class Fake:\n    def __init__(self, v):\n        self.val, self.next = v, None\n"
        "def reverse(head):\n    return Fake(3)\n"
    )
    results = run_jobs(executor, (task, honest), (task, wrong), (task, own_class))
    assert results[0].passed, results[0].tests
    assert results[0].judged == "outside"
    assert not results[1].passed and not results[2].passed


def test_a_job_that_breaks_its_folders_costs_the_next_job_nothing(
    sandbox_config: ConfigFor,
) -> None:
    task = Task("judge/folders", "", "f", AssertsSuite(("assert f(1) == 2",)), prompt_style="text")
    breakers = [
        "import os\nos.chmod('/tmp/jobs', 0)\ndef f(x):\n    return 0\n",
        "import os, shutil\nos.rename('/tmp/jobs', '/tmp/gone')\ndef f(x):\n    return 0\n",
        "import os, shutil\nshutil.rmtree('/tmp/jobs', ignore_errors=True)\n"
        "os.symlink('/nonexistent', '/tmp/jobs')\ndef f(x):\n    return 0\n",
        "import os\nos.chmod('/tmp', 0)\ndef f(x):\n    return 0\n",
    ]
    honest = "def f(x):\n    return x + 1\n"
    with make_executor(sandbox_config(workers=1, timeout_s=3.0)) as one:
        for breaker in breakers:
            broken, after = run_jobs(one, (task, breaker), (task, honest))
            assert not broken.passed
            assert after.passed, (breaker, after.status, after.message)


# --- the judge's line: one socket per job, straight between the two sandboxes ---------------

#: Writes ``payload`` into every socket the candidate's process holds (its line included).
_ON_EVERY_SOCKET = (
    "import os, stat\n"
    "for _fd in map(int, os.listdir('/proc/self/fd')):\n"
    "    try:\n"
    "        if stat.S_ISSOCK(os.fstat(_fd).st_mode):\n"
    "            os.write(_fd, {payload!r})\n"
    "    except OSError:\n"
    "        pass\n"
)


def test_the_judges_calls_go_straight_to_the_candidate(
    executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codealign.execution.judging import outside

    def relayed(*args: object) -> None:
        raise AssertionError("a call was relayed through codealign's process")

    monkeypatch.setattr(outside, "_relayed", relayed)
    task = _check_task("def check(candidate):\n    assert candidate(2) == 4\n")
    good, bad, broken = run_jobs(
        executor,
        (task, "def f(x):\n    return x * 2\n"),
        (task, "def f(x):\n    return x\n"),
        (task, "def f(x:\n"),
    )
    assert good.passed and good.judged == "outside", good.message
    assert bad.status == "failed" and broken.status == "syntax_error"


def test_a_job_ends_when_its_judge_hangs_up(sandbox_config: ConfigFor) -> None:
    # The first job of a task forks the judge's child for it: were a copy of the line left
    # anywhere but in that child, the candidate would wait for its deadline on every one.
    with make_executor(sandbox_config(workers=1, timeout_s=10.0)) as one:
        for k in range(3):
            task = _check_task(f"def check(candidate):\n    assert candidate({k}) == {2 * k}\n")
            start = time.monotonic()
            (result,) = run_jobs(one, (task, "def f(x):\n    return x * 2\n"))
            assert result.passed, result.message
            assert time.monotonic() - start < 5.0


def test_nonsense_on_the_line_is_an_error_never_a_pass(executor: Executor) -> None:
    task = _check_task("def check(candidate):\n    assert candidate(2) == 4\n")
    garbage = _ON_EVERY_SOCKET.format(payload=b"{not json\n") + "def f(x):\n    return x * 2\n"
    huge = _ON_EVERY_SOCKET.format(payload=b"[" * 200_000 + b"\n") + "def f(x):\n    return 4\n"
    stray = (
        _ON_EVERY_SOCKET.format(payload=b'{"id": 7, "t": "ret", "value": ["i", 4]}\n')
        + "def f(x):\n    return x * 2\n"
    )
    results = run_jobs(executor, (task, garbage), (task, huge), (task, stray))
    for result in results:
        assert not result.passed
        assert result.status == "error" and "protocol" in result.message, result.message
    (after,) = run_jobs(executor, (task, "def f(x):\n    return x * 2\n"))
    assert after.passed, after.message


def test_without_descriptor_passing_calls_are_relayed(
    sandbox_config: ConfigFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Docker daemon that cannot see this host's files gets no channel socket: codealign's
    # process relays every call instead, with the same verdicts.
    from codealign.execution.backends import worker_pool
    from codealign.execution.judging import outside

    def direct(*args: object) -> None:
        raise AssertionError("a socket was passed to a worker that cannot take one")

    monkeypatch.setattr(worker_pool.Session, "passes_fds", property(lambda self: False))
    monkeypatch.setattr(outside, "_direct", direct)
    task = _check_task("def check(candidate):\n    assert candidate(2) == 4\n")
    with make_executor(sandbox_config(workers=1, timeout_s=3.0)) as one:
        good, bad, slow = run_jobs(
            one,
            (task, "def f(x):\n    return x * 2\n"),
            (task, "def f(x):\n    return x\n"),
            (task, "def f(x):\n    while True:\n        pass\n"),
        )
    assert good.passed and good.judged == "outside", good.message
    assert bad.status == "failed" and slow.status == "timeout"


def test_descriptors_sent_down_the_line_cost_the_next_job_nothing(
    sandbox_config: ConfigFor,
) -> None:
    # A candidate sends the judge more descriptors than a process may hold; the same
    # judge's child serves the task's next, honest sample.
    flood = (
        "import os, socket, stat\n"
        "_fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(200)]\n"
        "for _fd in map(int, os.listdir('/proc/self/fd')):\n"
        "    try:\n"
        "        if stat.S_ISSOCK(os.fstat(_fd).st_mode):\n"
        "            _s = socket.socket(fileno=os.dup(_fd))\n"
        "            for _ in range(400):\n"
        "                socket.send_fds(_s, [b' '], _fds)\n"
        "    except OSError:\n"
        "        pass\n"
        "def f(x):\n    return x * 2\n"
    )
    task = _check_task("def check(candidate):\n    assert candidate(2) == 4\n")
    with make_executor(sandbox_config(workers=1, timeout_s=3.0)) as one:
        results = run_jobs(one, (task, flood), (task, "def f(x):\n    return x * 2\n"))
    assert results[1].passed, results[1].message


#: A task whose check code leaves a thread behind that, once the job is over, starts a
#: process in a session of its own (out of the judge child's process group).
_LEAVES_A_DAEMON = (
    "import os, threading, time\n"
    "def _later():\n"
    "    time.sleep(0.3)\n"
    "    if os.fork() == 0:\n"
    "        os.setsid()\n"
    "        time.sleep(60)\n"
    "        os._exit(0)\n"
    "threading.Thread(target=_later, daemon=True).start()\n"
    "def check(candidate):\n"
    "    assert candidate(1) == 2\n"
)
#: The next task's check: fails if any live process but its own and the worker's is there.
_SEES_NO_STRANGER = (
    "import os\n"
    "def _alive(pid):\n"
    "    try:\n"
    "        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'\n"
    "    except OSError:\n"
    "        return False\n"
    "def check(candidate):\n"
    "    others = [p for p in os.listdir('/proc') if p.isdigit()\n"
    "              and int(p) not in (1, os.getpid()) and _alive(p)]\n"
    "    assert candidate(1) == 2 and not others, others\n"
)


def test_one_tasks_processes_never_run_beside_the_next_tasks_judging(
    sandbox_config: ConfigFor,
) -> None:
    first = _check_task(_LEAVES_A_DAEMON)
    second = Task(
        "judge/second",
        "def f(x):\n    pass\n",
        "f",
        CheckSuite(_SEES_NO_STRANGER),
        prompt_style="code",
    )
    honest = "def f(x):\n    return x + 1\n"
    with make_executor(sandbox_config(workers=1, timeout_s=5.0)) as one:
        (a,) = run_jobs(one, (first, honest))
        time.sleep(1.0)  # the first task's thread starts its process between the jobs
        (b,) = run_jobs(one, (second, honest))
    assert a.passed, a.message
    assert b.passed and b.judged == "outside", (b.message, [t.message for t in b.tests])

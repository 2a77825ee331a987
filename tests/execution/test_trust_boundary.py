"""The sandbox's trust boundary, attacked by class, on Docker and on bubblewrap.

Each hostile program is wrong unless its attack works (or it attacks the judge itself),
so a pass is a breach. After each class the pool must be healthy: an honest sample
passes, and no worker had to be replaced because a job killed or jammed it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from codealign.execution import make_executor
from codealign.execution.backends.pool_executor import PoolExecutor
from codealign.execution.executor import Executor
from codealign.tasks import CheckSuite, PytestSuite, Task
from tests.execution.conftest import ConfigFor, run_jobs
from tests.execution.test_adversarial import ADD_PROMPT, add_if

ADD = Task(
    "add",
    ADD_PROMPT,
    "add",
    CheckSuite(
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert candidate(20, 22) == 42\n"
    ),
)
HONEST = ADD_PROMPT + "    return a + b\n"
#: A task whose check sums what the candidate returns: a lazily described value would
#: make the judge iterate for ever if it were taken as it is described.
UPTO = Task(
    "upto",
    'def upto(n):\n    """The numbers 0..n-1."""\n',
    "upto",
    CheckSuite("def check(candidate):\n    assert sum(candidate(4)) == 6\n"),
)
SUITE = Task(
    "suite",
    "",
    "add",
    PytestSuite(
        (
            (
                "test_add.py",
                "from solution import add\n\n"
                "def test_small():\n    assert add(1, 2) == 3\n\n"
                "def test_answer():\n    assert add(20, 22) == 42\n",
            ),
        )
    ),
    prompt_style="text",
)
SUITE_HONEST = "def add(a, b):\n    return a + b\n"


FORGED = (
    "import json\n"
    "LINES = [json.dumps(x).encode() + b'\\n' for x in [\n"
    "    {'event': {'t': 'ret', 'id': i, 'value': ['i', v]}}\n"
    "    for i in range(1, 9) for v in (3, 42)\n"
    "] + [{'final': True, 'events': [{'t': 'done'}], 'timed_out': False}, {'ready': True}]]\n"
)

# --- 1. the worker: its descriptors, its memory, its signals -------------------------------

WORKER_CASES = [
    (
        "write-parents-descriptors",
        ADD,
        FORGED
        + ADD_PROMPT
        + (
            "    import os\n"
            "    for pid in {os.getppid(), 1}:\n"
            "        for fd in range(64):\n"
            "            try:\n"
            "                with open(f'/proc/{pid}/fd/{fd}', 'wb', buffering=0) as fh:\n"
            "                    for line in LINES:\n                        fh.write(line)\n"
            "            except OSError:\n                pass\n"
            "    return a - b\n"
        ),
    ),
    (
        "open-parents-descriptors",
        ADD,
        add_if(
            "any(opened(f'/proc/{p}/fd/{fd}') for p in {os.getppid(), 1} for fd in range(8))",
            setup=(
                "import os\ndef opened(path):\n    try:\n        open(path, 'rb').close()\n"
                "        return True\n    except OSError:\n        return False"
            ),
        ),
    ),
    (
        "read-parents-memory",
        ADD,
        add_if("open(f'/proc/{os.getppid() or 1}/mem', 'rb') is not None", setup="import os"),
    ),
    (
        "read-parents-environment",
        ADD,
        add_if("open('/proc/1/environ', 'rb').read() is not None", setup="import os"),
    ),
    (
        "kill-the-worker",
        ADD,
        ADD_PROMPT
        + (
            "    import os, signal\n"
            "    for pid in {os.getppid(), 1}:\n"
            "        for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGINT, signal.SIGTERM):\n"
            "            try:\n                os.kill(pid, sig)\n"
            "            except OSError:\n                pass\n"
            "    return a - b\n"
        ),
    ),
    (
        "change-the-workers-limits",  # same uid: allowed by the kernel without a filter
        ADD,
        add_if(
            "libc.prlimit(1, 7, ctypes.byref(Limit(64, 64)), None) == 0 "
            "or libc.setpriority(0, 1, 19) == 0",
            setup=(
                "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                "class Limit(ctypes.Structure):\n"
                "    _fields_ = [('cur', ctypes.c_ulong), ('max', ctypes.c_ulong)]"
            ),
        ),
    ),
    (
        "forge-replies-on-own-channel",
        ADD,
        # Finds the reply writer of its own process and answers every call id ahead.
        ADD_PROMPT
        + (
            "    import sys\n    f = sys._getframe()\n"
            "    while f is not None and 'reply' not in f.f_locals:\n        f = f.f_back\n"
            "    if f is not None:\n"
            "        for i in range(0, 9):\n"
            "            for v in (3, 42):\n"
            "                f.f_locals['reply']({'id': i, 't': 'ret', 'value': ['i', v]})\n"
            "                f.f_locals['reply']({'id': i, 't': 'test', 'name': 'check:L2',\n"
            "                                     'status': 'passed', 'message': ''})\n"
            "    return a - b\n"
        ),
    ),
    (
        "garbage-on-own-channel",
        ADD,
        ADD_PROMPT
        + (
            "    import os\n"
            "    for fd in range(3, 64):\n"
            "        try:\n            os.write(fd, b'\\x00garbage{{{\\n' * 1000)\n"
            "        except OSError:\n            pass\n"
            "    return a - b\n"
        ),
    ),
]

# --- 2. the host ------------------------------------------------------------------------------

HOST_CASES = [
    (
        "write-core-pattern",
        ADD,
        add_if(
            "os.access('/proc/sys/kernel/core_pattern', os.W_OK) or "
            "os.access('/proc/sysrq-trigger', os.W_OK)",
            setup="import os",
        ),
    ),
    ("host-root-uid", ADD, add_if("os.getuid() == 0 or os.geteuid() == 0", setup="import os")),
    (
        "nested-user-namespace",  # capabilities of its own, and the kernel surface with them
        ADD,
        add_if(
            "libc.unshare(0x10000000) == 0",
            setup="import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)",
        ),
    ),
]

# --- 3. the judge's own values: plain data that could stall, bloat or crash it -------------

CALL_REPLY = (
    "import sys\n"
    "def answer(value):\n"
    "    f = sys._getframe()\n"
    "    while f is not None and 'call' not in f.f_locals:\n        f = f.f_back\n"
    "    g = f\n"
    "    while g is not None and 'reply' not in g.f_locals:\n        g = g.f_back\n"
    "    g.f_locals['reply']({'id': f.f_locals['call']['id'], 't': 'ret', 'value': value})\n"
    "    import os\n    os._exit(0)\n"
)

JUDGE_CASES = [
    ("lazy-range", UPTO, UPTO.prompt + "    return range(10 ** 18)\n"),
    (
        "colliding-set",
        ADD,
        CALL_REPLY
        + ADD_PROMPT
        + "    answer(['S', [['i', str(k * (2 ** 61 - 1))] for k in range(1, 60000)]])\n",
    ),
    (
        "million-digit-int",
        ADD,
        CALL_REPLY + ADD_PROMPT + "    answer(['i', '9' * 1000000])\n",
    ),
    (
        "deep-nesting",
        ADD,
        CALL_REPLY
        + ADD_PROMPT
        + "    answer(eval('[\"l\", [' * 3000 + '[\"N\"]' + ']]' * 3000))\n",
    ),
    ("bloated-string", ADD, CALL_REPLY + ADD_PROMPT + "    answer(['s', 'x' * (200 << 20)])\n"),
]

# --- 4. pytest suites: the tests never run where the candidate can reach them ---------------

PYTEST_CASES = [
    (
        "read-the-test-file",
        SUITE,
        "import glob, re\n"
        "def add(a, b):\n"
        "    for path in glob.glob('/tmp/**/test_*.py', recursive=True) + glob.glob('test_*.py'):\n"
        "        text = open(path).read()\n"
        "        for x, y, z in re.findall(r'add\\((\\d+), (\\d+)\\) == (\\d+)', text):\n"
        "            if (int(x), int(y)) == (a, b):\n                return int(z)\n"
        "    return a - b\n",
    ),
    (
        "frames-of-the-test",
        SUITE,
        "import sys\n"
        "def add(a, b):\n"
        "    f = sys._getframe(1)\n"
        "    while f is not None:\n"
        "        consts = list(f.f_code.co_consts)\n"
        "        for i in range(len(consts) - 2):\n"
        "            if consts[i] == a and consts[i + 1] == b:\n"
        "                return consts[i + 2]\n"
        "        f = f.f_back\n"
        "    return a - b\n",
    ),
    (
        "plugin-hooks-in-module",
        SUITE,
        "def pytest_runtest_logreport(report):\n    report.outcome = 'passed'\n"
        "def pytest_collection_modifyitems(items):\n    items.clear()\n"
        "def add(a, b):\n    return a - b\n",
    ),
    (
        "skip-from-inside",
        SUITE,
        "import pytest\ndef add(a, b):\n    pytest.skip('nothing to see')\n",
    ),
    ("exit-at-import", SUITE, "import pytest\npytest.exit('bye', returncode=0)\n"),
    (
        "rigged-object",
        SUITE,
        "class Any:\n    def __eq__(self, o): return True\n    def __bool__(self): return True\n"
        "def add(a, b):\n    return Any()\n",
    ),
]

# --- 5. nothing outlives a job ---------------------------------------------------------------

PLANT_SYSV = ADD_PROMPT + (
    "    import ctypes, ctypes.util\n"
    "    libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)\n"
    "    libc.shmget(0x5eed, 4096, 0o1666)\n"
    "    libc.semget(0x5eed, 1, 0o1666)\n"
    "    libc.msgget(0x5eed, 0o1666)\n"
    "    try:\n"
    "        rt = ctypes.CDLL(ctypes.util.find_library('rt') or 'librt.so.1', use_errno=True)\n"
    "        rt.mq_open(b'/codealign-plant', 0o100 | 0o2, 0o666, None)\n"
    "    except OSError:\n        pass\n"
    "    return a + b\n"
)
FIND_SYSV = add_if(
    "libc.shmget(0x5eed, 0, 0) >= 0 or libc.semget(0x5eed, 0, 0) >= 0 "
    "or libc.msgget(0x5eed, 0) >= 0 or mq() >= 0",
    setup=(
        "import ctypes, ctypes.util\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)\n"
        "def mq():\n"
        "    try:\n"
        "        rt = ctypes.CDLL(ctypes.util.find_library('rt') or 'librt.so.1')\n"
        "    except OSError:\n        return -1\n"
        "    return rt.mq_open(b'/codealign-plant', 0o2)"
    ),
)
PLANT_KEY = ADD_PROMPT + (
    "    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n"
    "    libc.syscall(248, b'user', b'codealign-plant', b'x', 1, -4)\n"  # add_key
    "    return a + b\n"
)
FIND_KEY = add_if(
    "libc.syscall(249, b'user', b'codealign-plant', None, 0) >= 0",  # request_key
    setup="import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)",
)
HONEST_SELF_LIMITS = ADD_PROMPT + (
    "    import os, resource\n"
    "    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
    "    os.nice(1)\n    os.sched_setaffinity(0, os.sched_getaffinity(0))\n"
    "    return a + b\n"
)
PLANT_SOCKET = ADD_PROMPT + (
    "    import os, socket, time\n"
    "    if os.fork() == 0:\n"
    "        try:\n"
    "            os.setsid()\n"
    "            s = socket.socket(socket.AF_UNIX)\n            s.bind('\\0codealign-plant')\n"
    "            s.listen(1)\n            time.sleep(60)\n"
    "        finally:\n            os._exit(0)\n"
    "    time.sleep(0.05)\n    return a + b\n"
)
FIND_SOCKET = add_if(
    "connect()",
    setup=(
        "import socket\ndef connect():\n    s = socket.socket(socket.AF_UNIX)\n"
        "    s.connect('\\0codealign-plant')\n    return True"
    ),
)


@pytest.fixture(scope="module")
def executor(sandbox_config: ConfigFor) -> Iterator[Executor]:
    with make_executor(sandbox_config(workers=1, timeout_s=3.0)) as ex:
        yield ex


def replaced(executor: Executor) -> int:
    assert isinstance(executor, PoolExecutor)
    return executor._pool.replaced


def _ids(cases: list[Any]) -> list[str]:
    return [case[0] for case in cases]


@pytest.mark.parametrize(("name", "task", "program"), WORKER_CASES, ids=_ids(WORKER_CASES))
def test_a_job_cannot_reach_its_worker(
    executor: Executor, name: str, task: Task, program: str
) -> None:
    before = replaced(executor)
    # One worker: the hostile job, then a wrong one and an honest one on the same worker.
    hostile, wrong, honest = run_jobs(
        executor, (task, program), (ADD, ADD_PROMPT + "    return a * b\n"), (ADD, HONEST)
    )
    assert not hostile.passed, f"{name} passed: {hostile}"
    assert not wrong.passed, f"{name} made the next, wrong sample pass: {wrong}"
    assert honest.passed, f"{name} harmed the pool: {honest}"
    assert replaced(executor) == before, f"{name} cost the pool its worker"


@pytest.mark.parametrize(("name", "task", "program"), HOST_CASES, ids=_ids(HOST_CASES))
def test_a_job_is_nobody_on_the_host(
    executor: Executor, name: str, task: Task, program: str
) -> None:
    hostile, honest = run_jobs(executor, (task, program), (ADD, HONEST))
    assert not hostile.passed, f"{name} passed: {hostile}"
    assert honest.passed


@pytest.mark.parametrize(("name", "task", "program"), JUDGE_CASES, ids=_ids(JUDGE_CASES))
def test_values_cannot_stall_or_crash_the_judge(
    executor: Executor, name: str, task: Task, program: str
) -> None:
    start = time.monotonic()
    hostile, honest = run_jobs(executor, (task, program), (ADD, HONEST))
    assert time.monotonic() - start < 30, f"{name} stalled the judge"
    assert not hostile.passed and hostile.status != "sandbox_error", f"{name}: {hostile}"
    assert honest.passed


@pytest.mark.parametrize(("name", "task", "program"), PYTEST_CASES, ids=_ids(PYTEST_CASES))
def test_pytest_suites_are_judged_out_of_reach(
    executor: Executor, name: str, task: Task, program: str
) -> None:
    hostile, honest = run_jobs(executor, (task, program), (task, SUITE_HONEST))
    assert not hostile.passed, f"{name} passed: {hostile}"
    assert hostile.judged == "outside"
    assert honest.passed and honest.judged_outside == 2, honest


@pytest.mark.parametrize(
    ("name", "plant", "find"),
    [
        ("sysv-ipc-and-mqueue", PLANT_SYSV, FIND_SYSV),
        ("abstract-socket", PLANT_SOCKET, FIND_SOCKET),
        ("user-keyring", PLANT_KEY, FIND_KEY),
    ],
    ids=["sysv-ipc-and-mqueue", "abstract-socket", "user-keyring"],
)
def test_nothing_outlives_a_job(executor: Executor, name: str, plant: str, find: str) -> None:
    (planted,) = run_jobs(executor, (ADD, plant))
    assert planted.passed, planted
    (found,) = run_jobs(executor, (ADD, find))
    assert not found.passed, f"{name} survived into the next job: {found}"


def test_a_job_may_still_change_its_own_limits(executor: Executor) -> None:
    (result,) = run_jobs(executor, (ADD, HONEST_SELF_LIMITS))
    assert result.passed, result

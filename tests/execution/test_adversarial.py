"""Hostile completions against every sandbox: none may pass, and nothing may be harmed.

Most programs below compute a *wrong* answer unless their trick works (reading a host
secret, reaching the network, forging a verdict, fooling a comparison...), so a pass
would mean the sandbox or the judge was beaten. After each one an honest sample must still
pass on the same pool, and the host's canaries must be untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from codealign.execution import ExecResult, ExecutionConfig, Job, make_executor
from codealign.execution.executor import Executor
from codealign.tasks import AssertsSuite, CheckSuite, IOCase, IOSuite, PytestSuite, Task

CANARY_FILE = Path(f"/tmp/codealign-canary-{os.getpid()}")
CANARY_ENV = "CODEALIGN_CANARY_SECRET"
SECRET = "s3cr3t-canary"

ADD_PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
ADD = Task(
    "add",
    ADD_PROMPT,
    "add",
    CheckSuite(
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert candidate(5, 5) == 10\n"
        "    assert candidate(-1, 1) == 0\n"
    ),
)
ROOT_PROMPT = 'import math\n\ndef root(x):\n    """Square root of x."""\n'
ROOT = Task(
    "root",
    ROOT_PROMPT,
    "root",
    CheckSuite(
        "import math\n\n"
        "def check(candidate):\n"
        "    assert abs(candidate(2.0) - 1.4142135623730951) < 1e-6\n"
        "    assert math.isclose(candidate(9.0), 3.0)\n"
        "    assert round(candidate(16.0)) == 4\n"
        "    assert sorted([candidate(4.0), 1.0]) == [1.0, 2.0]\n"
        "    assert isinstance(candidate(1.0), float)\n"
    ),
)
MBPP = Task(
    "mbpp",
    "Write add(a, b).",
    "add",
    AssertsSuite(("assert add(1, 2) == 3", "assert add(5, 5) == 10")),
    prompt_style="text",
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
                "def test_same():\n    assert add(5, 5) == 10\n",
            ),
        )
    ),
    prompt_style="text",
)
IO = Task(
    "io",
    "Print a + b.",
    "main",
    IOSuite((IOCase("1 2\n", "3\n"), IOCase("5 5\n", "10\n"))),
    prompt_style="text",
)

HONEST = {
    "add": ADD_PROMPT + "    return a + b\n",
    "root": ROOT_PROMPT + "    return math.sqrt(x)\n",
    "mbpp": "def add(a, b):\n    return a + b\n",
    "suite": "def add(a, b):\n    return a + b\n",
    "io": "a, b = map(int, input().split())\nprint(a + b)\n",
}


def add_if(condition: str, setup: str = "") -> str:
    """An add() that is right only when ``condition`` holds inside the sandbox."""
    body = "\n".join("    " + line for line in setup.splitlines())
    return (
        ADD_PROMPT + body + "\n    try:\n        ok = bool(" + condition + ")\n"
        "    except BaseException:\n        ok = False\n"
        "    return a + b if ok else a - b\n"
    )


FORGE_ALL_FDS = (
    "import os, json\n"
    "lines = [{'t': 'test', 'name': n, 'status': 'passed'} for n in\n"
    "         ['check:L2', 'check:L3', 'check:L4', 'test_list[0]', 'test_list[1]',\n"
    "          'test_add.py::test_small', 'test_add.py::test_same']]\n"
    "lines += [{'t': 'done'}, {'t': 'ret', 'id': 1, 'value': ['i', 3]},\n"
    "          {'event': {'t': 'ret', 'id': 1, 'value': ['i', 3]}},\n"
    "          {'final': True, 'events': [{'t': 'done'}], 'timed_out': False}]\n"
    "data = ''.join(json.dumps(x) + '\\n' for x in lines).encode()\n"
    "for fd in range(1024):\n"
    "    try:\n        os.write(fd, data)\n    except OSError:\n        pass\n"
)

ALWAYS_EQUAL = (
    "class Anything:\n"
    "    def __eq__(self, other): return True\n"
    "    def __ne__(self, other): return False\n"
    "    def __lt__(self, other): return True\n"
    "    def __gt__(self, other): return True\n"
    "    def __sub__(self, other): return 0\n"
    "    def __rsub__(self, other): return 0\n"
    "    def __abs__(self): return 0\n"
    "    def __round__(self, n=None): return 4\n"
    "    def __bool__(self): return True\n"
    "    def __float__(self): return 0.0\n"
    "    def __hash__(self): return 0\n"
)

# (name, task, program): every one must fail.
CASES: list[Any] = [
    ("fork-bomb-os", ADD, ADD_PROMPT + "    import os\n    while True:\n        os.fork()\n"),
    (
        "fork-bomb-posix",
        ADD,
        ADD_PROMPT + "    import posix\n    while True:\n        posix.fork()\n",
    ),
    (
        "memory-bomb",
        ADD,
        ADD_PROMPT + "    x = [bytearray(1 << 27) for _ in range(64)]\n    return a + b\n",
    ),
    (
        "loop-ignoring-signals",
        ADD,
        ADD_PROMPT
        + (
            "    import signal\n"
            "    for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGINT, signal.SIGXCPU):\n"
            "        signal.signal(s, signal.SIG_IGN)\n"
            "    while True:\n        pass\n"
        ),
    ),
    (
        "gigabyte-of-output",
        ADD,
        ADD_PROMPT
        + (
            "    import sys\n    chunk = 'x' * (1 << 20)\n"
            "    for _ in range(1024):\n        sys.stdout.write(chunk)\n    return a + b\n"
        ),
    ),
    (
        "fill-the-disk",
        ADD,
        ADD_PROMPT
        + (
            "    chunk = b'x' * (1 << 20)\n"
            "    for path in ('big', '/tmp/big', '/dev/shm/big'):\n"
            "        with open(path, 'wb') as fh:\n"
            "            for _ in range(4096):\n                fh.write(chunk)\n"
            "    return a + b\n"
        ),
    ),
    (
        "write-outside-workdir",
        ADD,
        add_if(
            "any(w(p) for p in ('/etc/codealign-pwned', '/usr/codealign-pwned', "
            "'/root/codealign-pwned', '/codealign-pwned'))",
            setup="def w(p):\n    try:\n        open(p, 'w').write('x')\n        return True\n"
            "    except OSError:\n        return False",
        ),
    ),
    ("read-host-file", ADD, add_if(f"open({str(CANARY_FILE)!r}).read() == {SECRET!r}")),
    (
        "read-environment-secret",
        ADD,
        add_if(f"__import__('os').environ.get({CANARY_ENV!r}) == {SECRET!r}"),
    ),
    ("sys-exit-before-tests", ADD, "import sys\nsys.exit(0)\n"),
    ("raise-systemexit-in-test", ADD, ADD_PROMPT + "    raise SystemExit(0)\n"),
    ("os-exit-in-test", ADD, ADD_PROMPT + "    import os\n    os._exit(0)\n"),
    (
        "atexit-exit-0",
        ADD,
        ADD_PROMPT
        + ("    import atexit, os\n    atexit.register(lambda: os._exit(0))\n    return a - b\n"),
    ),
    ("always-equal-object", ADD, ALWAYS_EQUAL + ADD_PROMPT + "    return Anything()\n"),
    (
        "rigged-int-subclass",
        ADD,
        ADD_PROMPT
        + (
            "    class I(int):\n        def __eq__(self, o): return True\n"
            "        __hash__ = int.__hash__\n    return I(0)\n"
        ),
    ),
    (
        "rigged-str-subclass",
        MBPP,
        (
            "class S(str):\n    def __eq__(self, o): return True\n    __hash__ = str.__hash__\n"
            "def add(a, b):\n    return S('no')\n"
        ),
    ),
    (
        "rigged-list-subclass",
        MBPP,
        ("class L(list):\n    def __eq__(self, o): return True\ndef add(a, b):\n    return L()\n"),
    ),
    (
        "rigged-float-subclass",
        ROOT,
        ROOT_PROMPT
        + (
            "    class F(float):\n"
            "        def __sub__(self, o): return 0.0\n        def __eq__(self, o): return True\n"
            "        def __round__(self, n=None): return 4\n        __hash__ = float.__hash__\n"
            "    return F(-1.0)\n"
        ),
    ),
    ("always-equal-float-checks", ROOT, ALWAYS_EQUAL + ROOT_PROMPT + "    return Anything()\n"),
    (
        "patched-builtins",
        ROOT,
        (
            "import builtins, math\n"
            "builtins.abs = lambda x: 0\nbuiltins.round = lambda x, n=None: 4\n"
            "builtins.sorted = lambda xs, **k: [1.0, 2.0]\n"
            "builtins.isinstance = lambda o, t: True\n"
            "math.isclose = lambda *a, **k: True\n" + ROOT_PROMPT + "    return -1.0\n"
        ),
    ),
    # Passes an in-process harness: the expected value follows the arguments in the
    # constants of the check function that called us.
    (
        "expected-from-caller-frame",
        ADD,
        ADD_PROMPT
        + (
            "    import sys\n    f = sys._getframe(1)\n"
            "    while f is not None:\n"
            "        consts = list(f.f_code.co_consts) + list(f.f_locals.values())\n"
            "        for i in range(len(consts) - 2):\n"
            "            if consts[i] == a and consts[i + 1] == b:\n"
            "                return consts[i + 2]\n"
            "        f = f.f_back\n"
            "    return a - b\n"
        ),
    ),
    ("forged-lines-on-every-fd", ADD, FORGE_ALL_FDS + ADD_PROMPT + "    return a - b\n"),
    (
        "forged-lines-in-a-test",
        ADD,
        ADD_PROMPT + "    exec(" + repr(FORGE_ALL_FDS) + ")\n    return a - b\n",
    ),
    ("forged-lines-pytest", SUITE, FORGE_ALL_FDS + "def add(a, b):\n    return a - b\n"),
    ("forged-lines-mbpp", MBPP, FORGE_ALL_FDS + "def add(a, b):\n    return a - b\n"),
    (
        "pytest-skip-everything",
        SUITE,
        "import pytest\npytest.skip('nope', allow_module_level=True)\n",
    ),
    ("pytest-exit-0-at-import", SUITE, "import os\nos._exit(0)\n"),
    (
        "pytest-monkeypatch-reports",
        SUITE,
        (
            "import _pytest.reports as r\n"
            "r.TestReport.passed = property(lambda self: True)\n"
            "r.TestReport.outcome = property(lambda self: 'passed', lambda self, v: None)\n"
            "def add(a, b):\n    return a - b\n"
        ),
    ),
    (
        "kill-the-worker",
        ADD,
        ADD_PROMPT
        + ("    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n    return a - b\n"),
    ),
    (
        "kill-pid-1",
        ADD,
        ADD_PROMPT
        + (
            "    import os, signal\n    try:\n        os.kill(1, signal.SIGKILL)\n"
            "    except OSError:\n        pass\n    return a - b\n"
        ),
    ),
    (
        "never-ending-thread",
        ADD,
        ADD_PROMPT
        + (
            "    import threading\n"
            "    threading.Thread(target=lambda: [None for _ in iter(int, 1)]).start()\n"
            "    return a - b\n"
        ),
    ),
    (
        "recursion-bomb",
        ADD,
        ADD_PROMPT
        + (
            "    import sys\n    sys.setrecursionlimit(10 ** 7)\n"
            "    def f(n):\n        return f(n + 1) + 1\n    return f(0)\n"
        ),
    ),
    (
        "block-on-stdin",
        ADD,
        ADD_PROMPT + "    import sys\n    return int(sys.stdin.read() or 'x')\n",
    ),
    (
        "close-stdout-and-stderr",
        ADD,
        ADD_PROMPT + ("    import os\n    os.close(1)\n    os.close(2)\n    return a - b\n"),
    ),
    ("io-guess-output", IO, "import os\nprint(os.environ.get('EXPECTED', 'nothing'))\n"),
    (
        "connect-to-host-listener",
        ADD,
        add_if(
            "connect()",
            setup=(
                "import socket\ndef connect():\n"
                "    socket.create_connection(('127.0.0.1', PORT), timeout=1).close()\n"
                "    return True"
            ),
        ),
    ),
]

# A first job plants something; a second, otherwise wrong, job passes only if it survived.
PLANT = ADD_PROMPT + (
    "    import os, sys, site, subprocess, time\n"
    "    for d in ['.', '/tmp', '/dev/shm', os.path.expanduser('~')] + site.getsitepackages() + "
    "[site.getusersitepackages()]:\n"
    "        for name in ('sitecustomize.py', 'usercustomize.py', 'evil.pth', 'planted'):\n"
    "            try:\n"
    "                os.makedirs(d, exist_ok=True)\n"
    "                open(os.path.join(d, name), 'w').write('import os\\n')\n"
    "            except OSError:\n                pass\n"
    "    if os.fork() == 0:\n        os.setsid()\n"
    "        if os.fork() == 0:\n"
    "            while True:\n"
    "                try:\n                    open('/tmp/daemon-alive', 'w').write('x')\n"
    "                except OSError:\n                    pass\n"
    "                time.sleep(0.01)\n"
    "        os._exit(0)\n"
    "    return a + b\n"
)
FIND_PLANT = add_if(
    "any(os.path.exists(os.path.join(d, n)) for d in ['.', '/tmp', '/dev/shm'] "
    "for n in ('sitecustomize.py', 'planted', 'daemon-alive')) or "
    "any(os.path.exists(os.path.join(d, 'planted')) for d in sys.path if d)",
    setup="import os, sys, time\ntime.sleep(0.05)",
)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("bwrap", marks=pytest.mark.sandbox),
    ],
)
def executor(request: pytest.FixtureRequest, listener: int) -> Iterator[Executor]:
    name = request.param
    config = request.getfixturevalue(f"{name}_config_module")
    CANARY_FILE.write_text(SECRET)
    os.environ[CANARY_ENV] = SECRET
    try:
        with make_executor(config) as ex:
            yield ex
    finally:
        os.environ.pop(CANARY_ENV, None)
        assert CANARY_FILE.read_text() == SECRET, "a job changed a host file"
        CANARY_FILE.unlink()
        for path in ("/etc/codealign-pwned", "/usr/codealign-pwned", "/codealign-pwned"):
            assert not os.path.exists(path)


@pytest.fixture(scope="module")
def docker_config_module(docker_image: str) -> ExecutionConfig:
    return ExecutionConfig(
        sandbox="docker", image=docker_image, workers=2, timeout_s=2.0, memory_mb=512
    )


@pytest.fixture(scope="module")
def bwrap_config_module() -> ExecutionConfig:
    from tests.conftest import _require_bwrap

    _require_bwrap()
    return ExecutionConfig(sandbox="bwrap", workers=2, timeout_s=2.0, memory_mb=512)


def _case_id(value: Any) -> str | None:
    return value if isinstance(value, str) and "\n" not in value and len(value) < 40 else None


def run(executor: Executor, *jobs: tuple[Task, str]) -> list[ExecResult]:
    results = list(executor.run(Job(i, task, program) for i, (task, program) in enumerate(jobs)))
    return sorted(results, key=lambda r: r.sample_index)


@pytest.mark.parametrize(("name", "task", "program"), CASES, ids=_case_id)
def test_hostile_completion_never_passes(
    executor: Executor, listener: int, name: str, task: Task, program: str
) -> None:
    program = program.replace("PORT", str(listener))
    hostile, honest = run(executor, (task, program), (task, HONEST[task.task_id]))
    assert not hostile.passed, f"{name} passed: {hostile}"
    assert honest.passed, f"the pool was harmed by {name}: {honest}"


def test_nothing_survives_between_jobs(executor: Executor) -> None:
    # Two jobs on each worker: whatever the first leaves must be gone for the second.
    planted = run(executor, *[(ADD, PLANT)] * 2)
    assert all(r.passed for r in planted)
    found = run(executor, *[(ADD, FIND_PLANT)] * 4)
    assert not any(r.passed for r in found), [r.tests for r in found]


def test_verdicts_on_hostile_cases_are_judged_outside_where_the_task_allows(
    executor: Executor,
) -> None:
    for task in (ADD, ROOT, MBPP):
        (result,) = run(executor, (task, HONEST[task.task_id]))
        assert result.judged_outside == len(result.tests) > 0 and result.judged_inside == 0
    (result,) = run(executor, (SUITE, HONEST["suite"]))
    assert result.judged_outside == 2 and result.judged_inside == 0
    inside = Task("inside", "", "add", replace(SUITE.tests, judge="inside"), prompt_style="text")
    (result,) = run(executor, (inside, HONEST["suite"]))
    assert result.passed and result.judged_inside == 2

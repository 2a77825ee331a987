"""Bubblewrap started by root: the sandbox is not root, and each worker is capped by cgroups.

Root's bubblewrap maps the sandbox user to host root, to whom /proc/sys is writable; the
workers must instead run as an unprivileged host user, in cgroups that cap a job's memory,
CPU and processes together (as Docker does), and that go away with the pool.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codealign.execution import ExecResult, ExecutionConfig, Job, make_executor
from codealign.execution.backends.cgroups import (
    CONTROLLERS,
    Caps,
    Hierarchy,
    make_job_cgroups,
    parse_hierarchies,
    remove_cgroup,
)
from codealign.execution.backends.local import BWRAP_HOST_GID, BWRAP_HOST_UID, launcher_cgroups
from codealign.execution.executor import Executor
from codealign.tasks import AssertsSuite, CheckSuite, Task
from tests.conftest import _require_bwrap

ADD = Task(
    "add",
    'def add(a, b):\n    """Return a + b."""\n',
    "add",
    CheckSuite("def check(candidate):\n    assert candidate(1, 2) == 3\n"),
)
HONEST = 'def add(a, b):\n    """Return a + b."""\n    return a + b\n'


def probe_task(*asserts: str) -> Task:
    return Task("probe", "", "f", AssertsSuite(asserts), prompt_style="text")


def bwrap_config(memory_mb: int = 2048) -> ExecutionConfig:
    return ExecutionConfig(sandbox="bwrap", workers=2, timeout_s=5.0, memory_mb=memory_mb)


@pytest.fixture
def root_with_bwrap() -> None:
    _require_bwrap()
    if os.geteuid() != 0:
        pytest.skip("these tests are about bubblewrap started by root")


# The sandbox tests; the ones at the end read made-up cgroup trees and need neither.
as_root = pytest.mark.usefixtures("root_with_bwrap")


def run(executor: Executor, task: Task, *programs: str) -> list[ExecResult]:
    results = executor.run(Job(i, task, program) for i, program in enumerate(programs))
    return sorted(results, key=lambda r: r.sample_index)


def _require_cgroup_caps() -> None:
    probe = make_job_cgroups(Caps(memory_bytes=1 << 30, cpus=1.0, pids=64))
    capped = probe.controllers if probe is not None else frozenset()
    for path in probe.paths if probe is not None else ():
        remove_cgroup(path)
    if missing := sorted(set(CONTROLLERS) - capped):
        message = f"no cgroup can be made here for {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the cgroup tests")
        pytest.skip(message)


def worker_processes(executor: Executor) -> Iterator[int]:
    """Every process of the pool's workers, from bubblewrap down to the jobs."""
    stack = [worker.proc.pid for worker in executor._pool._all]  # type: ignore[attr-defined]
    while stack:
        pid = stack.pop()
        yield pid
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):  # it exited meanwhile
                stack += [int(child) for child in (task / "children").read_text().split()]


def status_fields(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


# Tries for real, after asking: os.access alone trusts the mode bits. Anything written is
# what was there already (core_pattern) or nothing (sysrq-trigger), so a sandbox that let
# the write through would still change nothing on the host.
WRITE_PROBE = """
import os

def try_write(path, data):
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, data)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)

core = "/proc/sys/kernel/core_pattern"
core_access = os.access(core, os.W_OK)
core_written = try_write(core, open(core, "rb").read())
sysrq = "/proc/sysrq-trigger"
sysrq_access = os.access(sysrq, os.W_OK)
sysrq_written = try_write(sysrq, b"")
mounts = [line.split() for line in open("/proc/self/mountinfo")]
sys_mount = [fields[5] for fields in mounts if fields[4] == "/proc/sys"]
"""


@pytest.mark.sandbox
@as_root
def test_proc_sys_and_sysrq_trigger_are_not_writable() -> None:
    task = probe_task(
        "assert not core_access",
        "assert not core_written",
        "assert not sysrq_access",
        "assert not sysrq_written",
        "assert sys_mount and 'ro' in sys_mount[-1].split(',')",
    )
    with make_executor(bwrap_config()) as executor:
        (result,) = run(executor, task, WRITE_PROBE)
    assert [t.status for t in result.tests] == ["passed"] * 5, result


@pytest.mark.sandbox
@as_root
def test_workers_run_as_an_unprivileged_host_user() -> None:
    # Jobs that linger, so that every process of the sandboxes is there to be looked at.
    lingering = HONEST + "import time\ntime.sleep(2)\n"
    with make_executor(bwrap_config()) as executor:
        results: list[ExecResult] = []
        thread = threading.Thread(
            target=lambda: results.extend(run(executor, ADD, *[lingering] * 2))
        )
        thread.start()
        # bubblewrap, the runner and a job, for each of two workers
        deadline = time.monotonic() + 5
        while len(pids := list(worker_processes(executor))) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        seen: dict[int, dict[str, str]] = {}
        for pid in pids:
            with contextlib.suppress(OSError):  # gone meanwhile
                seen[pid] = status_fields(pid)
        thread.join()
    assert len(seen) >= 6, seen
    assert [r.status for r in results] == ["passed"] * 2
    ids = {
        pid: (status["Uid"].split(), status["Gid"].split(), status["Groups"].split())
        for pid, status in seen.items()
    }
    # Real, effective, saved and filesystem ids, and no supplementary groups (root's 0).
    assert all("0" not in uids + gids + groups for uids, gids, groups in ids.values()), ids
    no_groups: list[str] = []
    expected = ([str(BWRAP_HOST_UID)] * 4, [str(BWRAP_HOST_GID)] * 4, no_groups)
    assert all(found == expected for found in ids.values()), ids


@pytest.mark.sandbox
@as_root
def test_a_job_cannot_take_more_memory_than_its_cgroup_by_forking() -> None:
    _require_cgroup_caps()
    # Six children of 150 MiB each: each is well under the job's 256 MiB address-space
    # limit, together far over the worker's 512 MiB (256 + 256) cgroup.
    forker = """
import os, time
children = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        try:
            block = b"x" * (150 << 20)  # written, so really resident
            time.sleep(1.0)
            os._exit(0)
        except BaseException:
            os._exit(3)
    children.append(pid)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
print(statuses)
"""
    task = probe_task("assert all(status == 0 for status in statuses)")
    with make_executor(bwrap_config(memory_mb=256)) as executor:
        (hog,) = run(executor, task, forker)
        (honest,) = run(executor, ADD, HONEST)
    assert not hog.passed, hog
    assert honest.passed, honest


@pytest.mark.sandbox
@as_root
def test_each_worker_gets_capped_cgroups_that_go_away_with_the_pool() -> None:
    _require_cgroup_caps()
    config = bwrap_config(memory_mb=300)
    with make_executor(config) as executor:
        assert all(r.passed for r in run(executor, ADD, *[HONEST] * 6))
        workers = executor._pool._all  # type: ignore[attr-defined]
        assert len(workers) == 2
        groups = [launcher_cgroups(worker.argv) for worker in workers]
        assert set(groups[0]).isdisjoint(groups[1])  # one set per worker
        made = [path for paths in groups for path in paths]
        for worker, paths in zip(workers, groups, strict=True):
            assert paths and all(path.is_dir() for path in paths)
            for path in paths:
                assert str(worker.proc.pid) in (path / "cgroup.procs").read_text().split()
            files = {f.name: f for path in paths for f in path.iterdir()}
            assert {"memory.limit_in_bytes", "memory.max"} & set(files), sorted(files)
            memory = str((300 + 256) << 20)
            if "memory.limit_in_bytes" in files:  # v1
                assert files["memory.limit_in_bytes"].read_text().strip() == memory
                if "memory.memsw.limit_in_bytes" in files:
                    assert files["memory.memsw.limit_in_bytes"].read_text().strip() == memory
                assert files["cpu.cfs_quota_us"].read_text().strip() == "100000"
                assert files["cpu.cfs_period_us"].read_text().strip() == "100000"
            else:  # v2
                assert files["memory.max"].read_text().strip() == memory
                assert files["cpu.max"].read_text().split() == ["100000", "100000"]
            assert files["pids.max"].read_text().strip() == str(config.max_processes + 8)
    assert made and not any(path.exists() for path in made)


# --- where the groups go, on made-up hierarchies --------------------------------------------

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 /elsewhere /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
"""


def test_v1_groups_are_found_below_our_own_in_each_hierarchy() -> None:
    self_cgroup = "9:name=systemd:/\n8:pids:/user/1\n4:memory:/docker/abc/job\n2:cpu,cpuacct:/\n"
    assert parse_hierarchies(V1_MOUNTINFO, self_cgroup) == [
        Hierarchy(1, Path("/sys/fs/cgroup/cpu,cpuacct"), frozenset({"cpu"})),
        # A mount of a subtree (a container's): our group's path is relative to its root.
        Hierarchy(1, Path("/sys/fs/cgroup/memory/job"), frozenset({"memory"})),
        Hierarchy(1, Path("/sys/fs/cgroup/pids/user/1"), frozenset({"pids"})),
    ]
    # Our group outside the mounted subtree: nothing there is ours to use.
    outside = "4:memory:/other\n"
    assert parse_hierarchies(V1_MOUNTINFO, outside, ["memory"]) == []


def _v2_tree(root: Path, subtree_control_refused: bool) -> str:
    """A made-up unified hierarchy mounted at ``root``, with us in /job; its mountinfo."""
    (root / "job").mkdir()
    (root / "job" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "job" / "cgroup.procs").write_text("")
    if subtree_control_refused:  # a directory: reading and writing it fail, like EBUSY
        (root / "job" / "cgroup.subtree_control").mkdir()
    else:
        (root / "job" / "cgroup.subtree_control").write_text("")
    return f"41 31 0:38 / {root} rw,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_v2_groups_cap_memory_cpu_and_pids(tmp_path: Path) -> None:
    found = parse_hierarchies(_v2_tree(tmp_path, False), "0::/job\n")
    assert found == [Hierarchy(2, tmp_path / "job", frozenset({"memory", "cpu", "pids"}))]
    if os.geteuid() != 0:
        pytest.skip("only root makes cgroups")
    groups = make_job_cgroups(Caps(memory_bytes=512 << 20, cpus=1.0, pids=72), found)
    assert groups is not None and groups.controllers == {"memory", "cpu", "pids"}
    (path,) = groups.paths
    assert path.parent == tmp_path / "job" and path.name.startswith("codealign-")
    assert (path / "memory.max").read_text() == str(512 << 20)
    assert (path / "cpu.max").read_text() == "100000 100000"
    assert (path / "pids.max").read_text() == "72"


def test_v2_groups_are_not_made_where_controllers_cannot_be_enabled(tmp_path: Path) -> None:
    found = parse_hierarchies(_v2_tree(tmp_path, True), "0::/job\n")
    if os.geteuid() != 0:
        pytest.skip("only root makes cgroups")
    assert make_job_cgroups(Caps(memory_bytes=512 << 20, cpus=1.0, pids=72), found) is None
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == [
        "cgroup.controllers",
        "cgroup.procs",
        "cgroup.subtree_control",
    ]

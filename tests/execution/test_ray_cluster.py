"""Execution on a Ray cluster: a simulated multi-node cluster on this machine
(``ray.cluster_utils.Cluster``: a raylet per node, each with its own CPUs), the bubblewrap
sandbox on every node. Jobs land on several nodes, come back in sample order, and a node
removed (its raylet killed) mid-run loses nothing and duplicates nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codealign.errors import InputError
from codealign.execution import ExecutionConfig, Job, execute_samples
from codealign.samples import canonical_samples
from codealign.tasks import load_tasks


def test_a_missing_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from codealign.execution.executor import make_executor

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"pip install 'codealign\[ray\]'"):
        make_executor(ExecutionConfig(cluster="ray"))


@pytest.mark.sandbox
@pytest.mark.parametrize(
    ("address", "why"),
    [("127.0.0.1:1", "Connection refused"), ("auto", "Could not find any running Ray")],
)
def test_an_unreachable_cluster_fails_fast_and_leaves_nothing(
    address: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    samples = canonical_samples(HUMANEVAL)[:2]
    out = tmp_path / "results.jsonl.partial"
    config = ExecutionConfig(sandbox="bwrap", cluster="ray", ray_address=address)
    started = time.monotonic()
    with pytest.raises(InputError, match=f"cannot reach the Ray cluster at {address}: .*{why}"):
        execute_samples(HUMANEVAL, samples, config, checkpoint=out, progress=False)
    assert time.monotonic() - started < 30
    assert not out.exists()  # no checkpoint for a run that ran nothing


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head without CPUs (it runs no samples) and two worker nodes of one CPU each."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        message = "ray is not installed (pip install -e '.[ray]')"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the Ray tests")
        pytest.skip(message)
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def ray_config(cluster: Any) -> ExecutionConfig:
    return ExecutionConfig(sandbox="bwrap", cluster="ray", ray_address=cluster.address)


HUMANEVAL = {t.task_id: t for t in load_tasks("humaneval")}


@pytest.mark.ray
@pytest.mark.sandbox
def test_jobs_spread_over_the_nodes_and_come_back_in_sample_order(
    cluster: Any, tmp_path: Path
) -> None:
    samples = canonical_samples(HUMANEVAL)[:60]
    checkpoint = tmp_path / "results.jsonl.partial"
    results = execute_samples(
        HUMANEVAL, samples, ray_config(cluster), checkpoint=checkpoint, progress=False
    )
    assert [r.sample_index for r in results] == [s.index for s in samples]
    assert all(r.passed for r in results), [r.message for r in results if not r.passed][:3]
    assert len({r.node for r in results}) == 2
    # The checkpoint a rerun resumes from holds every result, with its node.
    lines = checkpoint.read_text().splitlines()[1:]
    assert len(lines) == 60 and all(json.loads(line)["node"] for line in lines)


@pytest.mark.ray
@pytest.mark.sandbox
def test_a_node_removed_mid_run_loses_nothing(cluster: Any) -> None:
    from codealign.execution.executor import make_executor

    extra = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    samples = canonical_samples(HUMANEVAL) * 2
    jobs = [
        Job(i, HUMANEVAL[s.task_id], s.program(HUMANEVAL[s.task_id])) for i, s in enumerate(samples)
    ]
    seen: list[int] = []
    nodes_before: set[str] = set()
    with make_executor(ray_config(cluster)) as executor:
        assert len(executor.nodes) == 3  # type: ignore[attr-defined]
        for result in executor.run(jobs):
            assert result.passed, result.message
            seen.append(result.sample_index)
            nodes_before.add(result.node)
            if len(seen) == 30:
                cluster.remove_node(extra)  # its raylet and everything on it are killed
        assert len(executor.nodes) == 2  # type: ignore[attr-defined]
    assert sorted(seen) == list(range(len(jobs)))  # each exactly once
    assert len(nodes_before) == 3


@pytest.mark.ray
@pytest.mark.sandbox
def test_execute_joins_a_running_cluster_and_survives_a_dying_node(
    cluster: Any, tmp_path: Path
) -> None:
    """The issue's command: `execute --set execution.cluster=ray --set
    execution.ray_address=auto`, canonical solutions x 3; one node's raylet killed
    during the run."""
    doomed = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    records = [s.record for s in canonical_samples(HUMANEVAL)] * 3
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "results.jsonl"
    argv = [
        sys.executable, "-m", "codealign.cli", "execute", "--tasks", "humaneval",
        "--samples", str(samples), "--out", str(out), "-q", "--sandbox", "bwrap",
        "--set", "execution.cluster=ray", "--set", "execution.ray_address=auto",
    ]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    run = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "results.jsonl.partial"
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        if checkpoint.exists() and len(checkpoint.read_text().splitlines()) > 40:
            break
        time.sleep(0.05)
    cluster.remove_node(doomed)
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr.decode()[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["sample_index"] for r in rows] == list(range(len(records)))
    assert all(r["passed"] for r in rows)
    assert len({r["node"] for r in rows}) >= 2
    assert f"{len(records)}/{len(records)} samples passed" in stdout.decode()

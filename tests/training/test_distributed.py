"""Data-parallel training: the shards and weights worked out by hand, two processes
simulated in one, and the real thing (``accelerate launch --cpu --num_processes 2``)
against one process with the doubled batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from codealign.tasks.tiny import tiny_tasks
from codealign.training.distributed import Ranks
from codealign.training.steps import StepLog, accumulate


def test_a_global_batch_is_cut_in_contiguous_shards() -> None:
    batch = [7, 8, 9, 10, 11]
    assert [Ranks(world=2, rank=r).shard(batch) for r in (0, 1)] == [[7, 8, 9], [10, 11]]
    assert [Ranks(world=4, rank=r).shard([1, 2]) for r in range(4)] == [[1], [2], [], []]
    assert Ranks().shard(batch) == batch


def test_two_simulated_processes_step_as_one_with_the_whole_batch() -> None:
    """Loss per record i: x_i * w (a mean over the batch). One process over the global
    batches gives the gradient mean(x) over the group; two processes, each over its
    shard, averaged as the all-reduce does, give the same, short and empty shards
    included (records 0..6 in batches of 4: shards of 2 + 2, then 2 + 1)."""
    x = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    w = torch.nn.Parameter(torch.zeros(()))

    def batch_loss(batch: Sequence[int]) -> tuple[torch.Tensor, StepLog]:
        return (x[list(batch)] * w).mean(), {"loss": 0.0}

    group = [[0, 1, 2, 3], [4, 5, 6]]
    w.grad = None
    accumulate(group, batch_loss)
    one = float(w.grad)  # type: ignore[arg-type]
    assert one == pytest.approx(float(x.mean()))
    grads = []
    for rank in (0, 1):
        w.grad = None
        accumulate(group, batch_loss, Ranks(world=2, rank=rank))
        grads.append(float(w.grad))  # type: ignore[arg-type]
    # rank 0: (1+2)/2 * 2*2/7 + (16+32)/2 * 2*2/7; rank 1: (4+8)/2 * 4/7 + 64 * 1*2/7
    assert grads == pytest.approx([(1.5 * 4 + 24 * 4) / 7, (6 * 4 + 64 * 2) / 7])
    assert sum(grads) / 2 == pytest.approx(one)
    # A shard left empty still runs one record's backward, with weight 0.
    w.grad = None
    accumulate([[0, 1]], batch_loss, Ranks(world=4, rank=3))
    assert float(w.grad) == 0.0  # type: ignore[arg-type]


def pairs_file(path: Path, n: int) -> Path:
    rows = [
        {"prompt": t.prompt, "chosen": t.canonical_solution, "rejected": "    return None\n"}
        for t in tiny_tasks("train")[:n]
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def adapter_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


@pytest.mark.integration
def test_two_processes_train_the_same_adapter_as_one_with_the_doubled_batch(
    small_model_dir: Path, tmp_path: Path
) -> None:
    pairs = pairs_file(tmp_path / "pairs.jsonl", 14)  # 14 = 3 global batches of 4, + 2
    common = ["dpo", "--pairs", str(pairs), "--model", str(small_model_dir), "--device", "cpu",
              "--lora-dropout", "0", "--lr", "1e-2", "--epochs", "2", "--max-length", "96",
              "-q"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run(
        [sys.executable, "-m", "codealign", *common, "--batch-size", "4", "--out", str(one)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    # accelerate's --cpu starts one process (several need MPI); --multi_gpu is torchrun,
    # which on a machine without GPUs gives two CPU processes over gloo.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "-m", "codealign"]  # fmt: skip
    double = subprocess.run(
        [*launch, *common, "--batch-size", "2", "--out", str(two)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert double.returncode == 0, double.stderr[-3000:]
    a, b = adapter_weights(one), adapter_weights(two)
    assert a.keys() == b.keys()
    # Equal up to float32 summation order (each process sums half a batch) ...
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=2e-4)
    # ... while one process with the per-device batch alone trains something else.
    other = tmp_path / "other"
    alone = subprocess.run(
        [sys.executable, "-m", "codealign", *common, "--batch-size", "2", "--out", str(other)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-2000:]
    c = adapter_weights(other)
    assert max(float((a[k] - c[k]).abs().max()) for k in a) > 10 * 2e-4
    first = json.loads((one / "train_metrics.json").read_text())
    second = json.loads((two / "train_metrics.json").read_text())
    assert (first["processes"], first["effective_batch"]) == (1, 4)
    assert (second["processes"], second["per_device_batch"], second["effective_batch"]) == (2, 2, 4)
    assert first["steps"] == second["steps"] == 8  # 4 optimiser steps an epoch, 2 epochs
    assert second["loss_last"] == pytest.approx(first["loss_last"], rel=1e-3)
    assert double.stdout.count("adapter saved to") == 1  # the main process reports
    assert not list(tmp_path.glob("two*.tmp"))


SITECUSTOMIZE = """
import os, sys
_log = os.environ.get("CODEALIGN_TEST_RENAMES")
if _log:
    def _hook(event, args):
        if event == "os.rename":  # os.rename and os.replace: every atomic write ends so
            with open(_log, "a") as fh:
                fh.write(f"{os.getpid()}\\t{os.fspath(args[1])}\\n")
    sys.addaudithook(_hook)
"""


@pytest.mark.integration
@pytest.mark.sandbox
@pytest.mark.parametrize("method", ["dpo", "grpo"])
def test_an_iterate_round_under_two_processes_writes_each_file_once(
    tmp_path: Path, method: str
) -> None:
    """accelerate launch, 2 processes: sampling sharded, execution and scoring once, DPO
    data-parallel. Every file of the run is put in place by one process only, the stage
    outputs exactly once, and the report is whole."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    renames = tmp_path / "renames.tsv"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CODEALIGN_TEST_RENAMES": str(renames),
        "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
    }
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "-m", "codealign", "iterate", "--rounds", "1",
            "--run-dir", str(run_dir), "-q", "--method", method,
            "--set", "iterate.prompts_per_round=24",
            "--set", "iterate.eval_samples=4", "--set", "iterate.eval_k=1",
            "--set", "execution.sandbox=bwrap"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((run_dir / "report.json").read_text())
    assert [row["round"] for row in report["rounds"]] == [0, 1]
    assert report["rounds"][1]["train"]["steps"] >= 1
    samples = (run_dir / "round-1" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 24 * 8  # every shard gathered, none twice
    assert len({json.loads(line)["task_id"] for line in samples}) == 24
    metrics = json.loads((run_dir / "round-1" / "adapter" / "train_metrics.json").read_text())
    assert metrics["processes"] == 2
    writes: dict[str, list[str]] = {}
    for line in renames.read_text().splitlines():
        pid, path = line.split("\t")
        if path.startswith(str(run_dir)):
            writes.setdefault(path, []).append(pid)
    assert writes and all(len(set(pids)) == 1 for pids in writes.values())
    assert len({pid for pids in writes.values() for pid in pids}) == 1  # the main process
    made = "round-1/rollouts.jsonl" if method == "grpo" else "round-1/pairs.jsonl"
    for name in ("round-0/eval/samples.jsonl", "round-0/eval/results.jsonl",
                 "round-1/samples.jsonl", "round-1/results.jsonl", "round-1/scored.jsonl",
                 made, "round-1/train.json", "round-1/adapter",
                 "round-1/eval/metrics.json"):  # fmt: skip
        assert len(writes[str(run_dir / name)]) == 1, name
    assert done.stdout.count("held-out pass@1") == 1


@pytest.mark.integration
def test_two_processes_train_the_same_reward_model_as_one_with_the_doubled_batch(
    small_model_dir: Path, tmp_path: Path
) -> None:
    pairs = pairs_file(tmp_path / "pairs.jsonl", 14)
    common = ["train-rm", "--pairs", str(pairs), "--base", str(small_model_dir), "--device",
              "cpu", "--lr", "1e-3", "--epochs", "2", "--eval-fraction", "0",
              "--max-length", "96", "-q"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "-m", "codealign"]  # fmt: skip
    runs = {
        "one": [sys.executable, "-m", "codealign", *common, "--batch-size", "4"],
        "two": [*launch, *common, "--batch-size", "2"],
        "alone": [sys.executable, "-m", "codealign", *common, "--batch-size", "2"],
    }
    for name, argv in runs.items():
        done = subprocess.run(
            [*argv, "--out", str(tmp_path / name)], capture_output=True, text=True, env=env,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        if name == "two":
            assert done.stdout.count("reward model saved to") == 1

    from safetensors.torch import load_file

    def weights(name: str) -> dict[str, torch.Tensor]:
        loaded = load_file(str(tmp_path / name / "backbone" / "model.safetensors"))
        head = torch.load(tmp_path / name / "reward_head.pt", weights_only=True)
        return loaded | {f"head.{k}": v for k, v in head.items()}

    one, two, alone = weights("one"), weights("two"), weights("alone")
    # The head's bias cancels in r(chosen) - r(rejected): its gradient is rounding noise,
    # which Adam scales to full-size steps either way. Every other weight must agree.
    for name in (one, two, alone):
        del name["head.bias"]
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-3, atol=2e-4)
    assert max(float((one[k] - alone[k]).abs().max()) for k in one) > 10 * 2e-4
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (metrics["processes"], metrics["effective_batch"]) == (2, 4)


def test_what_is_not_data_parallel_refuses_to_run_once_per_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from codealign.cli import main
    from codealign.errors import InputError
    from codealign.loop.parallel import check_parallel_run
    from codealign.settings.execution import ExecutionConfig
    from codealign.settings.loop import IterateConfig, RunConfig
    from codealign.settings.model import ModelConfig, SamplingConfig
    from codealign.settings.preference import PreferenceConfig
    from codealign.settings.scoring import ScoringConfig

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["tasks", "tiny-heldout"]) == 2
    assert "only iterate, ppo, dpo and train-rm" in capsys.readouterr().err

    def config(method: str = "dpo", backend: str = "hf") -> RunConfig:
        return RunConfig(
            IterateConfig(method=method),  # type: ignore[arg-type]
            PreferenceConfig(),
            ModelConfig(),
            SamplingConfig(backend=backend),  # type: ignore[arg-type]
            ExecutionConfig(),
            ScoringConfig(),
        )

    with pytest.raises(InputError, match="vllm under accelerate launch"):
        check_parallel_run(config(backend="vllm"), world=2)
    check_parallel_run(config(), world=2)  # on transformers: data-parallel
    check_parallel_run(config(method="grpo"), world=2)
    # FSDP shards an unquantized base; the reward model does not shard at all.
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    check_parallel_run(config(), world=2)
    quantized = config()
    quantized.model.quantization = "4bit"
    with pytest.raises(InputError, match="FSDP shards an unquantized base"):
        check_parallel_run(quantized, world=2)
    from codealign.settings.reward_model import RewardModelConfig
    from codealign.training import distributed
    from codealign.training.reward_model import train_reward_model

    monkeypatch.setattr(distributed, "current", lambda: Ranks(world=2, sharded=True))
    with pytest.raises(InputError, match="train-rm does not shard"):
        train_reward_model([], RewardModelConfig(), "unused", progress=False)


PPO_DRIVER = """
import json, sys
from codealign.settings.model import ModelConfig
from codealign.settings.ppo import PPOConfig
from codealign.training.ppo import train_ppo

model_dir, out, minibatch, micro, rollouts, *rest = sys.argv[1:]
records = [json.loads(line) for line in open(rollouts)]
config = PPOConfig(minibatch_size=int(minibatch), micro_batch_size=int(micro), epochs=2, lr=1e-2,
                   value_lr=1e-2, max_length=96, value_model=rest[0] if rest else "head")
model = ModelConfig(name=model_dir, device="cpu", lora_dropout=0.0)
train_ppo(records, model, config, out, method="ppo", temperature=1.0, reference="base",
          progress=False)
"""


def ppo_rollouts(path: Path) -> Path:
    """13 rollouts of 7 tasks: the canonical solution (reward 1) and a wrong one (0), the
    last task's wrong one left out."""
    rows = []
    for t in tiny_tasks("train")[:7]:
        for right in (True, False):
            completion = t.canonical_solution if right else "    return None\n"
            rows.append({"task_id": t.task_id, "prompt": t.prompt, "completion": completion,
                         "reward": 1.0 if right else 0.0})  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:13]))
    return path


def ppo_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The policy's adapter and the value head (``value.``) saved in ``folder``."""
    from safetensors.torch import load_file

    head = load_file(str(folder / "value_head.safetensors"))
    return {
        **load_file(str(folder / "adapter_model.safetensors")),
        **{f"value.{k}": v for k, v in head.items()},
    }


@pytest.mark.integration
def test_two_processes_take_the_same_ppo_steps_as_one_with_the_doubled_minibatch(
    small_model_dir: Path, tmp_path: Path
) -> None:
    """PPO with its value head: the policy's adapter and the critic after two epochs of
    minibatches of 8 rollouts (one process) and of 4 per process (two); 13 rollouts, so
    the last minibatch of each epoch is short and is sharded 3 + 2."""
    rollouts = ppo_rollouts(tmp_path / "rollouts.jsonl")
    driver = tmp_path / "driver.py"
    driver.write_text(PPO_DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no"]  # fmt: skip
    runs = {
        "one": [sys.executable, str(driver), str(small_model_dir), str(tmp_path / "one"), "8",
                "3"],
        "two": [*launch, str(driver), str(small_model_dir), str(tmp_path / "two"), "4", "3"],
        "alone": [sys.executable, str(driver), str(small_model_dir), str(tmp_path / "alone"),
                  "4", "3"],
    }  # fmt: skip
    for argv in runs.values():
        done = subprocess.run([*argv, str(rollouts)], capture_output=True, text=True, env=env,
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    one, two, alone = (ppo_weights(tmp_path / name) for name in ("one", "two", "alone"))
    assert one.keys() == two.keys() and any(k.startswith("value.") for k in one)
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-3, atol=2e-4)
    assert max(float((one[k] - alone[k]).abs().max()) for k in one) > 10 * 2e-4
    metrics = json.loads((tmp_path / "two" / "train_metrics.json").read_text())
    assert (metrics["processes"], metrics["effective_minibatch"], metrics["steps"]) == (2, 8, 4)


FSDP_LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp",
               "--fsdp_version", "2", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


@pytest.mark.integration
def test_fsdp_trains_the_same_adapter_as_one_process_holding_half_the_weights(
    small_model_dir: Path, tmp_path: Path
) -> None:
    """``accelerate launch --use_fsdp``: each process holds half of every layer's weights,
    and DPO (a reference adapter loaded beside the policy, before sharding) ends with the
    adapter one process with the doubled batch trains."""
    pairs = pairs_file(tmp_path / "pairs.jsonl", 14)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["dpo", "--pairs", str(pairs), "--model", str(small_model_dir), "--device", "cpu",
              "--lora-dropout", "0", "--lr", "1e-2", "--epochs", "2", "--max-length", "96",
              "-q"]  # fmt: skip
    start = tmp_path / "start"
    first = subprocess.run(
        [sys.executable, "-m", "codealign", *common, "--batch-size", "4", "--epochs", "1",
         "--out", str(start)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    # From the saved adapter, with it as a live (not precomputed) frozen reference.
    common += ["--adapter", str(start), "--reference", str(start), "--no-precompute-reference"]
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    runs = {
        one: [sys.executable, "-m", "codealign", *common, "--batch-size", "4"],
        sharded: [*FSDP_LAUNCH, "-m", "codealign", *common, "--batch-size", "2"],
    }
    for out, argv in runs.items():
        done = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True,
                              env=env, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = adapter_weights(one), adapter_weights(sharded)
    assert a.keys() == b.keys()
    assert max(float((a[k] - adapter_weights(start)[k]).abs().max()) for k in a) > 1e-2
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=2e-4)
    whole = json.loads((one / "train_metrics.json").read_text())
    halves = json.loads((sharded / "train_metrics.json").read_text())
    assert (whole["sharding"], halves["sharding"]) == ("none", "fsdp")
    assert halves["effective_batch"] == whole["effective_batch"] == 4
    # Layers, embeddings and head sharded in two (tied weights: one tensor, one shard).
    ratio = halves["weight_bytes_per_process"] / whole["weight_bytes_per_process"]
    assert 0.45 < ratio < 0.56
    assert halves["loss_last"] == pytest.approx(whole["loss_last"], rel=1e-3)


@pytest.mark.integration
@pytest.mark.parametrize("value_model", ["head", "adapter"])
def test_fsdp_takes_the_same_ppo_steps_with_the_value_head_beside_the_shards(
    small_model_dir: Path, tmp_path: Path, value_model: str
) -> None:
    """PPO under FSDP: the sharded adapters (the policy's; with a separate critic, the
    value adapter's too) and the whole value head, clipped together, match one process.
    13 rollouts in minibatches of 4 per process and micro-batches of 2 shard the last
    minibatch 3 + 2, so the second process runs a zero-weight pass to keep the
    processes' forwards in step (or both would hang)."""
    rollouts = ppo_rollouts(tmp_path / "rollouts.jsonl")
    driver = tmp_path / "driver.py"
    driver.write_text(PPO_DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {
        "one": [sys.executable, str(driver), str(small_model_dir), str(tmp_path / "one"), "8",
                "2"],
        "two": [*FSDP_LAUNCH, str(driver), str(small_model_dir), str(tmp_path / "two"), "4",
                "2"],
    }  # fmt: skip
    for argv in runs.values():
        done = subprocess.run([*argv, str(rollouts), value_model], capture_output=True,
                              text=True, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = ppo_weights(tmp_path / "one"), ppo_weights(tmp_path / "two")
    if value_model == "adapter":  # peft saves a named adapter in its own folder
        for name, weights in (("one", one), ("two", two)):
            critic = adapter_weights(tmp_path / name / "value")
            weights.update({f"critic.{k}": v for k, v in critic.items()})
        assert sum(k.startswith("critic.") for k in two) > 10
    assert one.keys() == two.keys() and any(k.startswith("value.") for k in one)
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=1e-3, atol=2e-4)
    metrics = json.loads((tmp_path / "two" / "train_metrics.json").read_text())
    assert (metrics["sharding"], metrics["effective_minibatch"], metrics["steps"]) == (
        "fsdp",
        8,
        4,
    )


@pytest.mark.integration
@pytest.mark.sandbox
def test_an_iterate_round_under_fsdp_resumes_after_kill_9(tmp_path: Path) -> None:
    """``accelerate launch --use_fsdp``, every process SIGKILLed once round 1's pairs are
    written (while the policy loads or trains, sharded): the same command resumes, keeps
    what the finished stages wrote and trains the round's adapter, sharded."""
    import signal
    import time

    run_dir = tmp_path / "run"
    argv = [*FSDP_LAUNCH, "-m", "codealign", "iterate", "--rounds", "1",
            "--run-dir", str(run_dir), "-q", "--method", "dpo",
            "--set", "iterate.prompts_per_round=24",
            "--set", "iterate.eval_samples=4", "--set", "iterate.eval_k=1",
            "--set", "execution.sandbox=bwrap"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pairs = run_dir / "round-1" / "pairs.jsonl"
    first = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 600
    while not pairs.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the launcher and both of its processes
    first.wait()
    assert pairs.exists() and not (run_dir / "round-1" / "adapter").exists()
    finished = ("round-1/samples.jsonl", "round-1/results.jsonl", "round-1/pairs.jsonl")
    kept = {name: (run_dir / name).stat().st_mtime_ns for name in finished}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((run_dir / "report.json").read_text())
    assert [row["round"] for row in report["rounds"]] == [0, 1]
    for name, mtime in kept.items():
        assert (run_dir / name).stat().st_mtime_ns == mtime, name  # not redone
    metrics = json.loads((run_dir / "round-1" / "adapter" / "train_metrics.json").read_text())
    assert (metrics["processes"], metrics["sharding"]) == (2, "fsdp")
    assert not list(run_dir.rglob("*.tmp"))

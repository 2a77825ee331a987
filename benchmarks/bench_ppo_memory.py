"""PPO peak memory: codealign's one shared base against four separate models.

codealign's PPO keeps ONE base model in memory: the policy is a LoRA adapter on it, the
reference is the same base with the adapters switched off, and the value head is a
Linear on the policy's hidden states. The usual setup holds four models: the policy
(base + LoRA, trained), the reference (a second full copy, frozen), the critic (a third
copy with its own LoRA and a value head, trained) and the reward model (a fourth copy
with a scalar score head, frozen, forward only).

Both sides do the same PPO work on the same synthetic rollouts: per step, no-grad passes
for the old log-probs, the reference log-probs and the values (the four models also
score the rollouts with the reward model), then clipped policy and value updates on one
minibatch (the four models update policy and critic one after the other, with two AdamW
optimisers; that frees the policy's activations before the critic's forward, the
kinder order for them). Each side runs in its own process, so peak memory is its own:
resident set size on a CPU (also above the RSS after imports, before any model is
loaded; glibc's mmap threshold is fixed so that RSS follows live memory), peak allocated
GPU memory on CUDA. Time per step is the training wall time (rollout passes included,
loading not) divided by the steps taken.

    python benchmarks/bench_ppo_memory.py                   # CPU: the embedded tiny model
    python benchmarks/bench_ppo_memory.py --size small      # CPU: a random ~15M Llama
    python benchmarks/bench_ppo_memory.py --size 0.5b --quantization 4bit   # CUDA: QLoRA

Figures go to stdout and, with ``--out DIR``, to ``DIR/ppo_memory.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from codealign.settings.model import ModelConfig
    from codealign.settings.ppo import PPOConfig

SIDES = ("codealign", "naive")
LABELS = {"codealign": "codealign (one base)", "naive": "four models"}
SAMPLES_PER_TASK = 4


def prepare_model(out: Path, size: str) -> tuple[Path, int]:
    """The model directory for ``size`` and its parameter count. Nothing is downloaded:
    tiny is the project's embedded model, small and 0.5b are random weights."""
    if size != "tiny":
        from bench_dpo import build_model

        return out, build_model(out, size)
    from transformers import AutoModelForCausalLM

    from codealign.models.tiny import ensure_tiny_model

    path = ensure_tiny_model()
    model = AutoModelForCausalLM.from_pretrained(str(path))
    return path, int(sum(p.numel() for p in model.parameters()))


def make_rollouts(
    vocab: int, n: int, prompt_tokens: int, completion_tokens: int
) -> list[dict[str, Any]]:
    """Random token ids within the vocabulary, rewards uniform in [0, 1]."""
    rng = random.Random(0)
    return [
        {
            "task_id": f"task-{i // SAMPLES_PER_TASK}",
            "prompt_ids": [rng.randrange(vocab) for _ in range(prompt_tokens)],
            "completion_ids": [rng.randrange(vocab) for _ in range(completion_tokens)],
            "reward": rng.random(),
        }
        for i in range(n)
    ]


def memory_mb(device: str, *, peak: bool) -> float:
    """Peak (or, before anything is allocated, current) memory of this process."""
    if device == "cuda":
        used = torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()
        return used / 2**20
    # ru_maxrss is the peak so far: right after the imports that is the current RSS.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def resident_mb(*modules: torch.nn.Module) -> float:
    """Bytes of the parameters and buffers held (tied weights counted once), in MB."""
    sizes: dict[int, int] = {}
    for module in modules:
        for t in itertools.chain(module.parameters(), module.buffers()):
            sizes[t.data_ptr()] = t.numel() * t.element_size()
    return sum(sizes.values()) / 2**20


def model_config(args: argparse.Namespace) -> ModelConfig:
    from codealign.settings.model import ModelConfig

    # No LoRA dropout: both sides' ratios π/π_old start at 1, as codealign's recipe wants.
    return ModelConfig(
        name=args.model,
        device=args.device,
        quantization=args.quantization,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
    )


def ppo_config(args: argparse.Namespace) -> PPOConfig:
    from codealign.settings.ppo import PPOConfig

    # One epoch, one micro-batch per minibatch: every optimiser step is one
    # forward/backward of ``batch`` rollouts, the same unit of work as the naive loop's.
    return PPOConfig(
        lr=1e-4,
        epochs=1,
        minibatch_size=args.batch,
        micro_batch_size=args.batch,
        max_length=args.prompt_tokens + args.completion_tokens,
        vf_coef=0.1,
    )


def run_codealign(args: argparse.Namespace, records: list[dict[str, Any]]) -> dict[str, Any]:
    from codealign.models.loading import add_lora, load_model
    from codealign.training.ppo import train_ppo

    config = model_config(args)
    with tempfile.TemporaryDirectory() as out:
        metrics = train_ppo(
            records,
            config,
            ppo_config(args),
            Path(out) / "adapter",
            method="ppo",
            temperature=1.0,
            reference="base",
            progress=False,
        )
    peak = memory_mb(args.device, peak=True)
    # train_ppo does not hand back its model, so the same load is repeated to count its
    # weights; the peak is read first, so this second copy is not in it.
    model = add_lora(load_model(config, for_training=True), config)
    hidden = model.get_base_model().config.get_text_config().hidden_size
    return {
        "seconds": metrics["training_seconds"],
        "steps": metrics["steps"],
        "peak_memory_mb": peak,
        "parameter_mb": resident_mb(model, torch.nn.Linear(hidden, 1)),
    }


def run_naive(args: argparse.Namespace, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Policy, reference, critic and reward model as four copies of the base."""
    from codealign.models.loading import add_lora, load_model, load_tokenizer
    from codealign.training.losses import (
        clipped_policy_loss,
        clipped_value_loss,
        gae,
        kl_estimate,
        whiten,
    )
    from codealign.training.sequences import (
        TokenSequence,
        collate,
        completion_hidden,
        completion_outputs,
    )

    config, ppo = model_config(args), ppo_config(args)
    torch.manual_seed(ppo.seed)
    policy = add_lora(load_model(config, for_training=True), config).train()
    reference = load_model(config).requires_grad_(False).eval()
    critic = add_lora(load_model(config, for_training=True), config).train()
    reward_model = load_model(config).requires_grad_(False).eval()
    hidden = reference.config.get_text_config().hidden_size
    device = next(policy.parameters()).device
    value_head = torch.nn.Linear(hidden, 1).to(device)
    score_head = torch.nn.Linear(hidden, 1).to(device).requires_grad_(False)
    policy_params = [p for p in policy.parameters() if p.requires_grad]
    critic_params = [p for p in critic.parameters() if p.requires_grad]
    critic_params += list(value_head.parameters())
    policy_opt = torch.optim.AdamW(policy_params, lr=ppo.lr)
    critic_opt = torch.optim.AdamW(critic_params, lr=ppo.lr)
    tokenizer = load_tokenizer(args.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sequences = [TokenSequence(tuple(r["prompt_ids"]), tuple(r["completion_ids"])) for r in records]

    def values_of(batch: Any) -> torch.Tensor:
        values: torch.Tensor = value_head(completion_hidden(critic, batch).float()).squeeze(-1)
        return values

    started = time.perf_counter()
    steps = 0
    for s in range(0, len(sequences), args.batch):
        batch = collate(sequences[s : s + args.batch], pad_id, ppo.max_length).to(device)
        mask = batch.label_mask.to(device).float()
        with torch.no_grad():  # the rollout pass: all four models
            old_logps = completion_outputs(policy, batch, entropy=True).logps
            ref_logps = completion_outputs(reference, batch).logps
            old_values = values_of(batch)
            last = completion_hidden(reward_model, batch)[:, -1]  # completions end there
            scores = score_head(last.float()).squeeze(-1)
            token_rewards = -ppo.kl_coef * kl_estimate(old_logps, ref_logps) * mask
            token_rewards[:, -1] += scores
            advantages, returns = gae(token_rewards, old_values, mask, ppo.gamma, ppo.lam)
            advantages = whiten(advantages, mask)
        new = completion_outputs(policy, batch, entropy=True)
        pg_loss, _, _ = clipped_policy_loss(new.logps, old_logps, advantages, mask, ppo.clip)
        pg_loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(policy_params, ppo.max_grad_norm)
        policy_opt.step()
        policy_opt.zero_grad(set_to_none=True)
        del new, pg_loss  # the policy's activations go before the critic's forward
        v_loss, _ = clipped_value_loss(values_of(batch), old_values, returns, mask, ppo.value_clip)
        (ppo.vf_coef * v_loss).backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(critic_params, ppo.max_grad_norm)
        critic_opt.step()
        critic_opt.zero_grad(set_to_none=True)
        steps += 1
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "steps": steps,
        "peak_memory_mb": memory_mb(args.device, peak=True),
        "parameter_mb": resident_mb(
            policy, reference, critic, reward_model, value_head, score_head
        ),
    }


def worker(args: argparse.Namespace) -> None:
    # Both sides import the same libraries before the baseline is read.
    import peft  # noqa: F401

    import codealign.models.loading
    import codealign.training.ppo  # noqa: F401

    records = json.loads(Path(args.rollouts).read_text())
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline = memory_mb(args.device, peak=False)
    result = (run_codealign if args.worker == "codealign" else run_naive)(args, records)
    result["baseline_mb"] = baseline
    result["peak_above_baseline_mb"] = result["peak_memory_mb"] - baseline
    result["seconds_per_step"] = result["seconds"] / max(result["steps"], 1)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", choices=["tiny", "small", "0.5b"], help="default: tiny on CPU, 0.5b on CUDA"
    )
    parser.add_argument("--quantization", choices=["none", "4bit"], default="none")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8, help="rollouts per step")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--completion-tokens", type=int, default=64)
    parser.add_argument("--out", help="write ppo_memory.json here")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--rollouts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    args.size = args.size or ("0.5b" if args.device == "cuda" else "tiny")
    if args.size == "0.5b" and args.device != "cuda":
        sys.exit("--size 0.5b is built on a CUDA device: use tiny or small on a CPU")

    from codealign.models.loading import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, params = prepare_model(Path(tmp) / "model", args.size)
        vocab = len(load_tokenizer(str(model_dir)))
        rollouts = Path(tmp) / "rollouts.json"
        records = make_rollouts(
            vocab, args.batch * args.steps, args.prompt_tokens, args.completion_tokens
        )
        rollouts.write_text(json.dumps(records))
        # On a CPU, peak RSS also counts what glibc keeps after a free (it made the one
        # base look bigger than four on the tiny model); a fixed mmap threshold hands freed
        # blocks back at once, so RSS follows live memory.
        env = {"MALLOC_MMAP_THRESHOLD_": "1048576"} if args.device == "cpu" else {}
        results: dict[str, dict[str, Any]] = {}
        for side in SIDES:
            command = [
                sys.executable, __file__, "--worker", side, "--model", str(model_dir),
                "--rollouts", str(rollouts), "--device", args.device,
                "--quantization", args.quantization, "--batch", str(args.batch),
                "--prompt-tokens", str(args.prompt_tokens),
                "--completion-tokens", str(args.completion_tokens),
            ]  # fmt: skip
            done = subprocess.run(
                command, capture_output=True, text=True, check=False, env={**os.environ, **env}
            )
            if done.returncode != 0:
                sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
            results[side] = json.loads(done.stdout.strip().splitlines()[-1])
    threads = torch.get_num_threads()
    machine = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}), "
        f"{threads} torch thread{'s' * (threads != 1)}"
    )
    print(
        f"PPO, LoRA r=16 on every projection, {params / 1e6:.1f}M parameters "
        f"({args.quantization}), {args.batch} rollouts x "
        f"{args.prompt_tokens}+{args.completion_tokens} tokens per step, {machine}"
    )
    print(f"\n{'setup':<22}{'s/step':>9}{'peak MB':>10}{'above base':>12}{'params MB':>11}")
    for side in SIDES:
        r = results[side]
        print(
            f"{LABELS[side]:<22}{r['seconds_per_step']:>9.3f}{r['peak_memory_mb']:>10.0f}"
            f"{r['peak_above_baseline_mb']:>12.0f}{r['parameter_mb']:>11.1f}"
        )
    ours, theirs = results["codealign"], results["naive"]
    ratios = {
        "peak_memory": ours["peak_memory_mb"] / theirs["peak_memory_mb"],
        "peak_above_baseline": ours["peak_above_baseline_mb"] / theirs["peak_above_baseline_mb"],
        "speedup": theirs["seconds_per_step"] / ours["seconds_per_step"],
    }
    print(
        f"codealign vs four models: {ratios['peak_memory']:.2f}x the peak memory "
        f"({ratios['peak_above_baseline']:.2f}x above baseline), "
        f"{ratios['speedup']:.2f}x the speed"
    )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        report = {
            "machine": machine,
            "device": args.device,
            "size": args.size,
            "parameters": params,
            "quantization": args.quantization,
            "batch": args.batch,
            "steps": args.steps,
            "prompt_tokens": args.prompt_tokens,
            "completion_tokens": args.completion_tokens,
            "results": results,
            "codealign_vs_four_models": ratios,
        }
        (Path(args.out) / "ppo_memory.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

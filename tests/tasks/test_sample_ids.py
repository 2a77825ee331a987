"""Samples keyed by a dataset's own id (MBPP's integer ``901``) resolve to ``Mbpp/901``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codealign.cli import main
from codealign.errors import InputError
from codealign.execution import ExecResult
from codealign.execution.records.results import read_results
from codealign.samples import load_samples
from codealign.tasks import AssertsSuite, Task, load_tasks

# MBPP in its original layout: integer ids, ``text``, ``code``, ``test_list``, ...
MBPP_901: dict[str, Any] = {
    "task_id": 901,
    "text": "Write a function to find the smallest multiple of the first n numbers.",
    "code": "def smallest_multiple(n):\n    from math import lcm\n    m = 1\n"
    "    for i in range(1, n + 1):\n        m = lcm(m, i)\n    return m\n",
    "test_list": [
        "assert smallest_multiple(13)==360360",
        "assert smallest_multiple(2)==2",
        "assert smallest_multiple(1)==1",
    ],
    "test_setup_code": "",
    "challenge_test_list": [],
}
MBPP_11: dict[str, Any] = {
    "task_id": 11,
    "text": "Write a python function to remove first and last occurrence of a given character.",
    "code": "def remove_Occ(s, ch):\n    i = s.find(ch)\n    if i >= 0:\n"
    "        s = s[:i] + s[i+1:]\n    j = s.rfind(ch)\n    if j >= 0:\n"
    "        s = s[:j] + s[j+1:]\n    return s\n",
    "test_list": [
        'assert remove_Occ("hello","l") == "heo"',
        'assert remove_Occ("PHP","P") == "H"',
    ],
    "test_setup_code": "",
    "challenge_test_list": ['assert remove_Occ("","l") == ""'],
}
WRONG_901 = "def smallest_multiple(n):\n    return n\n"


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _task(task_id: str) -> Task:
    return Task(task_id, "Say f.", "f", AssertsSuite(("assert f() == 1",)), prompt_style="text")


@pytest.fixture
def mbpp(tmp_path: Path) -> dict[str, Task]:
    tasks = load_tasks(_jsonl(tmp_path / "mbpp_original.jsonl", [MBPP_901, MBPP_11]))
    return {t.task_id: t for t in tasks}


def test_dataset_ids_resolve_to_task_ids(tmp_path: Path, mbpp: dict[str, Task]) -> None:
    rows = [
        {"task_id": 901, "completion": "a"},
        {"task_id": "901", "completion": "b"},
        {"task_id": "Mbpp/901", "completion": "c"},
        {"task_id": 11, "solution": "d", "model": "m"},
    ]
    samples = load_samples(_jsonl(tmp_path / "s.jsonl", rows), mbpp)
    assert [s.task_id for s in samples] == ["Mbpp/901", "Mbpp/901", "Mbpp/901", "Mbpp/11"]
    # One task whichever way it was named, so completion ids count on across the spellings.
    assert [s.completion_id for s in samples] == [0, 1, 2, 0]
    assert [s.index for s in samples] == [0, 1, 2, 3]
    assert [s.record for s in samples] == rows  # the sample's own fields, as given


def test_an_exact_task_id_wins_over_a_prefixed_one(tmp_path: Path) -> None:
    tasks = {t: _task(t) for t in ("901", "Mbpp/901")}
    samples = load_samples(_jsonl(tmp_path / "s.jsonl", [{"task_id": 901, "solution": "x"}]), tasks)
    assert samples[0].task_id == "901"


def test_an_ambiguous_id_names_file_line_and_candidates(tmp_path: Path) -> None:
    tasks = {t: _task(t) for t in ("HumanEval/1", "Mbpp/1", "Mbpp/2")}
    path = _jsonl(
        tmp_path / "s.jsonl", [{"task_id": 2, "solution": "x"}, {"task_id": 1, "solution": "x"}]
    )
    with pytest.raises(InputError) as info:
        load_samples(path, tasks)
    assert str(info.value) == (
        f"{path}:2: sample for ambiguous task '1': it could be any of 2 tasks "
        "(HumanEval/1, Mbpp/1); give the full task id"
    )


@pytest.mark.parametrize("task_id", [902, "Mbpp/902", "Humaneval/901", "/901", "01"])
def test_an_unknown_id_is_still_an_error(
    tmp_path: Path, mbpp: dict[str, Task], task_id: object
) -> None:
    path = _jsonl(tmp_path / "s.jsonl", [{"task_id": 11, "solution": "x"}] * 2)
    path.write_text(path.read_text() + json.dumps({"task_id": task_id, "solution": "x"}) + "\n")
    with pytest.raises(InputError, match=rf"s\.jsonl:3: sample for unknown task '{task_id}' "):
        load_samples(path, mbpp)


def test_results_match_samples_named_either_way(tmp_path: Path, mbpp: dict[str, Task]) -> None:
    rows = [{"task_id": 901, "solution": "a"}, {"task_id": "11", "solution": "b"}]
    samples = load_samples(_jsonl(tmp_path / "s.jsonl", rows), mbpp)
    results = [
        ExecResult("Mbpp/901", 0, "passed").to_dict(),  # as codealign writes it
        ExecResult("11", 1, "failed").to_dict(),  # as a tool that keeps the sample's id might
    ]
    by_index = read_results(_jsonl(tmp_path / "r.jsonl", results), samples)
    assert [by_index[i].task_id for i in (0, 1)] == ["Mbpp/901", "Mbpp/11"]
    results[1]["task_id"] = 901  # names another task than its sample's
    with pytest.raises(InputError, match=r"r\.jsonl:2: result for sample 1 names task 901"):
        read_results(_jsonl(tmp_path / "r.jsonl", results), samples)


def _flags(tasks: Path, samples: Path) -> list[str]:
    return ["--tasks", str(tasks), "--samples", str(samples), "--sandbox", "bwrap", "-q"]


@pytest.mark.sandbox
def test_execute_and_eval_mbpp_keyed_by_integer_ids(bwrap_config: object, tmp_path: Path) -> None:
    tasks = _jsonl(tmp_path / "mbpp_original.jsonl", [MBPP_901, MBPP_11])
    samples = _jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": 901, "completion": MBPP_901["code"]},
            {"task_id": 11, "completion": MBPP_11["code"]},
            {"task_id": "901", "completion": WRONG_901},
        ],
    )
    out = tmp_path / "r.jsonl"
    assert main(["execute", *_flags(tasks, samples), "--out", str(out)]) == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    # Results name the task that was run, as pass@k and the report do.
    assert [r["task_id"] for r in results] == ["Mbpp/901", "Mbpp/11", "Mbpp/901"]
    assert [r["status"] for r in results] == ["passed", "passed", "failed"]
    assert [r["completion_id"] for r in results] == [0, 0, 1]
    assert [r["pass_rate"] for r in results] == [1.0, 1.0, pytest.approx(2 / 3)]

    report_path = tmp_path / "report.json"
    assert main(["eval", *_flags(tasks, samples), "--k", "1", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["tasks"] == 2 and report["tasks_without_samples"] == []
    assert {t: (e["n"], e["c"]) for t, e in report["per_task"].items()} == {
        "Mbpp/901": (2, 1),
        "Mbpp/11": (1, 1),
    }
    assert report["pass@1"] == pytest.approx(0.75)


def test_cli_names_the_line_of_an_unknown_mbpp_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = _jsonl(tmp_path / "mbpp_original.jsonl", [MBPP_901, MBPP_11])
    samples = _jsonl(
        tmp_path / "s.jsonl",
        [{"task_id": 901, "solution": "x"}] * 2 + [{"task_id": 12, "solution": "x"}],
    )
    out = tmp_path / "r.jsonl"
    assert main(["execute", *_flags(tasks, samples), "--out", str(out)]) == 2
    assert f"{samples}:3: sample for unknown task '12'" in capsys.readouterr().err
    assert not out.exists()

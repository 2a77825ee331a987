"""``iterate.rm_refresh_every``: the readability model refreshed before a round is scored,
on the policy's own correct programs (and their degraded twins) and the developers'
labels; the refreshed model scores the round, and the report shows the refresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codealign.cli import main
from codealign.tasks.tiny import tiny_tasks


def human_files(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """``n`` proposed pairs of tiny tasks (the canonical body against a roundabout one),
    each labelled by one developer who prefers the canonical body."""
    proposals, labels = [], []
    for i, task in enumerate(tiny_tasks("train")[:n]):
        body = task.canonical_solution or ""
        other = body.replace("    return", "    result =", 1) + "    return result\n"
        proposals.append({"pair_id": f"h{i}", "task_id": task.task_id, "prompt": task.prompt,
                          "a": task.prompt + body, "b": task.prompt + other,
                          "response_a": body, "response_b": other})  # fmt: skip
        labels.append({"pair_id": f"h{i}", "annotator": "dev", "choice": "a", "left": "a",
                       "time": 0.0})  # fmt: skip
    pairs_path, labels_path = tmp_path / "proposals.jsonl", tmp_path / "labels.jsonl"
    pairs_path.write_text("".join(json.dumps(r) + "\n" for r in proposals))
    labels_path.write_text("".join(json.dumps(r) + "\n" for r in labels))
    return pairs_path, labels_path


@pytest.mark.integration
@pytest.mark.sandbox
def test_a_refresh_round_retrains_the_readability_model_that_then_scores_it(
    tmp_path: Path,
) -> None:
    from codealign.readability.scorer import ReadabilityScorer

    proposals, labels = human_files(tmp_path, 24)
    run = tmp_path / "run"
    argv = ["iterate", "--rounds", "1", "--run-dir", str(run), "-q",
            "--set", "iterate.prompts_per_round=48", "--set", "iterate.eval_samples=2",
            "--set", "iterate.eval_k=1", "--set", "execution.sandbox=bwrap",
            "--set", "iterate.rm_refresh_every=1", "--set", "iterate.rm_refresh_pairs=24",
            "--set", f"iterate.human_labels={labels}",
            "--set", f"iterate.human_pairs={proposals}"]  # fmt: skip
    assert main(argv) == 0
    info = json.loads((run / "round-1" / "readability.json").read_text())
    assert info["round"] == 1 and info["policy_pairs"] > 0
    assert info["human_pairs"] + info["human_heldout"] == 24 and info["human_heldout"] > 0
    for key in ("human_heldout_accuracy_before", "human_heldout_accuracy_after"):
        assert 0 <= info[key] <= 1
    refreshed = run / "round-1" / "readability"
    assert (refreshed / "reward_model.json").exists()
    times = json.loads((run / "round-1" / "times.json").read_text())
    assert list(times).index("refresh") < list(times).index("score")
    # The refreshed model scored the round: recompute one sample's readability with it.
    row = next(
        json.loads(line)
        for line in (run / "round-1" / "scored.jsonl").read_text().splitlines()
        if "mean" in json.loads(line)["details"]["readability"]
    )
    again = ReadabilityScorer([refreshed], device="cpu").score([row["prompt"]], [row["completion"]])
    assert again[0].mean == pytest.approx(row["details"]["readability"]["mean"], abs=1e-5)
    report = json.loads((run / "report.json").read_text())
    assert report["rounds"][1]["readability_refresh"]["round"] == 1
    assert "| refresh round |" in (run / "report.md").read_text()

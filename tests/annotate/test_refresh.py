"""Issue 18's loop end to end: a finished tiny ``iterate`` run, its 40 most ambiguous
readability pairs proposed, labelled by keyboard in headless Chromium (a developer who
finds the shorter of two correct programs more readable), and the readability model
refreshed: the built-in model trained on those labels beside a sample of its synthetic
pairs. The accuracy on the held-out human labels is reported before and after."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from codealign.annotate.store import LabelStore, read_pairs
from codealign.cli import main
from tests.annotate.test_app import CHROMIUM, require_browser, serve

#: A refresh of the built-in readability model: one epoch at a lower learning rate.
REFRESH = ["--init", "builtin", "--base", "tiny", "--finetune", "full", "--device", "cpu",
           "--max-length", "256", "--epochs", "1", "--batch-size", "16", "--lr", "1e-4",
           "--eval-fraction", "0.15"]  # fmt: skip


def preferred(a: str, b: str) -> str:
    """The simulated developer: the shorter program reads better."""
    return "a" if len(a) < len(b) else "b" if len(b) < len(a) else "tie"


@pytest.mark.integration
@pytest.mark.sandbox
@pytest.mark.browser
def test_a_run_to_labels_to_a_refreshed_readability_model(tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    run, proposals, labels = tmp_path / "run", tmp_path / "pairs.jsonl", tmp_path / "labels.jsonl"
    assert main(["iterate", "--rounds", "1", "--run-dir", str(run), "-q",
                 "--set", "iterate.prompts_per_round=160", "--set", "iterate.eval_samples=2",
                 "--set", "iterate.eval_k=1", "--set", "execution.sandbox=bwrap"]) == 0  # fmt: skip
    assert (
        main(["propose-pairs", "--run", str(run), "--budget", "40", "--out", str(proposals)]) == 0
    )
    pairs = read_pairs(proposals)
    assert len(pairs) == 40 and len({p.task_id for p in pairs}) >= 20
    store = LabelStore(pairs, labels)
    keys = {"left": "ArrowLeft", "right": "ArrowRight", "tie": "t"}
    for url in serve(store):
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
            )
            page = browser.new_page()
            page.goto(f"{url}/?annotator=dev")
            for n in range(40):
                page.wait_for_function(
                    f"document.querySelector('#count').textContent === '{n} / 40'"
                )
                left, right = page.inner_text("#left"), page.inner_text("#right")
                side = {"a": "left", "b": "right", "tie": "tie"}[preferred(left, right)]
                page.keyboard.press(keys[side])
            page.wait_for_selector("#finished:not(.hidden)")
            browser.close()
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert len(rows) == 40
    for row in rows:  # what was chosen, by program
        pair = store.by_id[row["pair_id"]]
        assert row["choice"] == preferred(pair.a, pair.b)
    synthetic = tmp_path / "synthetic.jsonl"
    assert main(["rm-pairs", "--out", str(synthetic), "--sandbox", "bwrap", "-q"]) == 0
    sample = tmp_path / "sample.jsonl"  # the old pairs keep the model from forgetting them
    sample.write_text("".join(synthetic.read_text().splitlines(keepends=True)[::8]))
    model = tmp_path / "readability"
    argv = ["train-rm", "--pairs", str(sample), "--human-labels", str(labels),
            "--human-pairs", str(proposals), "--out", str(model), "-q", *REFRESH]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((model / "metrics.json").read_text())["human_heldout"]
    assert report["pairs"] >= 4
    assert 0 <= report["before"] <= 1 and 0 <= report["after"] <= 1
    (tmp_path / "refresh.json").write_text(json.dumps(report, indent=2))
    if os.environ.get("CODEALIGN_KEEP_REFRESH"):
        shutil.copy(tmp_path / "refresh.json", os.environ["CODEALIGN_KEEP_REFRESH"])

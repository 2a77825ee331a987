"""The default readability model, built for real from the tiny backbone (integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codealign.cli import main
from codealign.scoring.readability import ReadabilityScorer, ensure_default_readability_model

HANDWRITTEN = Path(__file__).parent.parent / "data" / "readability_handwritten.jsonl"

pytestmark = pytest.mark.integration


def test_default_model_generalises_to_held_out_families() -> None:
    path = ensure_default_readability_model()
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["heldout_pairs"] >= 100
    assert metrics["heldout_accuracy"] >= 0.90, metrics


def test_handwritten_pairs_no_generator_made(tmp_path: Path) -> None:
    pairs = [json.loads(line) for line in HANDWRITTEN.read_text().splitlines()]
    assert len(pairs) >= 20
    out = tmp_path / "eval.json"
    assert main(["eval-rm", "--pairs", str(HANDWRITTEN), "--json", str(out)]) == 0
    accuracy = json.loads(out.read_text())["accuracy"]
    # 18 of 25 or better: a coin would do that less than 3% of the time.
    assert accuracy >= 0.72, accuracy
    scores = ReadabilityScorer().score([p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    assert all(0.0 <= s.mean <= 1.0 and s.std == 0.0 for s in scores)

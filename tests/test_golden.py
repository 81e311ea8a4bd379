"""Real Gemma 3 270M answers (base and the merged control, raw prompts, 24 v5-small eval items):
the parser and scorer must keep reading them exactly as recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simonsca.codec import parse_answer
from simonsca.dataset import families, make_eval_item
from simonsca.scoring import score_item

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden" / "gemma3-270m-answers.jsonl"
RECORDS = [json.loads(line) for line in GOLDEN.read_text().splitlines()]


def test_golden_file_covers_both_models_and_failure_kinds() -> None:
    assert {r["model"] for r in RECORDS} == {"base", "merged"}
    reasons = {r["reason"].split(":")[0] for r in RECORDS if r["reason"]}
    assert {"ragged rows", "not JSON", "no grid found"} <= reasons


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r['model']}-{r['seed']}")
def test_real_answer_parses_and_scores_as_recorded(record: dict) -> None:
    item = make_eval_item(record["seed"], families("v5-small"))
    parsed = parse_answer(record["text"], item)
    assert parsed.ok == record["parse_ok"]
    if parsed.ok:
        assert (
            np.asarray(parsed.value).astype(int).tolist()
            == np.asarray(record["value"]).astype(int).tolist()
        )
    else:
        assert parsed.reason == record["reason"]
    score = score_item(item, record["text"])
    assert score.exact == record["exact"]
    assert score.cell_accuracy == pytest.approx(record["cell_accuracy"])


def test_real_answers_are_far_below_the_parse_limit() -> None:
    """The runner's budget (1.5x the answer's tokens + 16) keeps real answers well under the
    parser's read limit, so the cut never touches them (longest: 519 of 3160 characters)."""
    from simonsca.codec import answer_limit

    for record in RECORDS:
        item = make_eval_item(record["seed"], families("v5-small"))
        assert len(record["text"]) < answer_limit(item) / 4

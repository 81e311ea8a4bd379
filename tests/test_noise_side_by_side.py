"""The noise floor's regrouping null decodes several answers side by side, one token each per
call, only where every answer's logits stay bit for bit those of one answer per call: the floor is
the same number, measured for less."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from tiny_models import BASE, tiny

from simonsca.dataset import eval_items
from simonsca.models.base import LikelihoodRequest
from simonsca.models.llamacpp import LlamaCppModel
from simonsca.models.llamacpp.forcing import MAX_SIDE_BY_SIDE


def _scores(model: LlamaCppModel, requests: list[LikelihoodRequest], n_seq: int) -> list[object]:
    return [lik for _, lik in sorted(model.likelihood_many(requests, stepwise=True, n_seq=n_seq))]


@pytest.mark.parametrize("weight_type", ["Q8_0", "Q4_0", "F16"])
def test_side_by_side_stepwise_scores_equal_one_at_a_time(tmp_path: Path, weight_type: str) -> None:
    path = (
        BASE
        if weight_type == "Q8_0"
        else tiny.write_tiny_model(
            tmp_path / f"tiny-{weight_type}.gguf",
            weight_type=GGMLQuantizationType[weight_type],
        )
    )
    requests = [
        LikelihoodRequest(prompt=i.prompt, answer=i.output, stop="\n\n") for i in eval_items(5)
    ]
    with LlamaCppModel(path, n_ctx=512, n_threads=1) as model:
        alone = _scores(model, requests, 1)
        expected = MAX_SIDE_BY_SIDE if weight_type != "F16" else 1  # F16 rows move: one at a time
        assert model.side_by_side_rows() == expected
        with model.sequences(MAX_SIDE_BY_SIDE, 512):
            together = _scores(model, requests, MAX_SIDE_BY_SIDE)
        assert together == alone
        assert _scores(model, requests, 1) == alone  # the model's own context is back
    for a, b in zip(alone, together):
        assert np.array_equal(a.logprobs, b.logprobs)  # type: ignore[attr-defined]

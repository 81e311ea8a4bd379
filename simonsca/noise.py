"""The noise floor: how far the reference model's teacher-forced scores move under changes that
mean nothing, so that no finetune is credited (or blamed) for less.

Two nulls are measured on the reference model, and the larger wins, item by item and token by
token:

* **regrouping** -- the same answers scored one token per decode call (as greedy generation
  decodes) instead of :data:`~simonsca.models.llamacpp.UBATCH` per call: llama.cpp sums in
  another order. Up to three answers share each call, side by side, where every answer's
  logits stay bit for bit those of one answer per call (quantized weights, checked as it goes:
  :meth:`~simonsca.models.llamacpp.forcing.TeacherForcing.side_by_side_rows`), so the floor is
  the same and costs less than generating the answers again;
* **a null update** -- the reference with a random rank-1 LoRA whose update is
  :data:`NULL_UPDATE` (1e-6) of each weight's norm, on every attention and feed-forward weight.
  That is what a comparison with a finetune varies: the weights. A quantized model (Q4_0, Q4_1,
  Q8_0, K-quants) rounds its activations to 8 bits for every matrix product with a quantized
  weight, so *any* change of the weights, however small, flips some of those roundings and moves
  the logits by a step that does not shrink with the change. Measured on the tiny llama (16
  items): a 1e-6 update moves an item's NLL by up to 2.0e-3 nats/token in Q8_0 and Q4_1, the
  same as a 1e-3 update, while regrouping moves it by 0 (Q8_0) and 2e-4 (Q4_1); in F32, where
  nothing is rounded, the same update moves it by 7e-6. Regrouping alone let a 1e-6 adapter pass
  as a real effect.

The null update needs an in-process llama.cpp model (it is applied as a second adapter on the
loaded reference); for a served reference only regrouping is measured where it can be, and the
floor says which.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from simonsca.adapters.gguf_lora import write_lora_gguf
from simonsca.atomic import atomic_path
from simonsca.cache import AnswerCache, cache_dir
from simonsca.compare import NoiseFloor
from simonsca.gguf_file import (
    GGUFTensor,
    architecture,
    dequantize_rows,
    file_sha256,
    n_rows,
    open_gguf,
    tensor_shape,
)
from simonsca.models.base import AnswerLikelihood, LikelihoodRequest, Model
from simonsca.runner import ForcedRun, LikelihoodScorer, teacher_force
from simonsca.tasks import Item

#: Items of the reference model scored again for each null.
NOISE_ITEMS = 8
#: Size of the null update, relative to each weight's Frobenius norm: far below any precision a
#: GGUF stores weights in (F16 rounds at ~5e-4 of a value, Q8_0 at ~1e-2 of a block's largest).
NULL_UPDATE = 1e-6
#: Weights the null update touches (llama.cpp applies a LoRA to these in every architecture).
NULL_TARGETS = (
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_qkv",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
)
#: Rows dequantized per weight to estimate its norm (an 8B model is not read whole for this).
NORM_SAMPLE_ROWS = 64
#: Version of the null adapter's recipe (part of its cached file name).
NULL_RECIPE = "null-update/1"
#: Name of the regrouping null's scores in the cache.
REGROUPING = "stepwise"


def noise_floor(
    model: Model, items: Sequence[Item], run: ForcedRun, cache: AnswerCache | None = None
) -> NoiseFloor | None:
    """Both nulls on the first :data:`NOISE_ITEMS` items of ``run`` (the reference's own
    teacher-forced scores); None where the backend can measure neither.

    The floor belongs to the reference model: its re-scorings are kept in ``cache`` beside its
    answers (keyed by the model, the items and each null's recipe), so a later run with the same
    reference reads them instead of scoring the items again -- one token per decode call is as
    dear as generating them."""
    from simonsca.models.llamacpp import LlamaCppModel

    if not isinstance(model, LlamaCppModel):
        return None
    chosen = list(items[:NOISE_ITEMS])

    def rescored(null: str, score: LikelihoodScorer) -> tuple[AnswerLikelihood, ...]:
        forced = teacher_force(
            model,
            chosen,
            prompt_mode=run.prompt_mode,
            cache=cache,
            progress=False,
            null=(null, score),
            group_size=len(chosen) if null == REGROUPING else None,
        )
        return forced.likelihoods

    def stepwise(requests: Sequence[LikelihoodRequest]) -> Iterator[tuple[int, AnswerLikelihood]]:
        # Side by side where that leaves every row's logits as they are alone (checked as it
        # goes: see TeacherForcing._stepwise), in a context sized to these answers.
        side = min(model.side_by_side_rows(), len(requests))
        need = max(len(model.tokenize(r.prompt + r.answer + r.stop, bos=True)) for r in requests)
        with model.sequences(side, -(-(need + 16) // 256) * 256):
            yield from model.likelihood_many(requests, stepwise=True, n_seq=side)

    first = run.likelihoods[: len(chosen)]
    regrouped = rescored(REGROUPING, stepwise)
    item_nll, token = _spread(first, regrouped)
    methods = ["one token per decode call, as greedy generation decodes"]
    null = null_adapter(model.path)
    if null is not None:
        with model.extra_adapter(null):
            nudged = rescored(NULL_RECIPE, model.likelihood_many)
        null_nll, null_token = _spread(first, nudged)
        item_nll, token = max(item_nll, null_nll), max(token, null_token)
        methods.append(
            f"with a random update of {NULL_UPDATE:g} of each weight's norm (quantized "
            "activations round differently after any change of the weights)"
        )
    return NoiseFloor(
        item_nll=item_nll,
        token_logprob=token,
        n_items=len(chosen),
        method="the reference model's answers re-scored " + ", and ".join(methods),
    )


def _spread(a: Sequence[AnswerLikelihood], b: Sequence[AnswerLikelihood]) -> tuple[float, float]:
    """The largest change of an item's NLL, and of one token's log-prob, between two scorings."""
    item = max((abs(x.nll - y.nll) for x, y in zip(a, b)), default=0.0)
    token = max(
        (abs(p - q) for x, y in zip(a, b) for p, q in zip(x.logprobs, y.logprobs)), default=0.0
    )
    return item, token


def null_adapter(model_path: Path) -> Path | None:
    """The null update for ``model_path`` as a LoRA GGUF, made once per model file (cached by
    its sha256 next to the answer cache); None when the model has none of :data:`NULL_TARGETS`."""
    target = (
        cache_dir()
        / "noise"
        / f"{file_sha256(model_path)[:24]}-{NULL_RECIPE.replace('/', '-')}.gguf"
    )
    if target.is_file():
        return target
    header = open_gguf(model_path, "model")
    weights = [t for t in header.tensors if _is_target(t)]
    if not weights:
        return None
    rng = np.random.default_rng(0)
    pairs = {t.name: _null_pair(t, rng) for t in weights}
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        write_lora_gguf(tmp, architecture(header), pairs, alpha=1.0)
    return target


def _is_target(t: GGUFTensor) -> bool:
    parts = t.name.split(".")
    return (
        len(parts) == 4
        and parts[0] == "blk"
        and parts[2] in NULL_TARGETS
        and parts[3] == "weight"
        and len(tensor_shape(t)) == 2
    )


def _null_pair(t: GGUFTensor, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rank-1 ``(lora_a, lora_b)`` with ``||B @ A|| = NULL_UPDATE * ||W||`` (alpha = rank = 1)."""
    n_out, n_in = tensor_shape(t)
    rows = n_rows(t)
    picks = np.unique(rng.integers(0, rows, size=min(rows, NORM_SAMPLE_ROWS)))
    sample = np.concatenate([dequantize_rows(t, int(r), int(r) + 1) for r in picks])
    norm = float(np.sqrt(np.sum(sample.astype(np.float64) ** 2) * rows / len(picks)))
    a = rng.standard_normal((1, n_in))
    b = rng.standard_normal((n_out, 1))
    b *= NULL_UPDATE * norm / max(float(np.linalg.norm(b) * np.linalg.norm(a)), 1e-30)
    return a.astype(np.float32), b.astype(np.float32)

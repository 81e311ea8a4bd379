"""Forensics on real (tiny) GGUF files: weight diff, adapter inspection, quantisation survival,
training-data doctor, training log, logit effect, findings.

The tiny llama model and LoRA come from fixtures/make_tiny_models.py (checked in under
fixtures/tiny/); variants (zero adapter, scaled-down adapter, re-quantised copies) are built in
tmp_path with the same functions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from simonsca import dataset
from simonsca.errors import AdapterMismatch, DatasetError, ModelFileError
from simonsca.forensics import (
    Finding,
    Severity,
    diff_models,
    doctor,
    explain_failure,
    format_findings_table,
    inspect_adapter,
    parse_train_log,
    read_adapter,
    to_json,
)
from simonsca.forensics.resolution import ESTIMATOR_REQUANTIZE, ResolutionAccumulator

ROOT = Path(__file__).resolve().parents[1]


from tests.tiny_models import BASE, LORA, tiny


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def dequantised_weights(path: Path) -> dict[str, np.ndarray]:
    r = GGUFReader(path)
    out = {}
    for t in r.tensors:
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        out[t.name] = w.reshape(
            tuple(reversed([int(x) for x in t.shape])) if len(t.shape) > 1 else (-1,)
        )
    return out


# --- fixtures are what the generator writes ---------------------------------------------------


def test_fixture_files_are_deterministic(tmp_path):
    """Regenerated twice on this build, the files are byte-identical; against the shipped ones
    (maybe made by another numpy/gguf build), the same tensors and metadata, values to float
    tolerance (the last bits of regenerated floats may differ between builds)."""
    from simonsca import gguf_file

    base = tiny.write_tiny_model(tmp_path / "b.gguf")
    lora = tiny.write_tiny_lora(tmp_path / "l.gguf", base)
    again = tiny.write_tiny_model(tmp_path / "b2.gguf")
    assert base.read_bytes() == again.read_bytes()
    assert lora.read_bytes() == tiny.write_tiny_lora(tmp_path / "l2.gguf", again).read_bytes()
    for made, shipped in ((base, BASE), (lora, LORA)):
        a, b = gguf_file.open_gguf(made), gguf_file.open_gguf(shipped)
        assert {k: e.raw for k, e in a.metadata.items()} == {
            k: e.raw for k, e in b.metadata.items()
        }
        assert [(t.name, t.shape, t.tensor_type) for t in a.tensors] == [
            (t.name, t.shape, t.tensor_type) for t in b.tensors
        ]
        for ta, tb in zip(a.tensors, b.tensors):
            np.testing.assert_allclose(
                gguf_file.dequantize_tensor(ta), gguf_file.dequantize_tensor(tb), rtol=0, atol=1e-2
            )
    assert BASE.stat().st_size + LORA.stat().st_size < 400_000


# --- findings ---------------------------------------------------------------------------------


def test_finding_is_frozen_and_renders():
    f = Finding("x-code", Severity.WARNING, "a title", "some detail", {"n": np.int64(3), "r": 0.5})
    with pytest.raises(AttributeError):
        f.code = "other"  # type: ignore[misc]
    table = format_findings_table([Finding("e", Severity.INFO, "info one"), f])
    assert table.splitlines()[2].startswith("warning")  # warnings sort before info
    assert "some detail" in table
    data = json.loads(to_json([f]))
    assert data[0]["numbers"] == {"n": 3, "r": 0.5}
    assert format_findings_table([]).startswith("no findings")


# --- weight diff ------------------------------------------------------------------------------


def test_byte_copy_is_reported_identical(tmp_path):
    merged = tmp_path / "merged.gguf"
    shutil.copy(BASE, merged)
    d = diff_models(BASE, merged)
    assert d.n_changed == 0 and d.n_identical == d.n_tensors == 21
    assert codes(d.findings) == ["merged-identical"]
    f = d.findings[0]
    assert f.severity is Severity.ERROR
    assert f.numbers["tensors"] == 21
    assert "byte-identical" in f.title


def test_requantised_copy_is_a_quantisation_mismatch(tmp_path):
    weights = dequantised_weights(BASE)
    other = tiny.write_tiny_model(
        tmp_path / "q4.gguf", weight_type=GGMLQuantizationType.Q4_0, weights=weights
    )
    d = diff_models(BASE, other)
    f = {x.code: x for x in d.findings}["quantisation-mismatch"]
    assert f.numbers["type_changes"] == {"Q8_0->Q4_0": 16}
    assert "Q8_0->Q4_0 in 16" in f.title
    changed = [t for t in d.tensors if t.type_changed]
    assert len(changed) == 16
    # Q4_0 re-quantisation noise of random weights: a few percent, not zero, not huge
    assert all(0.01 < (t.relative_change or 0) < 0.3 for t in changed)
    # norms (F32) untouched
    assert all(t.byte_identical for t in d.tensors if t.type_base == "F32")


def test_healthy_merge_has_no_diff_findings(tmp_path):
    from simonsca.merge import merge_adapter

    merged = merge_adapter(BASE, LORA, tmp_path / "merged.gguf")
    d = diff_models(BASE, merged)
    assert d.findings == ()
    assert d.n_changed == 14
    top = d.largest_changes(3)
    assert len(top) == 3 and all(abs((t.relative_change or 0) - 0.5) < 0.01 for t in top)
    assert "14 of 21" in d.summary()


def test_diff_names_the_file_that_is_not_gguf(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_text("hello")
    with pytest.raises(ModelFileError, match="notes.gguf"):
        diff_models(BASE, bad)
    with pytest.raises(ModelFileError, match="missing.gguf"):
        diff_models(tmp_path / "missing.gguf", BASE)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(BASE.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="cut.gguf"):
        diff_models(BASE, truncated)


def test_diff_reports_shape_and_architecture_mismatch(tmp_path):
    small = tiny.write_tiny_model(tmp_path / "small.gguf", cfg=tiny.TinyConfig(n_embd=32, n_ff=64))
    d = diff_models(BASE, small)
    assert "shape-mismatch" in codes(d.findings)
    assert "merged-identical" not in codes(d.findings)


# --- adapter ----------------------------------------------------------------------------------


def test_lora_update_matches_llama_cpp_layout():
    lora = read_adapter(LORA)
    r = GGUFReader(LORA)
    t = {x.name: np.asarray(x.data, dtype=np.float32) for x in r.tensors}
    pair = next(p for p in lora.pairs if p.target == "blk.0.ffn_down.weight")
    a, b = t["blk.0.ffn_down.weight.lora_a"], t["blk.0.ffn_down.weight.lora_b"]
    assert a.shape == (4, 128) and b.shape == (64, 4)  # A (rank, n_in), B (n_out, rank)
    assert lora.alpha == 4.0 and pair.scale == 1.0 and pair.rank == 4
    np.testing.assert_allclose(pair.delta(), b @ a, rtol=1e-5, atol=1e-7)
    assert pair.frobenius_norm() == pytest.approx(float(np.linalg.norm(b @ a)), rel=1e-5)


def test_healthy_adapter_has_no_findings():
    rep = inspect_adapter(BASE, LORA)
    assert rep.findings == ()
    assert rep.n_targets == 14
    for s in rep.tensors:
        assert s.relative_update == pytest.approx(0.5, rel=1e-3)
        assert s.retained == pytest.approx(1.0, abs=0.02)
        assert s.estimator == ESTIMATOR_REQUANTIZE


def test_all_zero_adapter_is_never_trained(tmp_path):
    zero = tiny.write_tiny_lora(tmp_path / "zero.gguf", BASE, zero=True)
    rep = inspect_adapter(BASE, zero)
    assert codes(rep.findings) == ["adapter-never-trained"]
    assert rep.findings[0].numbers == {"targets": 14, "zero": 14}
    assert all(s.update_norm == 0.0 for s in rep.tensors)


def test_update_below_quantisation_step_is_reported(tmp_path):
    small = tiny.write_tiny_lora(tmp_path / "small.gguf", BASE, relative=1e-4)
    rep = inspect_adapter(BASE, small)
    assert codes(rep.findings) == ["update-below-resolution"]
    f = rep.findings[0]
    assert f.title == "adapter update below Q8_0 resolution in 14 of 14 tensors"
    assert f.severity is Severity.ERROR
    assert f.numbers["median_retained"] < 0.1
    # the same adapter merged to F32 would survive: check against another type
    rep32 = inspect_adapter(BASE, small, resolution_type="F32")
    assert rep32.findings == ()


def test_adapter_for_another_model_raises_naming_both_files(tmp_path):
    other = tiny.write_tiny_model(
        tmp_path / "other-base.gguf", cfg=tiny.TinyConfig(n_embd=32, n_ff=64)
    )
    with pytest.raises(AdapterMismatch, match=r"tiny-lora\.gguf.*other-base\.gguf"):
        inspect_adapter(other, LORA)


def test_model_file_is_not_an_adapter():
    with pytest.raises(ModelFileError, match="not a llama.cpp LoRA adapter"):
        inspect_adapter(BASE, BASE)


def test_resolution_estimator_on_arrays():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    for scale, lo, hi in ((1e-5, 0.0, 0.05), (0.5, 0.9, 1.1)):
        acc = ResolutionAccumulator(GGMLQuantizationType.Q8_0, ESTIMATOR_REQUANTIZE)
        delta = (scale * rng.standard_normal(w.shape)).astype(np.float32)
        acc.add(w, delta)
        assert lo <= acc.retained <= hi


# --- training log -----------------------------------------------------------------------------

SEED_LOG = """\
main: model base = '/models/Meta-Llama-3-8B-Instruct-Q8_0.gguf'
print_params: n_ctx                 : 512
print_lora_params: n_rank_wq             : 4
tokenize_file: warning: found 6097 samples (max length 939) that exceed context length of 512. samples will be cut off.
tokenize_file: warning: found 13490 samples (min length 130) that are shorter than context length of 512.
tokenize_file: total number of samples: 19587
train_opt_callback: iter=     0 sample=1/19587 sched=0.000000 loss=0.000000 |->
train_opt_callback: iter=     1 sample=9/19587 sched=0.010000 loss=15.198700 dt=00:03:08 eta=13:22:20 |->
train_opt_callback: iter=    51 sample=409/19587 sched=0.510000 loss=1.983209 dt=00:03:04 eta=10:31:06 |---->
train_opt_callback: iter=    52 sample=417/19587 sched=0.520000 loss=1.989653 dt=00:03:04 eta=10:27:54 |---->
^C
"""


def test_seed_log_says_training_stopped_at_2_percent(tmp_path):
    path = tmp_path / "finetune.log"
    path.write_text(SEED_LOG)
    log = parse_train_log(path)
    assert (log.iterations, log.samples_seen, log.total_samples) == (52, 417, 19587)
    assert log.last_loss == pytest.approx(1.989653)
    assert (log.over_context, log.max_length, log.n_ctx, log.lora_rank) == (6097, 939, 512, 4)
    assert log.model_base.endswith("Q8_0.gguf")
    found = {f.code: f for f in explain_failure(train_log=path)}
    stop = found["training-stopped-early"]
    assert stop.title.startswith("training stopped at 2% of an epoch")
    assert stop.severity is Severity.ERROR
    assert "warming up" in stop.detail
    assert found["log-samples-over-context"].numbers["over_context"] == 6097


def test_log_without_finetune_lines_is_a_dataset_error(tmp_path):
    path = tmp_path / "other.log"
    path.write_text("hello\n")
    with pytest.raises(DatasetError, match="other.log"):
        parse_train_log(path)


# --- training-data doctor (llama.cpp tokenizer of the tiny model) ----------------------------


def _v5_file(tmp_path: Path, items) -> Path:
    path = tmp_path / "train_data.txt"
    dataset.write_items(items, path, "v5", force=True)
    return path


def test_doctor_reports_cut_answers_with_numbers(tmp_path):
    import llama_cpp

    items = list(dataset.v5_items(40))
    path = _v5_file(tmp_path, items)
    n_ctx = 256
    rep = doctor(path, BASE, n_ctx=n_ctx)
    assert rep.n_samples == 40
    # independent recount with llama_cpp's own tokenize
    llm = llama_cpp.Llama(str(BASE), vocab_only=True, verbose=False)
    totals = [len(llm.tokenize(it.training_text.encode(), add_bos=True)) for it in items]
    prompts = [len(llm.tokenize(it.prompt.encode(), add_bos=True)) for it in items]
    llm.close()
    lost = [max(0, (t - p) - max(0, n_ctx - p)) for t, p in zip(totals, prompts)]
    assert rep.tokens_max == max(totals)
    assert rep.n_over_context == sum(t > n_ctx for t in totals)
    assert rep.n_answer_cut == sum(x > 0 for x in lost) > 0
    assert rep.answer_tokens_lost == sum(lost)
    f = {x.code: x for x in rep.findings}["answers-truncated"]
    assert f.numbers["answer_cut"] == rep.n_answer_cut
    assert f"{rep.n_answer_cut} of 40 samples" in f.title
    assert rep.marker_is_special  # <s> is the tiny tokenizer's BOS control token


def test_doctor_healthy_file_has_no_findings(tmp_path):
    path = _v5_file(tmp_path, dataset.v5_items(20))
    rep = doctor(path, BASE, n_ctx=4096, eval_items=dataset.eval_items(5))
    assert rep.findings == ()
    assert rep.n_answer_cut == rep.n_duplicates == rep.n_eval_prompt_overlap == 0


def test_doctor_finds_duplicates_and_eval_overlap(tmp_path):
    items = list(dataset.v5_items(10))
    path = _v5_file(tmp_path, items + items[:3])
    rep = doctor(path, BASE, n_ctx=4096, eval_items=items[5:7])
    found = {f.code: f for f in rep.findings}
    assert found["duplicate-samples"].numbers["duplicates"] == 3
    assert found["eval-overlap"].numbers["prompt_overlap"] == 2
    assert found["eval-overlap"].severity is Severity.ERROR


def test_doctor_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="nope.txt"):
        doctor(tmp_path / "nope.txt", BASE)
    empty = tmp_path / "empty.txt"
    empty.write_text("no marker here")
    with pytest.raises(DatasetError, match="empty.txt"):
        doctor(empty, BASE)
    path = _v5_file(tmp_path, dataset.v5_items(2))
    with pytest.raises(ModelFileError, match="missing.gguf"):
        doctor(path, tmp_path / "missing.gguf")


# --- logit effect -----------------------------------------------------------------------------


def _pairs(n: int = 2):
    return [(it.prompt, it.output) for it in dataset.v5_items(n, seed_start=100)]


def test_logit_effect_of_identical_models_is_none():
    from simonsca.forensics import logit_effect

    e = logit_effect(BASE, BASE, _pairs())
    assert e.mean_kl == pytest.approx(0.0, abs=1e-9)
    assert e.top1_agreement == 1.0 and e.delta_logprob == pytest.approx(0.0, abs=1e-9)
    assert codes(e.findings) == ["no-logit-effect"]


def test_logit_effect_of_a_real_adapter():
    from simonsca.forensics import logit_effect

    e = logit_effect(BASE, BASE, _pairs(), lora_b=LORA)
    assert e.mean_kl > 1e-3
    assert e.top1_agreement < 1.0
    assert e.n_positions > 50
    assert e.findings == ()


# --- explain_failure --------------------------------------------------------------------------


def test_explain_failure_collects_the_seed_story(tmp_path):
    small = tiny.write_tiny_lora(tmp_path / "early.gguf", BASE, relative=1e-4)
    merged = tmp_path / "merged.gguf"
    shutil.copy(BASE, merged)  # what a merge that rounds the update away produces
    log = tmp_path / "finetune.log"
    log.write_text(SEED_LOG)
    train = _v5_file(tmp_path, dataset.v5_items(30))
    found = explain_failure(
        base=BASE, merged=merged, adapter=small, train_file=train, train_log=log, n_ctx=256
    )
    got = codes(found)
    for code in (
        "merged-identical",
        "update-below-resolution",
        "answers-truncated",
        "training-stopped-early",
    ):
        assert code in got
    assert all(f.severity is Severity.ERROR for f in found[:4])
    other = tiny.write_tiny_model(tmp_path / "other.gguf", cfg=tiny.TinyConfig(n_embd=32, n_ff=64))
    assert codes(explain_failure(base=other, adapter=LORA)) == ["adapter-mismatch"]


def test_explain_failure_on_healthy_files_is_empty(tmp_path):
    from simonsca.merge import merge_adapter

    merged = merge_adapter(BASE, LORA, tmp_path / "merged.gguf")
    train = _v5_file(tmp_path, dataset.v5_items(10))
    assert (
        explain_failure(base=BASE, merged=merged, adapter=LORA, train_file=train, n_ctx=4096) == ()
    )


def test_answer_log_softmax_matches_full_logits() -> None:
    """The forensics read answer distributions through the one llama.cpp layer; they equal
    llama-cpp-python's own ``Llama`` evaluating every position (logits_all)."""
    import llama_cpp

    from simonsca.models.llamacpp import LlamaCppModel

    prompt, answer = _pairs(1)[0]
    with LlamaCppModel(BASE, n_ctx=512) as model:
        got = model.answer_log_softmax(prompt, answer)  # several decode calls of 256 tokens
        p, a, _ = model.answer_tokens(prompt, answer)
    full = llama_cpp.Llama(
        str(BASE), n_ctx=512, n_batch=256, n_ubatch=256, logits_all=True, seed=0, verbose=False
    )
    full.eval(p + a)
    rows = np.array(full.scores[len(p) - 1 : len(p) + len(a) - 1], dtype=np.float64)
    full.close()
    expected = rows - rows.max(-1, keepdims=True)
    expected -= np.log(np.exp(expected).sum(-1, keepdims=True))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_training_base_of_another_quantisation(tmp_path):
    from simonsca.forensics.doctor import quant_tag, training_base_findings

    assert quant_tag("/m/Meta-Llama-3-8B-Instruct-Q8_0.gguf") == "Q8_0"
    assert quant_tag("gemma-3-270m-q4_k_m.gguf") == "Q4_K_M"
    assert quant_tag("model.gguf") is None
    path = tmp_path / "finetune.log"
    path.write_text(SEED_LOG)
    log = parse_train_log(path)
    (f,) = training_base_findings(log, "/m/Meta-Llama-3-8B-Instruct-Q6_K.gguf")
    assert f.code == "trained-on-other-quantisation"
    assert f.numbers == {"trained_on": "Q8_0", "applied_to": "Q6_K"}
    assert training_base_findings(log, "/m/Meta-Llama-3-8B-Instruct-Q8_0.gguf") == ()
    assert "trained-on-other-quantisation" not in codes(explain_failure(base=BASE, train_log=path))


def test_merge_of_a_zero_adapter_is_the_base_converted(tmp_path):
    from simonsca.merge import merge_adapter

    zero = tiny.write_tiny_lora(tmp_path / "zero.gguf", BASE, zero=True)
    merged = merge_adapter(BASE, zero, tmp_path / "merged.gguf")
    d = diff_models(BASE, merged)
    assert codes(d.findings) == ["merged-equals-base-converted"]
    f = d.findings[0]
    assert f.numbers == {"converted": 14, "identical": 7, "conversions": {"Q8_0->F16": 14}}
    assert all(t.change_beyond_conversion == 0.0 for t in d.tensors if t.changed)
    healthy = diff_models(BASE, merge_adapter(BASE, LORA, tmp_path / "healthy.gguf"))
    assert all(t.change_beyond_conversion > 0.4 for t in healthy.tensors if t.changed)


def test_explain_failure_with_prompts_adds_the_logit_effect(tmp_path):
    zero = tiny.write_tiny_lora(tmp_path / "zero.gguf", BASE, zero=True)
    found = codes(explain_failure(base=BASE, adapter=zero, prompts_with_answers=_pairs(1)))
    assert found == ["adapter-never-trained", "no-logit-effect"]
    assert explain_failure(base=BASE, adapter=LORA, prompts_with_answers=_pairs(1)) == ()


def test_top1_agreement_counts_no_tie_as_a_choice() -> None:
    """Two models that tie everywhere do not "agree": a tie is not a choice."""
    import numpy as np

    from simonsca.forensics.logit import same_choices, top_choices

    flat = np.zeros((3, 5))
    assert list(top_choices(flat)) == [-1, -1, -1] and same_choices(flat, flat) == 0
    a = np.array([[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    b = np.array([[0.0, 5.0, 1.0], [1.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    assert list(top_choices(a)) == [1, -1, 0] and same_choices(a, b) == 1

"""Forensics on the real Gemma 3 270M Q4_K_M GGUF (253 MB): K-quant steps, adapters below the
quantisation step, the doctor on a full-size v5 file, merging. Marked ``model`` (slower)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType

from simonsca import dataset, gguf_file
from simonsca.adapters.gguf_lora import write_lora_gguf
from simonsca.forensics import diff_models, doctor, inspect_adapter, logit_effect
from simonsca.forensics.resolution import ESTIMATOR_GRID, grid_steps
from simonsca.merge import merge_adapter

pytestmark = pytest.mark.model

TARGETS = (
    "blk.0.ffn_down.weight",
    "blk.0.attn_output.weight",
    "blk.0.attn_q.weight",
    "blk.3.attn_v.weight",
)


@pytest.fixture(scope="session")
def gemma(gemma_path: Path) -> Path:
    """This module works on the file (tests/conftest.py's ``gemma`` is the loaded model)."""
    return gemma_path


def _lora(gemma: Path, path: Path, relative: float, seed: int = 0) -> Path:
    """A rank-4 LoRA on a Q6_K, a Q4_K and two Q5_0 tensors with ||dW|| = relative * ||W||."""
    by = {t.name: t for t in gguf_file.open_gguf(gemma).tensors}
    rng = np.random.default_rng(seed)
    pairs = {}
    for name in TARGETS:
        w = gguf_file.dequantize_tensor(by[name])
        a = (rng.standard_normal((4, w.shape[1])) / np.sqrt(w.shape[1])).astype(np.float32)
        b = rng.standard_normal((w.shape[0], 4)).astype(np.float32)
        b *= relative * np.linalg.norm(w) / np.linalg.norm(b @ a)
        pairs[name] = (a, b)
    return write_lora_gguf(path, "gemma3", pairs, alpha=4.0)


def test_k_quant_steps_are_read_from_block_scales(gemma):
    by = {t.name: t for t in gguf_file.open_gguf(gemma).tensors}
    q6 = by["blk.0.ffn_down.weight"]
    assert q6.tensor_type == GGMLQuantizationType.Q6_K
    w = gguf_file.dequantize_tensor(q6)
    step = grid_steps(gguf_file.raw_rows(q6), q6.tensor_type)
    q = w / np.where(step > 0, step, 1)
    assert np.abs(q - np.round(q)).max() < 1e-3  # Q6_K: w = step * integer
    q4 = by["blk.0.attn_output.weight"]
    assert q4.tensor_type == GGMLQuantizationType.Q4_K
    w = gguf_file.dequantize_tensor(q4).reshape(-1, 32)
    step = grid_steps(gguf_file.raw_rows(q4), q4.tensor_type).reshape(-1, 32)
    k = (w - w[:, :1]) / np.where(step > 0, step, 1)
    assert np.abs(k - np.round(k)).max() < 1e-2  # Q4_K: w = step * integer - min per sub-block


def test_small_gemma_adapter_is_below_q6_k_resolution(gemma, tmp_path):
    rep = inspect_adapter(gemma, _lora(gemma, tmp_path / "early.gguf", 1e-3))
    (f,) = rep.findings
    assert f.code == "update-below-resolution"
    assert f.title == "adapter update below Q4_K/Q5_0/Q6_K resolution in 4 of 4 tensors"
    by = {s.name: s for s in rep.tensors}
    assert by["blk.0.ffn_down.weight"].estimator == ESTIMATOR_GRID
    assert by["blk.0.ffn_down.weight"].retained == 0.0
    big = inspect_adapter(gemma, _lora(gemma, tmp_path / "big.gguf", 0.3))
    assert big.findings == ()
    assert all(s.retained > 0.5 for s in big.tensors)


def test_doctor_on_the_full_v5_file_with_gemma(gemma, tmp_path):
    path = tmp_path / "train_data.txt"
    assert dataset.write_items(dataset.v5_items(), path, "v5") == 19587
    t0 = time.perf_counter()
    rep = doctor(path, gemma, n_ctx=512)
    seconds = time.perf_counter() - t0
    assert seconds < 60
    assert rep.n_samples == 19587
    assert (
        rep.n_over_context == 6097
    )  # the seed's log: "found 6097 samples ... exceed context length of 512"
    assert rep.n_answer_cut == 6097
    codes = [f.code for f in rep.findings]
    assert codes == ["answers-truncated", "sample-start-plain-text"]
    assert not rep.marker_is_special


def test_gemma_merge_loads_and_only_targets_change(gemma, tmp_path):
    import llama_cpp

    merged = merge_adapter(
        gemma, _lora(gemma, tmp_path / "lora.gguf", 0.05), tmp_path / "merged.gguf"
    )
    d = diff_models(gemma, merged)
    assert d.findings == ()
    assert d.n_changed == 4
    assert all(abs((t.relative_change or 0) - 0.05) < 0.005 for t in d.tensors if t.changed)
    llm = llama_cpp.Llama(str(merged), n_ctx=64, n_threads=2, verbose=False)
    assert len(llm.tokenize(b"SimonsCA1")) > 1
    llm.eval(llm.tokenize(b"SimonsCA1"))
    llm.close()


def test_gemma_with_zero_adapter_has_no_logit_effect(gemma, tmp_path):
    by = {t.name: t for t in gguf_file.open_gguf(gemma).tensors}
    pairs = {}
    for name in TARGETS[:2]:
        n_out, n_in = gguf_file.tensor_shape(by[name])
        pairs[name] = (np.zeros((4, n_in), np.float32), np.zeros((n_out, 4), np.float32))
    zero = write_lora_gguf(tmp_path / "zero.gguf", "gemma3", pairs, alpha=4.0)
    item = next(it for it in dataset.v5_items(40, seed_start=200) if it.height * it.width < 40)
    e = logit_effect(gemma, gemma, [(item.prompt, item.output)], lora_b=zero)
    assert [f.code for f in e.findings] == ["no-logit-effect"]

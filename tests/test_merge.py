"""merge_adapter: base + LoRA -> one loadable GGUF, the same model llama.cpp runs as base + --lora."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from simonsca.errors import AdapterMismatch, ConfigError, OutputExistsError
from simonsca.forensics import diff_models, read_adapter
from simonsca.merge import UpdateErasedWarning, merge_adapter

ROOT = Path(__file__).resolve().parents[1]


from tests.tiny_models import BASE, LORA, tiny

PROMPTS = ["SimonsCA1\ndead='0' live='1'\n\n# Input\n0,1,1\n", "Hello, world"]


def _greedy(model: Path, prompt: str, lora: Path | None = None, n: int = 8) -> list[int]:
    import llama_cpp

    llm = llama_cpp.Llama(
        str(model),
        n_ctx=128,
        lora_path=str(lora) if lora else None,
        seed=0,
        n_threads=2,
        verbose=False,
    )
    try:
        toks = llm.tokenize(prompt.encode(), add_bos=True)
        out = []
        for tok in llm.generate(toks, top_k=1, temp=0.0, repeat_penalty=1.0):
            out.append(int(tok))
            if len(out) == n:
                break
        return out
    finally:
        llm.close()


def test_merged_model_equals_base_plus_lora_in_llama_cpp(tmp_path):
    merged = merge_adapter(BASE, LORA, tmp_path / "merged.gguf")
    changed = False
    for prompt in PROMPTS:
        with_lora = _greedy(BASE, prompt, lora=LORA)
        assert _greedy(merged, prompt) == with_lora
        changed |= _greedy(BASE, prompt) != with_lora
    assert changed, "the tiny LoRA should change at least one greedy completion"


def test_merge_copies_metadata_and_untouched_tensors(tmp_path):
    merged = merge_adapter(BASE, LORA, tmp_path / "merged.gguf")
    rb, rm = GGUFReader(BASE), GGUFReader(merged)
    for key, field in rb.fields.items():
        if not key.startswith("GGUF."):
            assert rm.fields[key].contents() == field.contents(), key
    assert [t.name for t in rm.tensors] == [t.name for t in rb.tensors]
    targets = set(read_adapter(LORA).targets)
    by_name = {t.name: t for t in rm.tensors}
    for t in rb.tensors:
        m = by_name[t.name]
        if t.name in targets:
            assert m.tensor_type.name == "F16"
        else:
            assert m.tensor_type == t.tensor_type
            assert np.array_equal(
                np.asarray(m.data).view(np.uint8), np.asarray(t.data).view(np.uint8)
            )


def test_merge_refuses_to_overwrite_and_writes_atomically(tmp_path):
    out = tmp_path / "merged.gguf"
    out.write_text("precious")
    with pytest.raises(OutputExistsError, match="merged.gguf"):
        merge_adapter(BASE, LORA, out)
    assert out.read_text() == "precious"
    merge_adapter(BASE, LORA, out, overwrite=True)
    assert out.read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.gguf"]  # no temp files left


def test_mismatched_adapter_raises_and_writes_nothing(tmp_path):
    other = tiny.write_tiny_model(
        tmp_path / "other-base.gguf", cfg=tiny.TinyConfig(n_embd=32, n_ff=64)
    )
    out = tmp_path / "merged.gguf"
    with pytest.raises(AdapterMismatch, match=r"tiny-lora\.gguf.*other-base\.gguf"):
        merge_adapter(other, LORA, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-base.gguf"]


def test_requantize_keeps_a_big_update(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        merged = merge_adapter(BASE, LORA, tmp_path / "q8.gguf", requantize="Q8_0")
    d = diff_models(BASE, merged)
    assert d.findings == ()
    assert all(t.type_merged == "Q8_0" for t in d.tensors if t.type_base == "Q8_0")
    assert d.n_changed == 14


def test_requantize_warns_when_it_erases_the_update(tmp_path):
    small = tiny.write_tiny_lora(tmp_path / "small.gguf", BASE, relative=1e-4)
    with pytest.warns(UpdateErasedWarning, match="14 of 14 tensors"):
        merged = merge_adapter(BASE, small, tmp_path / "q8.gguf", requantize="Q8_0")
    d = diff_models(BASE, merged)
    assert [f.code for f in d.findings] == ["merged-identical"]


def test_requantize_to_an_unsupported_type_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="Q6_K"):
        merge_adapter(BASE, LORA, tmp_path / "m.gguf", requantize="Q6_K")
    with pytest.raises(ConfigError, match="Q9_X"):
        merge_adapter(BASE, LORA, tmp_path / "m.gguf", requantize="Q9_X")


def test_token_embedding_lora_uses_llama_cpps_flipped_layout(tmp_path):
    from simonsca.adapters.gguf_lora import write_lora_gguf

    n_vocab, n_embd = tiny.tensor_shapes()["token_embd.weight"]
    rng = np.random.default_rng(5)
    a = rng.standard_normal((n_vocab, 4)).astype(np.float32)  # flipped: A (n_vocab, rank)
    b = rng.standard_normal((n_embd, 4)).astype(np.float32)  # B (n_embd, rank)
    lora = write_lora_gguf(
        tmp_path / "embd.gguf", "llama", {"token_embd.weight": (a, b)}, alpha=4.0
    )
    pair = read_adapter(lora).pairs[0]
    np.testing.assert_allclose(pair.delta(), a @ b.T, rtol=1e-5, atol=1e-6)
    merged = merge_adapter(BASE, lora, tmp_path / "merged.gguf")
    # Teacher-forced logits, not greedy text: this random update leaves near-ties (2.657 vs 2.655)
    # that F16 storage vs runtime LoRA can flip.
    from simonsca import dataset
    from simonsca.forensics import logit_effect

    pairs = [(it.prompt, it.output) for it in dataset.v5_items(2, seed_start=300)]
    same = logit_effect(merged, BASE, pairs, lora_b=lora)
    assert (
        same.mean_kl < 1e-3
    )  # top-1 agreement is no use on a random model: flat, near-tied logits
    assert logit_effect(BASE, BASE, pairs, lora_b=lora).mean_kl > 0.1

"""The from-scratch positive control (simonsca.finetune.scratch) and its shipped checkpoints.

(a) The torch model and the GGUF llama.cpp runs compute the same logits (needs torch: skips
without the ``train`` extra); the training ids are llama.cpp's own, one token per character.
(b) The shipped checkpoints load through simonsca's llama.cpp backend and answer a default-family
prompt in a form ``parse_answer`` reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simonsca.dataset import PRESETS, make_eval_item
from simonsca.finetune.scratch.gguf_llama import LlamaShape, char_vocab, write_llama_gguf

CONTROL = Path(__file__).resolve().parents[1] / "simonsca" / "controls" / "scratch-life"


@pytest.fixture(scope="module")
def torch_model_and_gguf(tmp_path_factory: pytest.TempPathFactory):
    torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from gguf import GGMLQuantizationType

    from simonsca.finetune.scratch.train import build_model

    torch.set_num_threads(1)
    shape = LlamaShape(n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=96, n_ctx=512)
    model = build_model(shape, len(char_vocab()[0]), seed=3)
    with torch.no_grad():  # weights far from the init, so a RoPE or layout slip shows
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p) * (p.std() if p.ndim == 2 else 0.2))
    path = tmp_path_factory.mktemp("scratch") / "tiny-f32.gguf"
    write_llama_gguf(path, model.gguf_weights(), shape, weight_type=GGMLQuantizationType.F32)
    return torch, model, path


def test_gguf_logits_match_the_torch_model(torch_model_and_gguf):
    torch, model, path = torch_model_and_gguf
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=512, logits_all=True, n_threads=1, verbose=False)
    item = make_eval_item(1_000_003, PRESETS["v5-small"])
    tokens = llm.tokenize((item.prompt + item.output).encode(), add_bos=True)
    llm.eval(tokens)
    theirs = np.asarray(llm.scores[: len(tokens)], dtype=np.float32)
    with torch.no_grad():
        ours = model(torch.tensor([tokens]))[0].numpy()
    assert np.abs(ours).max() > 0.5  # the comparison is not between two near-zero outputs
    assert np.abs(theirs - ours).max() < 1e-2
    assert (theirs.argmax(-1) == ours.argmax(-1)).mean() > 0.99


def test_training_ids_are_llama_cpp_ids_one_per_character(torch_model_and_gguf):
    _, _, path = torch_model_and_gguf
    from simonsca.finetune.data import IGNORE_INDEX, answer_text
    from simonsca.finetune.scratch.data import LlamaCppTokens

    tokens = LlamaCppTokens(path)
    vocab = char_vocab()[0]
    for seed in range(1_000_000, 1_000_040):
        item = make_eval_item(seed)
        ex = tokens.example(item)
        text = item.prompt + answer_text(item)
        assert ex.input_ids[0] == 1  # BOS
        assert len(ex.input_ids) == len(text) + 1
        pieces = [vocab[i] for i in ex.input_ids[1:]]
        expected = [
            "\u2581" if c == " " else c if 33 <= ord(c) < 127 else f"<0x{ord(c):02X}>" for c in text
        ]
        assert pieces == expected
        answer = [label for label in ex.labels if label != IGNORE_INDEX]
        assert len(answer) == len(answer_text(item))


def test_a_training_step_lowers_the_loss_on_its_batch(torch_model_and_gguf):
    torch, _, path = torch_model_and_gguf
    from simonsca.finetune.data import ItemFilter
    from simonsca.finetune.scratch.data import LlamaCppTokens, example_stream
    from simonsca.finetune.scratch.train import batch_loss, build_model

    model = build_model(LlamaShape(n_embd=32, n_layer=1, n_head=2, n_head_kv=2, n_ff=64), 354, 0)
    stream = example_stream(LlamaCppTokens(path), 100_000, ItemFilter(5, 8))
    batch = [next(stream)[1] for _ in range(4)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = batch_loss(model, batch)
    for _ in range(3):
        opt.zero_grad()
        batch_loss(model, batch).backward()
        opt.step()
    assert float(batch_loss(model, batch)) < float(first)


def _shipped() -> list[Path]:
    return sorted(CONTROL.glob("step-*.gguf"))


@pytest.mark.skipif(not _shipped(), reason=f"no shipped checkpoints under {CONTROL}")
def test_shipped_checkpoint_answers_a_default_family_prompt_parseably():
    from simonsca.codec import parse_answer
    from simonsca.models.llamacpp import LlamaCppModel

    final = _shipped()[-1]
    model = LlamaCppModel(final, n_ctx=512, n_threads=1)
    try:
        for seed in (1_000_000, 1_000_001):
            item = make_eval_item(seed)
            done = model.complete(item.prompt, max_tokens=model.max_tokens_for(item.output))
            assert done.finish_reason == "stop", done
            assert parse_answer(done.text, item).ok, done.text
    finally:
        model.close()


@pytest.mark.skipif(not _shipped(), reason=f"no shipped checkpoints under {CONTROL}")
def test_shipped_record_lists_every_shipped_checkpoint_with_its_hash():
    import hashlib
    import json

    record = json.loads((CONTROL / "training_record.json").read_text())
    by_file = {c["file"]: c for c in record["checkpoints"]}
    for path in _shipped():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == by_file[path.name]["sha256"]
    assert all(100_000 <= s < 900_000 for s in record["data"]["seeds"])


def test_a_checkpoint_reads_back_as_written(tmp_path):
    from gguf import GGMLQuantizationType

    from simonsca.finetune.scratch.gguf_llama import read_llama_gguf, tensor_shapes

    shape = LlamaShape(n_embd=32, n_layer=1, n_head=2, n_head_kv=1, n_ff=48, n_ctx=256)
    rng = np.random.default_rng(0)
    weights = {
        k: rng.standard_normal(s).astype(np.float32) for k, s in tensor_shapes(shape).items()
    }
    path = write_llama_gguf(
        tmp_path / "m.gguf", weights, shape, weight_type=GGMLQuantizationType.F16
    )
    got_shape, got = read_llama_gguf(path)
    assert got_shape == shape
    for name, arr in weights.items():
        want = arr if arr.ndim == 1 else arr.astype(np.float16).astype(np.float32)
        assert np.array_equal(got[name], want), name

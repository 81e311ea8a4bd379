"""The runner: answers in item order, fixed groups, the answer cache, baselines, the real model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from simonsca.cache import AnswerCache
from simonsca.dataset import make_item
from simonsca.errors import ConfigError
from simonsca.models import AllDeadBaseline, Completion, LlamaCppModel, ModelInfo, OracleBaseline
from simonsca.models.base import AnswerLikelihood, GenerationRequest, LikelihoodRequest
from simonsca.runner import answer_baseline, generate, teacher_force
from simonsca.tasks import Item, PromptMode

SMALL_SEEDS = (2, 140, 165, 176, 269)  # v5 items with sides of 5-6


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return [make_item(seed) for seed in SMALL_SEEDS]


class EchoModel:
    """A stand-in for the runner's mechanics (cache, groups, order): answers with the prompt's
    last input row; counts its calls. The real model is tested below and in test_models.py."""

    name = "echo"
    capabilities = frozenset({"generate", "teacher-forced"})

    def __init__(self, sha256: str = "0" * 64, batch: int = 1, interrupt_at: int | None = None):
        self.info = ModelInfo(name="echo", path="/fake/echo.gguf", sha256=sha256)
        self.batch_size = batch
        self.groups: list[list[str]] = []
        self.interrupt_at = interrupt_at
        self.done = 0

    @property
    def decoding(self) -> Mapping[str, object]:
        return {"temperature": 0.0}

    def complete_many(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, Completion]]:
        self.groups.append([r.prompt for r in requests])
        for k, r in enumerate(requests):
            self.done += 1
            if self.interrupt_at is not None and self.done == self.interrupt_at:
                raise KeyboardInterrupt
            row = r.prompt.split("# Output")[0].strip().splitlines()[-1]
            yield k, Completion(text=row, n_tokens=len(row), finish_reason="stop")

    def likelihood_many(
        self, requests: Sequence[LikelihoodRequest]
    ) -> Iterator[tuple[int, AnswerLikelihood]]:
        for k, r in enumerate(requests):
            n = len(r.answer)
            yield k, AnswerLikelihood(tuple(range(1, n + 1)), (-0.5,) * n, (0.0,) * n, -0.1, True)

    def count_tokens(self, text: str) -> int:
        return len(text)

    def chat_prompt(self, item_or_text: Item | str) -> str:
        text = item_or_text if isinstance(item_or_text, str) else item_or_text.user_message
        return f"<user>{text}</user>\n"

    def close(self) -> None:
        pass


def test_answers_follow_item_order(items: list[Item], tmp_path: Path) -> None:
    run = generate(EchoModel(), items, cache=None, progress=False, early_stop=False)
    assert [p.seed for p in run.predictions] == list(SMALL_SEEDS)
    assert run.predictions[0].text == items[0].input.splitlines()[-1]


def test_second_run_reads_the_cache(items: list[Item], tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "c.sqlite3")
    first = generate(EchoModel(), items, cache=cache, progress=False)
    model = EchoModel()
    second = generate(model, items, cache=cache, progress=False)
    assert not any(p.cached for p in first.predictions)
    assert all(p.cached for p in second.predictions) and model.groups == []
    assert second.texts == first.texts and second.items_per_second is None


def test_cache_key_covers_what_changes_outputs(items: list[Item], tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "c.sqlite3")
    generate(EchoModel(), items, cache=cache, progress=False)
    for changed in (
        {"model": EchoModel(sha256="1" * 64)},
        {"model": EchoModel(), "max_tokens": 7},
        {"model": EchoModel(), "prompt_mode": PromptMode.CHAT},
        {"model": EchoModel(), "early_stop": False},
        {"model": EchoModel(batch=2)},
    ):
        model = changed.pop("model")
        run = generate(model, items, cache=cache, progress=False, **changed)  # type: ignore[arg-type]
        assert not any(p.cached for p in run.predictions), changed


def test_groups_are_fixed_whatever_is_cached(items: list[Item], tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "c.sqlite3")
    generate(EchoModel(batch=2), items[:3], cache=cache, progress=False)
    model = EchoModel(batch=2)
    run = generate(model, items, cache=cache, progress=False)
    # items 0-1 and 2-3 form the same groups as before only for 0-1: 2 was decoded beside
    # nothing, so the group [2, 3] is decoded whole, and [4] alone
    assert [len(g) for g in model.groups] == [2, 1]
    assert [p.cached for p in run.predictions] == [True, True, False, False, False]


def test_an_interrupted_run_keeps_every_finished_answer(items: list[Item], tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "c.sqlite3")
    with pytest.raises(KeyboardInterrupt):
        generate(EchoModel(interrupt_at=3), items, cache=cache, progress=False)
    run = generate(EchoModel(), items, cache=cache, progress=False)
    assert [p.cached for p in run.predictions] == [True, True, False, False, False]


def test_teacher_forcing_is_cached_too(items: list[Item], tmp_path: Path) -> None:
    cache = AnswerCache(tmp_path / "c.sqlite3")
    first = teacher_force(EchoModel(), items, cache=cache, progress=False)
    second = teacher_force(EchoModel(), items, cache=cache, progress=False)
    assert first.n_cached == 0 and second.n_cached == len(items)
    assert second.likelihoods == first.likelihoods


def test_chat_mode_uses_the_models_template(items: list[Item]) -> None:
    run = generate(EchoModel(), items[:1], prompt_mode=PromptMode.CHAT, progress=False)
    assert run.predictions[0].prompt.startswith("<user>SimonsCA1")


def test_progress_bar_goes_to_stderr(items: list[Item], capsys: pytest.CaptureFixture[str]) -> None:
    generate(EchoModel(), items, progress=True, label="echo-bar")
    captured = capsys.readouterr()
    assert "echo-bar" in captured.err and captured.out == ""


def test_baselines_answer_from_the_item(items: list[Item]) -> None:
    run = answer_baseline(OracleBaseline(), items)
    assert run.texts == tuple(item.output for item in items)
    chat = answer_baseline(AllDeadBaseline(), items, prompt_mode=PromptMode.CHAT)
    assert chat.predictions[0].prompt == items[0].user_message


# --- the real model -------------------------------------------------------------------------


@pytest.mark.model
def test_gemma_run_is_cached_and_deterministic(
    gemma: LlamaCppModel, items: list[Item], tmp_path: Path
) -> None:
    cache = AnswerCache(tmp_path / "c.sqlite3")
    few = items[:3]
    first = generate(gemma, few, cache=cache, max_tokens=16, progress=False)
    second = generate(gemma, few, cache=cache, max_tokens=16, progress=False)
    uncached = generate(gemma, few, cache=None, max_tokens=16, progress=False)
    assert not any(p.cached for p in first.predictions)
    assert all(p.cached for p in second.predictions)
    assert second.texts == first.texts == uncached.texts
    assert [p.n_tokens for p in second.predictions] == [p.n_tokens for p in first.predictions]


@pytest.mark.model
def test_gemma_chat_mode_needs_a_template(gemma: LlamaCppModel, items: list[Item]) -> None:
    with pytest.raises(ConfigError, match="--chat-template"):
        generate(gemma, items[:1], prompt_mode=PromptMode.CHAT, progress=False)


@pytest.mark.model
def test_gemma_chat_mode_with_fallback(gemma_path: Path, items: list[Item]) -> None:
    with LlamaCppModel(gemma_path, n_ctx=1024, chat_template="gemma") as chat:
        run = generate(chat, items[:2], prompt_mode=PromptMode.CHAT, max_tokens=8, progress=False)
    assert run.info.chat_template_source == "fallback:gemma"
    assert all(p.prompt.startswith("<start_of_turn>user\nSimonsCA1\n") for p in run.predictions)
    assert all(0 < p.n_tokens <= 8 for p in run.predictions)

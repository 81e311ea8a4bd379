"""The runner: predictions in item order, the sqlite cache, baselines, and the real model."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from simonsca.dataset import make_item
from simonsca.errors import ConfigError
from simonsca.models import (
    AllDeadBaseline,
    Completion,
    LlamaCppModel,
    ModelInfo,
    OracleBaseline,
)
from simonsca.models.base import max_tokens_for
from simonsca.runner import CompletionCache, ModelRun, evaluate
from simonsca.tasks import Item, PromptMode

SMALL_SEEDS = (2, 140, 165, 176, 269)  # v5 items with sides of 5-6


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return [make_item(seed) for seed in SMALL_SEEDS]


class EchoModel:
    """A stand-in model: answers with the prompt's last input row; counts its calls."""

    name = "echo"

    def __init__(self, sha256: str | None = "0" * 64, fail_on_call: int | None = None) -> None:
        self.info = ModelInfo(name="echo", path="/fake/echo.gguf", sha256=sha256)
        self.calls: list[tuple[str, int, tuple[str, ...]]] = []
        self.fail_on_call = fail_on_call

    @property
    def decoding(self) -> Mapping[str, object]:
        return {"temperature": 0.0}

    def complete(self, prompt: str, *, max_tokens: int, stop: Sequence[str]) -> Completion:
        self.calls.append((prompt, max_tokens, tuple(stop)))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt
        row = prompt.split("# Output")[0].strip().splitlines()[-1]
        return Completion(text=row, n_tokens=len(row), finish_reason="stop")

    def score(self, prompt: str, answer: str) -> float:
        return 0.0

    def count_tokens(self, text: str) -> int:
        return len(text)

    def chat_prompt(self, item_or_text: Item | str) -> str:
        text = item_or_text if isinstance(item_or_text, str) else item_or_text.user_message
        return f"<user>{text}</user>\n"


# --- with a stand-in model (fast) -----------------------------------------------------------


def test_predictions_follow_item_order(items: list[Item], tmp_path: Path) -> None:
    model = EchoModel()
    run = evaluate(model, items, cache=tmp_path / "c.sqlite3", progress=False)
    assert isinstance(run, ModelRun)
    assert [p.seed for p in run.predictions] == list(SMALL_SEEDS)
    assert [p.prompt for p in run.predictions] == [item.prompt for item in items]
    assert all(p.prompt_mode is PromptMode.RAW and not p.cached for p in run.predictions)
    assert run.info == model.info and run.prompt_mode is PromptMode.RAW
    assert run.items_per_second > 0 and run.seconds >= 0
    # default budget: the expected answer's tokens x1.5 + 16; stop at the blank line
    assert [c[1] for c in model.calls] == [max_tokens_for(len(item.output)) for item in items]
    assert all(c[2] == ("\n\n",) for c in model.calls)


def test_second_run_reads_the_cache(items: list[Item], tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite3"
    first = evaluate(EchoModel(), items, cache=cache, progress=False)
    model = EchoModel()
    second = evaluate(model, items, cache=cache, progress=False)
    assert model.calls == []
    assert all(p.cached for p in second.predictions)
    assert second.items_per_second is None  # nothing was computed: no speed to report
    assert [p.text for p in second.predictions] == [p.text for p in first.predictions]


def test_cache_key_covers_what_changes_outputs(items: list[Item], tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite3"
    evaluate(EchoModel(), items, cache=cache, progress=False)
    for changed in (
        {"model": EchoModel(sha256="1" * 64)},
        {"max_tokens": 7},
        {"stop": ("\n",)},
        {"prompt_mode": PromptMode.CHAT},
    ):
        model = changed.pop("model", EchoModel())
        run = evaluate(model, items, cache=cache, progress=False, **changed)
        assert not any(p.cached for p in run.predictions), changed
        assert len(model.calls) == len(items)


def test_chat_mode_uses_the_models_template(items: list[Item]) -> None:
    run = evaluate(EchoModel(), items[:2], prompt_mode="chat", cache=False, progress=False)
    assert run.prompt_mode is PromptMode.CHAT
    assert run.predictions[0].prompt == f"<user>{items[0].user_message}</user>\n"


def test_interrupted_run_leaves_a_valid_cache(items: list[Item], tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite3"
    with pytest.raises(KeyboardInterrupt):
        evaluate(EchoModel(fail_on_call=3), items, cache=cache, progress=False)
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM completions").fetchone()[0] == 2
    model = EchoModel()
    run = evaluate(model, items, cache=cache, progress=False)
    assert [p.cached for p in run.predictions] == [True, True, False, False, False]
    assert len(model.calls) == 3


def test_model_without_a_file_hash_is_not_cached(items: list[Item], tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite3"
    evaluate(EchoModel(sha256=None), items, cache=cache, progress=False)
    model = EchoModel(sha256=None)
    run = evaluate(model, items, cache=cache, progress=False)
    assert not any(p.cached for p in run.predictions) and len(model.calls) == len(items)


def test_default_cache_lives_in_the_cache_dir(
    items: list[Item], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "home"))
    evaluate(EchoModel(), items[:1], progress=False)
    assert len(CompletionCache(tmp_path / "home" / "completions.sqlite3")) == 1


def test_progress_bar_goes_to_stderr(items: list[Item], capsys: pytest.CaptureFixture[str]) -> None:
    evaluate(EchoModel(), items, cache=False, progress=True)
    captured = capsys.readouterr()
    assert "5/5" in captured.err and "item" in captured.err and captured.out == ""


# --- baselines through the runner -----------------------------------------------------------


def test_oracle_through_the_runner(
    items: list[Item], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path))
    run = evaluate(OracleBaseline(), items, progress=False)
    assert [p.text for p in run.predictions] == [item.output for item in items]
    assert run.info.name == "baseline:oracle"
    assert all(not p.cached and p.finish_reason == "stop" for p in run.predictions)
    assert not (tmp_path / "completions.sqlite3").exists()  # baselines are never cached


def test_all_dead_through_the_runner_in_chat_mode(items: list[Item]) -> None:
    run = evaluate(AllDeadBaseline(), items, prompt_mode=PromptMode.CHAT, progress=False)
    assert [p.text for p in run.predictions] == [AllDeadBaseline().answer(item) for item in items]
    assert run.predictions[0].prompt == items[0].user_message


# --- the real model -------------------------------------------------------------------------


class _InterruptAfter:
    """Wraps a model; raises KeyboardInterrupt on the n-th completion (a Ctrl-C stand-in)."""

    def __init__(self, model: LlamaCppModel, n: int) -> None:
        self._model, self._n, self._calls = model, n, 0
        self.name, self.info = model.name, model.info

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    @property
    def decoding(self) -> Mapping[str, object]:
        return self._model.decoding

    def complete(self, prompt: str, *, max_tokens: int, stop: Sequence[str]) -> Completion:
        self._calls += 1
        if self._calls == self._n:
            raise KeyboardInterrupt
        return self._model.complete(prompt, max_tokens=max_tokens, stop=stop)

    def score(self, prompt: str, answer: str) -> float:
        return self._model.score(prompt, answer)

    def count_tokens(self, text: str) -> int:
        return self._model.count_tokens(text)

    def chat_prompt(self, item_or_text: Item | str) -> str:
        return self._model.chat_prompt(item_or_text)


@pytest.mark.model
def test_gemma_run_is_cached_and_deterministic(
    gemma: LlamaCppModel, items: list[Item], tmp_path: Path
) -> None:
    cache = tmp_path / "c.sqlite3"
    few = items[:3]
    first = evaluate(gemma, few, cache=cache, max_tokens=16, progress=False)
    second = evaluate(gemma, few, cache=cache, max_tokens=16, progress=False)
    uncached = evaluate(gemma, few, cache=False, max_tokens=16, progress=False)
    assert not any(p.cached for p in first.predictions)
    assert all(p.cached for p in second.predictions)
    texts = [p.text for p in first.predictions]
    assert [p.text for p in second.predictions] == texts == [p.text for p in uncached.predictions]
    assert [p.n_tokens for p in second.predictions] == [p.n_tokens for p in first.predictions]
    assert second.seconds < first.seconds


@pytest.mark.model
def test_gemma_interrupted_run_resumes_from_the_cache(
    gemma: LlamaCppModel, items: list[Item], tmp_path: Path
) -> None:
    cache = tmp_path / "c.sqlite3"
    few = items[:3]
    with pytest.raises(KeyboardInterrupt):
        evaluate(_InterruptAfter(gemma, 3), few, cache=cache, max_tokens=8, progress=False)
    run = evaluate(gemma, few, cache=cache, max_tokens=8, progress=False)
    assert [p.cached for p in run.predictions] == [True, True, False]


@pytest.mark.model
def test_gemma_chat_mode_needs_a_template(gemma: LlamaCppModel, items: list[Item]) -> None:
    with pytest.raises(ConfigError, match="--chat-template"):
        evaluate(gemma, items[:1], prompt_mode=PromptMode.CHAT, cache=False, progress=False)


@pytest.mark.model
def test_gemma_chat_mode_with_fallback(gemma_path: Path, items: list[Item]) -> None:
    with LlamaCppModel(gemma_path, n_ctx=1024, chat_template="gemma") as chat:
        run = evaluate(
            chat, items[:2], prompt_mode=PromptMode.CHAT, cache=False, max_tokens=8, progress=False
        )
    assert run.info.chat_template_source == "fallback:gemma"
    assert all(p.prompt.startswith("<start_of_turn>user\nSimonsCA1\n") for p in run.predictions)
    assert all(0 < p.n_tokens <= 8 for p in run.predictions)

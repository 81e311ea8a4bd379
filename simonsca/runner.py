"""Run a model (or a baseline) over items: greedy answers, and teacher-forced likelihoods.

Items go to the model in fixed groups of its ``batch_size`` (the first ``batch_size`` items, the
next, ...), whatever is already cached, so that an answer never depends on what an earlier run
happened to leave in the cache: a group with any answer missing is decoded whole. Each answer is
cached as soon as it exists (Ctrl-C keeps every finished one), under a key of everything that
can change it: the model's identity (file hashes, or what a server reports), the prompt mode
and text, the token budget, stop strings, the backend's decoding settings, the early-stop rule
and, for a group of several, the group's prompts. Progress (items done, rate, ETA) goes to
stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from simonsca import cache as answer_cache
from simonsca.cache import AnswerCache
from simonsca.models.base import (
    AnswerLikelihood,
    Baseline,
    Completion,
    FinishReason,
    GenerationRequest,
    LikelihoodRequest,
    Model,
    ModelInfo,
    max_tokens_for,
)
from simonsca.tasks import Item, PromptMode

STOP = ("\n\n",)  # the blank line that ends an answer in the training text
#: Version of the early-stop rule (part of the cache key: it changes the answer texts).
EARLY_STOP_RULE = "early-stop/1"
#: Version of the cached teacher-forced value (part of its key).
LIKELIHOOD_FORMAT = "likelihood/3"  # 3: margins signed (a tie is not the top choice)


@dataclass(frozen=True)
class Prediction:
    """A model's answer text for one item (not yet parsed or scored)."""

    seed: int
    prompt_mode: PromptMode
    prompt: str
    text: str
    n_tokens: int
    finish_reason: FinishReason
    cached: bool


@dataclass(frozen=True)
class GenerationRun:
    """All greedy answers of one model in one prompt mode, in item order."""

    info: ModelInfo
    prompt_mode: PromptMode
    predictions: tuple[Prediction, ...]
    seconds: float
    items_per_second: float | None  # over answers computed now; None when all came from cache

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(p.text for p in self.predictions)


@dataclass(frozen=True)
class ForcedRun:
    """Teacher-forced likelihoods of the expected answers for one model, in item order."""

    info: ModelInfo
    prompt_mode: PromptMode
    likelihoods: tuple[AnswerLikelihood, ...]
    seconds: float
    items_per_second: float | None
    n_cached: int


def prompt_for(model: Model, item: Item, mode: PromptMode) -> str:
    return item.prompt if mode is PromptMode.RAW else model.chat_prompt(item)


def _identity(model: Model) -> dict[str, Any]:
    info = model.info
    return {
        "model_sha256": info.sha256,
        "adapter_sha256": info.adapter_sha256,
        "served": dict(info.served) if info.sha256 is None else None,
        "decoding": dict(model.decoding),
    }


def _progress(total: int, name: str, enabled: bool, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=name,
        unit=unit,
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5,
    )


def _groups(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def generate(
    model: Model,
    items: Sequence[Item],
    *,
    prompt_mode: PromptMode | str = PromptMode.RAW,
    cache: AnswerCache | None = None,
    progress: bool = True,
    early_stop: bool = True,
    stop: Sequence[str] = STOP,
    max_tokens: int | None = None,
    label: str | None = None,
) -> GenerationRun:
    """Greedy answers to every item; ``max_tokens`` defaults per item to the expected answer's
    token count x1.5 + 16. With ``early_stop``, generation ends once the answer can no longer
    change (or be right): see :mod:`simonsca.early_stop`."""
    mode = PromptMode(prompt_mode)
    watch_for: Callable[[Item], Any] | None = None
    if early_stop:
        from simonsca.early_stop import watch_for
    prompts = [prompt_for(model, item, mode) for item in items]
    requests = [
        GenerationRequest(
            prompt=prompt,
            max_tokens=max_tokens or max_tokens_for(model.count_tokens(item.output)),
            stop=tuple(stop),
            watch=watch_for(item) if watch_for is not None else None,
        )
        for prompt, item in zip(prompts, items)
    ]
    base = _identity(model)
    base["early_stop"] = EARLY_STOP_RULE if early_stop else None
    size = max(1, int(model.batch_size))
    keys: list[str] = []
    for group in _groups(len(items), size):
        together = [prompts[i] for i in group] if size > 1 else None
        for i in group:
            keys.append(
                answer_cache.key(
                    {
                        **base,
                        "prompt_mode": mode.value,
                        "prompt": prompts[i],
                        "max_tokens": requests[i].max_tokens,
                        "stop": list(stop),
                        "group": together,
                    }
                )
            )
    results: list[Completion | None] = [None] * len(items)
    cached = [False] * len(items)
    if cache is not None:
        for i, k in enumerate(keys):
            hit = cache.get_completion(k)
            if hit is not None:
                results[i], cached[i] = hit, True
    started = time.perf_counter()
    fresh, fresh_seconds = 0, 0.0
    todo = [g for g in _groups(len(items), size) if not all(cached[i] for i in g)]
    bar = _progress(len(items), label or model.name, progress, "item")
    bar.update(len(items) - sum(len(g) for g in todo))
    try:
        for group in todo:
            t0 = time.perf_counter()
            for offset, completion in model.complete_many([requests[i] for i in group]):
                i = group[offset]
                results[i], cached[i] = completion, False
                if cache is not None:
                    cache.put_completion(keys[i], completion)
                bar.update(1)
            fresh += len(group)
            fresh_seconds += time.perf_counter() - t0
    finally:
        bar.close()
    predictions = []
    for i, item in enumerate(items):
        done = results[i]
        assert done is not None
        predictions.append(
            Prediction(
                item.seed, mode, prompts[i], done.text, done.n_tokens, done.finish_reason, cached[i]
            )
        )
    return GenerationRun(
        info=model.info,
        prompt_mode=mode,
        predictions=tuple(predictions),
        seconds=time.perf_counter() - started,
        items_per_second=(fresh / fresh_seconds) if fresh and fresh_seconds > 0 else None,
    )


def answer_baseline(
    baseline: Baseline, items: Sequence[Item], *, prompt_mode: PromptMode | str = PromptMode.RAW
) -> GenerationRun:
    """A baseline's answers (from the items themselves; never cached)."""
    mode = PromptMode(prompt_mode)
    predictions = tuple(
        Prediction(
            item.seed,
            mode,
            item.prompt if mode is PromptMode.RAW else item.user_message,
            baseline.answer(item),
            0,
            "stop",
            False,
        )
        for item in items
    )
    return GenerationRun(baseline.info, mode, predictions, 0.0, None)


def teacher_force(
    model: Model,
    items: Sequence[Item],
    *,
    prompt_mode: PromptMode | str = PromptMode.RAW,
    cache: AnswerCache | None = None,
    progress: bool = True,
    label: str | None = None,
) -> ForcedRun:
    """Teacher-forced likelihood of every item's expected answer (then the stop)."""
    mode = PromptMode(prompt_mode)
    prompts = [prompt_for(model, item, mode) for item in items]
    requests = [
        LikelihoodRequest(prompt=p, answer=item.output, stop=STOP[0])
        for p, item in zip(prompts, items)
    ]
    base = _identity(model)
    size = max(1, int(model.batch_size))
    keys: list[str] = []
    for group in _groups(len(items), size):
        together = [prompts[i] for i in group] if size > 1 else None
        for i in group:
            keys.append(
                answer_cache.key(
                    {
                        **base,
                        "teacher_forced": LIKELIHOOD_FORMAT,
                        "prompt_mode": mode.value,
                        "prompt": prompts[i],
                        "answer": items[i].output,
                        "stop": STOP[0],
                        "group": together,
                    }
                )
            )
    results: list[AnswerLikelihood | None] = [None] * len(items)
    if cache is not None:
        for i, k in enumerate(keys):
            results[i] = cache.get_likelihood(k)
    n_cached = sum(r is not None for r in results)
    started = time.perf_counter()
    fresh, fresh_seconds = 0, 0.0
    todo = [g for g in _groups(len(items), size) if any(results[i] is None for i in g)]
    bar = _progress(len(items), (label or model.name) + " (teacher-forced)", progress, "item")
    bar.update(len(items) - sum(len(g) for g in todo))
    try:
        for group in todo:
            t0 = time.perf_counter()
            for offset, value in model.likelihood_many([requests[i] for i in group]):
                i = group[offset]
                results[i] = value
                if cache is not None:
                    cache.put_likelihood(keys[i], value)
                bar.update(1)
            fresh += len(group)
            fresh_seconds += time.perf_counter() - t0
    finally:
        bar.close()
    done = tuple(r for r in results if r is not None)
    assert len(done) == len(items)
    return ForcedRun(
        info=model.info,
        prompt_mode=mode,
        likelihoods=done,
        seconds=time.perf_counter() - started,
        items_per_second=(fresh / fresh_seconds) if fresh and fresh_seconds > 0 else None,
        n_cached=n_cached,
    )

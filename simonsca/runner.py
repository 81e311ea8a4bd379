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
from typing import Any, Generic, TypeVar

from simonsca import cache as answer_cache
from simonsca.cache import AnswerCache
from simonsca.models.base import (
    AnswerLikelihood,
    Baseline,
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
class AnswerRun:
    """What every run of one model over items says besides its answers: who, how, how fast."""

    info: ModelInfo
    prompt_mode: PromptMode
    seconds: float
    items_per_second: float | None  # over answers computed now; None when all came from cache


@dataclass(frozen=True)
class GenerationRun(AnswerRun):
    """All greedy answers of one model in one prompt mode, in item order."""

    predictions: tuple[Prediction, ...]

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(p.text for p in self.predictions)


@dataclass(frozen=True)
class ForcedRun(AnswerRun):
    """Teacher-forced likelihoods of the expected answers for one model, in item order."""

    likelihoods: tuple[AnswerLikelihood, ...]
    n_cached: int


#: Teacher-forced scores of a group of requests, in any order: ``(index, likelihood)``.
LikelihoodScorer = Callable[[Sequence[LikelihoodRequest]], Iterator[tuple[int, AnswerLikelihood]]]


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


Request = TypeVar("Request")
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class _Strategy(Generic[Request, Answer]):
    """How one kind of answer is asked for and cached: greedy generation or teacher forcing.

    ``request`` builds an item's request from its prompt; ``key`` the fields (beside the model's
    identity, the prompt mode, the prompt and the group) that can change its answer; ``run`` asks
    the model for a group's answers; ``get``/``put`` read and write the cache."""

    request: Callable[[str, Item], Request]
    key: Callable[[Request, Item], dict[str, Any]]
    run: Callable[[Sequence[Request]], Iterator[tuple[int, Answer]]]
    get: Callable[[AnswerCache, str], Answer | None]
    put: Callable[[AnswerCache, str, Answer], None]
    bar: str  # the progress bar's name after the model's


@dataclass(frozen=True)
class _Answers(Generic[Answer]):
    prompts: tuple[str, ...]
    answers: tuple[Answer, ...]
    cached: tuple[bool, ...]  # the answer came from the cache (a group's re-answered ones did not)
    hits: int  # answers found in the cache, re-answered or not
    seconds: float
    items_per_second: float | None  # over answers computed now; None when all came from cache


def _answer_all(
    model: Model,
    items: Sequence[Item],
    mode: PromptMode,
    strategy: _Strategy[Request, Answer],
    identity: dict[str, Any],
    *,
    cache: AnswerCache | None,
    progress: bool,
    label: str | None,
    group_size: int | None = None,
) -> _Answers[Answer]:
    """The one answering loop: requests, a cache key per item (per group), cache reads, the
    groups still to answer (each answer cached as it arrives), progress and timing."""
    prompts = [prompt_for(model, item, mode) for item in items]
    requests = [strategy.request(prompt, item) for prompt, item in zip(prompts, items)]
    size = max(1, int(group_size or model.batch_size))
    keys: list[str] = []
    for group in _groups(len(items), size):
        together = [prompts[i] for i in group] if size > 1 else None
        for i in group:
            fields = {**identity, **strategy.key(requests[i], items[i])}
            fields.update(prompt_mode=mode.value, prompt=prompts[i], group=together)
            keys.append(answer_cache.key(fields))
    results: list[Answer | None] = [None] * len(items)
    cached = [False] * len(items)
    if cache is not None:
        for i, k in enumerate(keys):
            hit = strategy.get(cache, k)
            if hit is not None:
                results[i], cached[i] = hit, True
    hits = sum(cached)
    started = time.perf_counter()
    fresh, fresh_seconds = 0, 0.0
    todo = [g for g in _groups(len(items), size) if not all(cached[i] for i in g)]
    bar = _progress(len(items), (label or model.name) + strategy.bar, progress, "item")
    bar.update(len(items) - sum(len(g) for g in todo))
    try:
        for group in todo:
            t0 = time.perf_counter()
            for offset, answer in strategy.run([requests[i] for i in group]):
                i = group[offset]
                results[i], cached[i] = answer, False
                if cache is not None:
                    strategy.put(cache, keys[i], answer)
                bar.update(1)
            fresh += len(group)
            fresh_seconds += time.perf_counter() - t0
    finally:
        bar.close()
    answers = tuple(r for r in results if r is not None)
    assert len(answers) == len(items)
    return _Answers(
        prompts=tuple(prompts),
        answers=answers,
        cached=tuple(cached),
        hits=hits,
        seconds=time.perf_counter() - started,
        items_per_second=(fresh / fresh_seconds) if fresh and fresh_seconds > 0 else None,
    )


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

    def request(prompt: str, item: Item) -> GenerationRequest:
        return GenerationRequest(
            prompt=prompt,
            max_tokens=max_tokens or max_tokens_for(model.count_tokens(item.output)),
            stop=tuple(stop),
            watch=watch_for(item) if watch_for is not None else None,
        )

    def key(request: GenerationRequest, item: Item) -> dict[str, Any]:
        return {"max_tokens": request.max_tokens, "stop": list(stop)}

    identity = _identity(model)
    identity["early_stop"] = EARLY_STOP_RULE if early_stop else None
    greedy = _Strategy(
        request,
        key,
        model.complete_many,
        AnswerCache.get_completion,
        AnswerCache.put_completion,
        "",
    )
    done = _answer_all(
        model, items, mode, greedy, identity, cache=cache, progress=progress, label=label
    )
    predictions = tuple(
        Prediction(item.seed, mode, prompt, answer.text, answer.n_tokens, answer.finish_reason, hit)
        for item, prompt, answer, hit in zip(items, done.prompts, done.answers, done.cached)
    )
    return GenerationRun(
        info=model.info,
        prompt_mode=mode,
        predictions=predictions,
        seconds=done.seconds,
        items_per_second=done.items_per_second,
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
    return GenerationRun(
        info=baseline.info,
        prompt_mode=mode,
        predictions=predictions,
        seconds=0.0,
        items_per_second=None,
    )


def teacher_force(
    model: Model,
    items: Sequence[Item],
    *,
    prompt_mode: PromptMode | str = PromptMode.RAW,
    cache: AnswerCache | None = None,
    progress: bool = True,
    label: str | None = None,
    null: tuple[str, LikelihoodScorer] | None = None,
    group_size: int | None = None,
) -> ForcedRun:
    """Teacher-forced likelihood of every item's expected answer (then the stop).

    ``null``: (its name, how it scores) -- the same answers scored another way that means
    nothing (the noise floor's nulls, :mod:`simonsca.noise`), cached under that name beside the
    model's own scores. ``group_size``: items per call of the scorer (default the model's
    ``batch_size``)."""
    mode = PromptMode(prompt_mode)

    def request(prompt: str, item: Item) -> LikelihoodRequest:
        return LikelihoodRequest(prompt=prompt, answer=item.output, stop=STOP[0])

    def key(request: LikelihoodRequest, item: Item) -> dict[str, Any]:
        fields = {"teacher_forced": LIKELIHOOD_FORMAT, "answer": item.output, "stop": STOP[0]}
        return fields if null is None else {**fields, "noise": null[0]}

    forcing = _Strategy(
        request,
        key,
        model.likelihood_many if null is None else null[1],
        AnswerCache.get_likelihood,
        AnswerCache.put_likelihood,
        " (teacher-forced)",
    )
    done = _answer_all(
        model,
        items,
        mode,
        forcing,
        _identity(model),
        cache=cache,
        progress=progress,
        label=label,
        group_size=group_size,
    )
    return ForcedRun(
        info=model.info,
        prompt_mode=mode,
        likelihoods=done.answers,
        seconds=done.seconds,
        items_per_second=done.items_per_second,
        n_cached=done.hits,
    )

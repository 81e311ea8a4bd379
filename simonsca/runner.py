"""Evaluate a model (or a baseline) on items: prompts in, answer texts out, cached on disk.

The cache is one sqlite3 file. A completion's key is the sha256 of everything that can change
it: the model and adapter file hashes, the prompt mode, the exact prompt text, ``max_tokens``,
the stop strings and the model's decoding settings (n_ctx, seed, llama-cpp-python version, …).
Each answer is committed as soon as it exists, so Ctrl-C loses at most the item in progress and
a re-run after changing only thresholds reads everything back in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from simonsca.models.base import (
    Baseline,
    Completion,
    FinishReason,
    Model,
    ModelInfo,
    max_tokens_for,
)
from simonsca.tasks import Item, PromptMode

STOP = ("\n\n",)  # the blank line that ends an answer in the training text


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
class ModelRun:
    """All predictions of one model in one prompt mode, in item order."""

    info: ModelInfo
    prompt_mode: PromptMode
    predictions: tuple[Prediction, ...]
    seconds: float
    items_per_second: float | None  # over answers computed now; None when all came from cache


class CompletionCache:
    """Completions on disk in one sqlite3 file, keyed by :meth:`key`; committed per item."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS completions ("
            "key TEXT PRIMARY KEY, text TEXT NOT NULL, n_tokens INTEGER NOT NULL, "
            "finish_reason TEXT NOT NULL, created REAL NOT NULL)"
        )
        self._db.commit()

    @staticmethod
    def key(
        model: Model, prompt_mode: PromptMode, prompt: str, max_tokens: int, stop: Sequence[str]
    ) -> str | None:
        """The cache key, or ``None`` when the model has no file hash to key on."""
        if model.info.sha256 is None:
            return None
        fields = {
            "model_sha256": model.info.sha256,
            "adapter_sha256": model.info.adapter_sha256,
            "prompt_mode": prompt_mode.value,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "stop": list(stop),
            "decoding": dict(model.decoding),
        }
        blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Completion | None:
        row = self._db.execute(
            "SELECT text, n_tokens, finish_reason FROM completions WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return Completion(text=row[0], n_tokens=int(row[1]), finish_reason=row[2])

    def put(self, key: str, completion: Completion) -> None:
        with self._db:  # one transaction per item: an interrupt never leaves half a row
            self._db.execute(
                "INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?)",
                (key, completion.text, completion.n_tokens, completion.finish_reason, time.time()),
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def default_cache_path() -> Path:
    from simonsca.default_models import cache_dir

    return cache_dir() / "completions.sqlite3"


def evaluate(
    model: Model | Baseline,
    items: Iterable[Item],
    *,
    prompt_mode: PromptMode | str = PromptMode.RAW,
    cache: CompletionCache | str | os.PathLike[str] | bool = True,
    progress: bool = True,
    stop: Sequence[str] = STOP,
    max_tokens: int | None = None,
) -> ModelRun:
    """Answer every item with ``model`` and return the answer texts in item order.

    ``prompt_mode`` chooses the raw training-format prompt or the model's chat template.
    ``cache``: ``True`` for the default file (``cache_dir()/completions.sqlite3``), a path for
    another file, an open :class:`CompletionCache`, or ``False`` for none. ``max_tokens``
    defaults per item to the expected answer's token count x1.5 + 16. Baselines answer from
    the item; they are never cached.
    """
    mode = PromptMode(prompt_mode)
    items = list(items)
    is_baseline = isinstance(model, Baseline) and not isinstance(model, Model)
    store: CompletionCache | None = None
    owned = False
    if not is_baseline and cache is not False:
        if isinstance(cache, CompletionCache):
            store = cache
        else:
            store = CompletionCache(default_cache_path() if cache is True else cache)
            owned = True

    from tqdm import tqdm

    bar = tqdm(
        total=len(items),
        desc=model.name,
        unit="item",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    predictions: list[Prediction] = []
    started = time.perf_counter()
    fresh, fresh_seconds = 0, 0.0
    try:
        for item in items:
            if is_baseline:
                prompt = item.prompt if mode is PromptMode.RAW else item.user_message
                text = model.answer(item)  # type: ignore[union-attr]
                predictions.append(Prediction(item.seed, mode, prompt, text, 0, "stop", False))
            else:
                t0 = time.perf_counter()
                prediction = _predict(model, item, mode, store, stop, max_tokens)  # type: ignore[arg-type]
                predictions.append(prediction)
                if not prediction.cached:
                    fresh += 1
                    fresh_seconds += time.perf_counter() - t0
            bar.update(1)
    finally:
        bar.close()
        if owned and store is not None:
            store.close()
    seconds = time.perf_counter() - started
    return ModelRun(
        info=model.info,
        prompt_mode=mode,
        predictions=tuple(predictions),
        seconds=seconds,
        items_per_second=(fresh / fresh_seconds) if fresh and fresh_seconds > 0 else None,
    )


def _predict(
    model: Model,
    item: Item,
    mode: PromptMode,
    store: CompletionCache | None,
    stop: Sequence[str],
    max_tokens: int | None,
) -> Prediction:
    prompt = item.prompt if mode is PromptMode.RAW else model.chat_prompt(item)
    budget = (
        max_tokens if max_tokens is not None else max_tokens_for(model.count_tokens(item.output))
    )
    key = CompletionCache.key(model, mode, prompt, budget, stop) if store is not None else None
    completion = store.get(key) if store is not None and key is not None else None
    cached = completion is not None
    if completion is None:
        completion = model.complete(prompt, max_tokens=budget, stop=stop)
        if store is not None and key is not None:
            store.put(key, completion)
    return Prediction(
        seed=item.seed,
        prompt_mode=mode,
        prompt=prompt,
        text=completion.text,
        n_tokens=completion.n_tokens,
        finish_reason=completion.finish_reason,
        cached=cached,
    )

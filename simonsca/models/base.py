"""The small protocol every backend implements, and what flows out of it.

A :class:`Model` turns prompt text into answer text (:meth:`Model.complete`) and can say how
likely a given answer is (:meth:`Model.score`, teacher-forced). A :class:`Baseline` answers from
the :class:`~simonsca.tasks.Item` itself, without a prompt; the runner treats both alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from simonsca.tasks import Item

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Completion:
    """One generated answer.

    ``finish_reason`` is ``"stop"`` when a stop string or end-of-generation token ended it and
    ``"length"`` when it ran out of ``max_tokens``.
    """

    text: str
    n_tokens: int
    finish_reason: FinishReason


@dataclass(frozen=True)
class ModelInfo:
    """What identifies a model run; the hashes are the cache keys.

    ``chat_template_source`` is ``"gguf"`` (the model's own template), ``"fallback:<name>"`` (a
    named template the user chose because the GGUF has none) or ``None`` (no chat mode).
    """

    name: str
    path: str | None
    sha256: str | None
    adapter_path: str | None = None
    adapter_sha256: str | None = None
    chat_template_source: str | None = None


@runtime_checkable
class Model(Protocol):
    """A language model behind one small interface.

    Beyond ``complete`` and ``score``, the runner needs three things: ``decoding`` (the settings
    that change outputs, part of the cache key), ``count_tokens`` (to size ``max_tokens`` from
    the expected answer) and ``chat_prompt`` (to put a user message in the chat template).
    """

    name: str
    info: ModelInfo

    @property
    def decoding(self) -> Mapping[str, object]: ...

    def complete(self, prompt: str, *, max_tokens: int, stop: Sequence[str]) -> Completion: ...

    def score(self, prompt: str, answer: str) -> float: ...

    def count_tokens(self, text: str) -> int: ...

    def chat_prompt(self, item_or_text: Item | str) -> str: ...


def max_tokens_for(n_answer_tokens: int) -> int:
    """Generation budget for an expected answer of ``n_answer_tokens`` tokens: x1.5 + 16, so
    a model that loops stops soon after the point where a right answer would have ended."""
    return math.ceil(n_answer_tokens * 1.5) + 16


@runtime_checkable
class Baseline(Protocol):
    """A reference predictor that answers from the item (no prompt, no tokens)."""

    name: str

    @property
    def info(self) -> ModelInfo: ...

    def answer(self, item: Item) -> str: ...


@dataclass(frozen=True)
class ModelSpec:
    """One side of the comparison: a GGUF file, optionally with a LoRA adapter applied at load."""

    path: Path
    lora: Path | None = None
    origin: str = "given"  # "given" or a sentence saying where a built-in model came from
    # The LoRA adapter that was merged into ``path``, when known: the suite then checks that
    # the merged file answers like base + adapter (a merge that lost the update shows here).
    built_from: Path | None = None

    @property
    def label(self) -> str:
        name = self.path.name + (f" + {self.lora.name}" if self.lora else "")
        return name if self.origin == "given" else f"{name} ({self.origin})"

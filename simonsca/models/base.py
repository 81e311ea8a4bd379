"""The small protocol every backend implements, and what flows in and out of it.

A :class:`Model` turns prompts into answer texts (:meth:`Model.complete_many`, greedy) and, where
the backend can, says how likely a given answer is (:meth:`Model.likelihood_many`, teacher
forced). A :class:`Baseline` answers from the :class:`~simonsca.tasks.Item` itself, without a
prompt; the runner treats both alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from simonsca.tasks import Item

#: ``stop``: a stop string or end-of-generation token ended the answer; ``length``: it ran out of
#: ``max_tokens``; ``cut``: simonsca stopped it early because the answer could no longer change
#: its score for the better (see :mod:`simonsca.early_stop`).
FinishReason = Literal["stop", "length", "cut"]

#: Scoring modes a backend can offer.
GENERATE = "generate"
TEACHER_FORCED = "teacher-forced"


@dataclass(frozen=True)
class Completion:
    """One generated answer."""

    text: str
    n_tokens: int
    finish_reason: FinishReason


#: Called with the answer text so far at a line end; a reason (not None) stops the answer there.
Watch = Callable[[str], "str | None"]


@dataclass(frozen=True)
class GenerationRequest:
    """One greedy generation: the prompt, a token budget, stop strings, and an optional watch.

    ``watch`` is called with the text generated so far each time it ends a line; a non-``None``
    return value (the reason) stops generation there with ``finish_reason="cut"``.
    """

    prompt: str
    max_tokens: int
    stop: tuple[str, ...] = ("\n\n",)
    watch: Watch | None = field(default=None, compare=False)


def watch_cut(text: str, watch: Watch, start: int = 0) -> tuple[int, str] | None:
    """Where ``watch`` stops ``text``: the end of the first line ending at or after ``start`` at
    which it fires (characters to keep) and its reason; None: it never fires.

    The one definition of an early stop, for every backend: the in-process one calls it as
    tokens arrive (``start`` = where the last call's text ended), a served one on the streamed
    or returned text, so the same answer text is cut at the same place whichever produced it."""
    position = start
    while (newline := text.find("\n", position)) >= 0:
        reason = watch(text[: newline + 1])
        if reason is not None:
            return newline + 1, reason
        position = newline + 1
    return None


class CompletesOne:
    """:meth:`complete` (one prompt) for every backend, written once over its ``complete_many``."""

    def complete_many(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, Completion]]:
        raise NotImplementedError

    def complete(
        self, prompt: str, *, max_tokens: int, stop: Sequence[str] = ("\n\n",)
    ) -> Completion:
        """Greedy completion of ``prompt`` (raw text; ``chat_prompt`` puts a message in chat form)."""
        request = GenerationRequest(prompt=prompt, max_tokens=max_tokens, stop=tuple(stop))
        return next(iter(self.complete_many([request])))[1]


@dataclass(frozen=True)
class LikelihoodRequest:
    """Teacher forcing: how likely is ``answer`` (then ``stop``) after ``prompt``?"""

    prompt: str
    answer: str
    stop: str = "\n\n"


def is_top_choice(margin: float) -> bool:
    """Whether a token with this margin (the best other token's log-prob minus its own) is the
    model's choice: strictly more likely than every other token.

    A tie is not a choice: greedy decoding breaks it by token id (llama.cpp takes the lowest),
    which says nothing about the model -- a model whose logits are all equal would otherwise
    "choose" every token of every expected answer. Tied tokens score as wrong, not 1/k: the
    expected token is not what the model writes (it writes the lowest id), and partial credit
    would still pay a model that has no preference at all."""
    return margin < 0.0


@dataclass(frozen=True)
class AnswerLikelihood:
    """A model's teacher-forced view of one expected answer, token by token.

    ``logprobs[k]`` is the natural-log probability of answer token ``k`` given the prompt and the
    right tokens before it; ``margins[k]`` the best *other* token's log-prob minus its own: above
    0, how far below the top it lies; 0, it ties for the top; below 0, it is the model's own
    choice by that much (see :func:`is_top_choice`). ``token_ends[k]`` is the byte offset in the
    answer's UTF-8 text where token ``k`` ends, to find the token that writes a given cell. ``stop_greedy``: after the answer,
    greedy decoding would stop (write the blank line, or end the generation). ``boundary`` says
    how the prompt/answer token boundary was cut (see ``LlamaCppModel.answer_tokens``).
    """

    token_ends: tuple[int, ...]
    logprobs: tuple[float, ...]
    margins: tuple[float, ...]  # best other log-prob minus the token's (< 0: the model's choice)
    stop_logprob: float
    stop_greedy: bool
    boundary: str = "joint"

    @property
    def greedy(self) -> tuple[bool, ...]:
        """Per answer token: it is the model's choice at its position (a tie is not)."""
        return tuple(is_top_choice(m) for m in self.margins)

    @property
    def n_tokens(self) -> int:
        return len(self.logprobs)

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood, nats per answer token (the stop not counted)."""
        return -sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0

    @property
    def greedy_exact(self) -> bool:
        """Greedy decoding would reproduce the whole answer and stop right after it."""
        return all(self.greedy) and self.stop_greedy


@dataclass(frozen=True)
class ModelInfo:
    """What identifies a model run; the hashes (or the server's own report) key the cache.

    ``chat_template_source`` is ``"gguf"`` (the model's own template), ``"fallback:<name>"`` (a
    named template the user chose because the GGUF has none), ``"server"`` (the server applies
    its own) or ``None`` (no chat mode). ``served`` holds what a server reports about the model
    (kind, model id, context, version, adapters); empty for a local file. ``caveats`` are
    carried into the report's warnings (not part of the cache key).
    """

    name: str
    path: str | None
    sha256: str | None
    adapter_path: str | None = None
    adapter_sha256: str | None = None
    chat_template_source: str | None = None
    context_length: int | None = None
    backend: str = "llama-cpp-python"
    served: Mapping[str, object] = field(default_factory=dict)
    caveats: tuple[str, ...] = ()  # what a reader of results from this model should know


@runtime_checkable
class Model(Protocol):
    """A language model behind one small interface.

    ``capabilities`` names the scoring modes it supports (``generate``, ``teacher-forced``);
    ``decoding`` the settings that change outputs (part of the cache key); ``batch_size`` how many
    requests it decodes together (the runner groups items by it, so that results do not depend
    on which answers were already cached); ``count_tokens`` sizes ``max_tokens`` from the
    expected answer; ``chat_prompt`` puts a user message in the chat template.
    """

    name: str
    info: ModelInfo
    capabilities: frozenset[str]

    @property
    def decoding(self) -> Mapping[str, object]: ...

    @property
    def batch_size(self) -> int: ...

    def complete_many(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, Completion]]: ...

    def likelihood_many(
        self, requests: Sequence[LikelihoodRequest]
    ) -> Iterator[tuple[int, AnswerLikelihood]]: ...

    def count_tokens(self, text: str) -> int: ...

    def chat_prompt(self, item_or_text: Item | str) -> str: ...

    def close(self) -> None: ...


def max_tokens_for(n_answer_tokens: int) -> int:
    """Generation budget for an expected answer of ``n_answer_tokens`` tokens: x1.5 + 16, so
    a model that loops stops soon after the point where a right answer would have ended."""
    return math.ceil(n_answer_tokens * 1.5) + 16


@runtime_checkable
class AdapterSwapping(Protocol):
    """A backend that can replace the adapter on its loaded model (llama.cpp in process): a
    checkpoint sweep then loads its base once. ``None`` removes the adapter."""

    def use_adapter(self, lora_path: Path | None) -> None: ...


@runtime_checkable
class Baseline(Protocol):
    """A reference predictor that answers from the item (no prompt, no tokens)."""

    name: str

    @property
    def info(self) -> ModelInfo: ...

    def answer(self, item: Item) -> str: ...


@dataclass(frozen=True)
class ModelSpec:
    """One side of the comparison: a GGUF file (or a served model's URL), optionally with a LoRA
    adapter applied at load."""

    path: Path | str
    lora: Path | None = None
    origin: str = "given"  # "given" or a sentence saying where a built-in model came from
    # The LoRA adapter that was merged into ``path``, when known: the suite then checks that
    # the merged file answers like base + adapter (a merge that lost the update shows here).
    built_from: Path | None = None

    @property
    def is_url(self) -> bool:
        return isinstance(self.path, str) and self.path.startswith(("http://", "https://"))

    @property
    def name(self) -> str:
        return self.path if isinstance(self.path, str) else self.path.name

    @property
    def label(self) -> str:
        name = self.name + (f" + {self.lora.name}" if self.lora else "")
        return name if self.origin == "given" else f"{name} ({self.origin})"

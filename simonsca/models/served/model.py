""":class:`ServedModel`: the :class:`~simonsca.models.base.Model` protocol over a server kind's
dialect, with requests running ``concurrency`` at a time."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Self, TypeVar

from simonsca.errors import ConfigError, ContextTooSmall
from simonsca.models.base import (
    AnswerLikelihood,
    CompletesOne,
    Completion,
    GenerationRequest,
    LikelihoodRequest,
    ModelInfo,
    max_tokens_for,
    watch_cut,
)
from simonsca.models.chat_template import check_chat_template, render_fallback
from simonsca.models.served.client import HttpClient, ScoringUnsupported
from simonsca.models.served.facts import ServerFacts
from simonsca.models.served.kinds import DIALECTS
from simonsca.models.served.support import SUPPORT
from simonsca.tasks import Item

#: Prefix of a chat-mode prompt for a server that applies its own chat template: the rest is the
#: user message, sent to the server's chat endpoint (see :meth:`ServedModel.chat_prompt`).
SERVER_CHAT_PREFIX = "<<simonsca: user message for the server's chat template>>\n"

T = TypeVar("T")
R = TypeVar("R")


class ServedModel(CompletesOne):
    """A model served over HTTP, behind the :class:`~simonsca.models.base.Model` protocol.

    Requests run in ``concurrency`` threads (at most that many in flight); results are yielded
    as each finishes. Make one with :func:`simonsca.models.served.open_served_model`, which
    detects the server kind and fills ``facts``.

    Chat mode: with ``chat_template`` (a fallback name) the prompt is rendered here, exactly as
    the in-process backend does. Otherwise llama-server renders it with ``/apply-template`` (a
    raw prompt again), and the other servers get the user message on their chat endpoint: then
    :meth:`chat_prompt` returns :data:`SERVER_CHAT_PREFIX` + the message, which
    :meth:`complete_many` recognises (teacher forcing refuses such prompts).
    """

    def __init__(
        self,
        http: HttpClient,
        facts: ServerFacts,
        *,
        url: str,
        concurrency: int,
        chat_template: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        check_chat_template(chat_template)
        self.http = http
        self.facts = facts
        self.url = url
        self.concurrency = concurrency
        self._fallback = chat_template
        self._dialect = DIALECTS[facts.kind](http, facts)
        self.capabilities = frozenset(
            {"generate"} | ({"teacher-forced"} if SUPPORT[facts.kind].teacher_forced else set())
        )
        self.name = url
        served = facts.as_dict()
        served["identity"] = facts.identity
        caveats = [
            (
                "answers are cached under what the server reports about the model (its id and "
                "version), which is weaker than a file hash: clear the cache (or pass "
                "--no-cache) after changing the served weights under the same name"
            )
        ]
        if self._dialect.result_varies_with_concurrency:
            slots = (
                f" on {facts.slots} slot{'' if facts.slots == 1 else 's'}" if facts.slots else ""
            )
            caveats.append(
                f"{facts.kind} decodes the requests in flight together, and greedy answers can "
                f"change at near-ties with how many there are (this run: {concurrency} in "
                f"flight{slots}): keep --concurrency and the server's slots fixed between runs "
                "you compare"
            )
        template_source: str | None = "server" if self._dialect.has_chat_template else None
        self.info = ModelInfo(
            name=self.name,
            path=url,
            sha256=None,
            chat_template_source=f"fallback:{chat_template}" if chat_template else template_source,
            context_length=facts.context_length,
            backend=f"http:{facts.kind}",
            served=served,
            caveats=tuple(caveats),
        )
        self._slots: queue.Queue[int] = queue.Queue()
        for slot in range(concurrency):
            self._slots.put(slot % max(1, facts.slots or 1))

    # -- what the runner needs -----------------------------------------------------------------

    @property
    def decoding(self) -> Mapping[str, object]:
        """Settings that change outputs (part of the runner's cache key)."""
        settings: dict[str, object] = {
            "backend": f"http:{self.facts.kind}",
            "protocol": "simonsca-http/2",  # 2: answers cut by early stop like in-process
            "model": self.facts.model,
            "version": self.facts.version,
            "n_ctx": self.facts.context_length,
            "lora": [list(pair) for pair in self.facts.lora],
            **self._dialect.sampling(),
        }
        if self._dialect.result_varies_with_concurrency:
            settings["concurrency"] = self.concurrency
            settings["slots"] = self.facts.slots
        return settings

    @property
    def batch_size(self) -> int:
        return self.concurrency

    def count_tokens(self, text: str) -> int:
        """The server's tokenizer (no BOS); without one, UTF-8 bytes (an upper bound)."""
        return self._dialect.count_tokens(text)

    def max_tokens_for(self, answer: str) -> int:
        return max_tokens_for(self.count_tokens(answer))

    def chat_prompt(self, item_or_text: Item | str) -> str:
        message = item_or_text.user_message if isinstance(item_or_text, Item) else item_or_text
        if self._fallback:
            return render_fallback(self._fallback, message)
        rendered = self._dialect.render_chat(message)
        return rendered if rendered is not None else SERVER_CHAT_PREFIX + message

    # -- generation ----------------------------------------------------------------------------

    def _check_fits(self, prompt: str, max_tokens: int) -> None:
        context = self.facts.context_length
        if context is None:
            return
        n_prompt = self._dialect.prompt_tokens(prompt)
        if n_prompt + max_tokens > context:
            exact = "" if self._dialect.exact_tokens else " (at most; UTF-8 bytes, no tokenizer)"
            raise ContextTooSmall(
                f"{self.url}: the prompt ({n_prompt} tokens{exact}) plus max_tokens {max_tokens} "
                f"do not fit the served context of {context}; serve the model with a longer "
                "context (or pass n_ctx where the server takes it)"
            )

    def _complete_one(self, request: GenerationRequest, slot: int) -> Completion:
        if request.prompt.startswith(SERVER_CHAT_PREFIX):
            message = request.prompt[len(SERVER_CHAT_PREFIX) :]
            # the server's template adds a few tokens this count leaves out; an overflow the
            # check misses is the server's own one-line refusal
            self._check_fits(message, request.max_tokens)
            return self._cut(self._dialect.chat(message, request), request)
        self._check_fits(request.prompt, request.max_tokens)
        if request.watch is not None and self._dialect.streams:
            return self._streamed(request)
        return self._cut(self._dialect.complete(request.prompt, request), request)

    def _cut(self, completion: Completion, request: GenerationRequest) -> Completion:
        """The whole answer cut where the in-process watch would have stopped generating."""
        cut = watch_cut(completion.text, request.watch) if request.watch is not None else None
        return completion if cut is None else self._cut_completion(completion.text[: cut[0]])

    def _cut_completion(self, kept: str) -> Completion:
        # the tokens of the kept text, as the in-process backend counts those it generated
        return Completion(text=kept, n_tokens=self.count_tokens(kept), finish_reason="cut")

    def _streamed(self, request: GenerationRequest) -> Completion:
        """Read the answer as it streams; once the watch fires, close the stream (the server
        stops generating) and keep the text up to the line where it fired."""
        assert request.watch is not None
        pieces = self._dialect.stream(request.prompt, request)
        text, finish = "", None
        try:
            for piece, end in pieces:
                start, text = len(text), text + piece
                if "\n" in piece and (cut := watch_cut(text, request.watch, start)) is not None:
                    return self._cut_completion(text[: cut[0]])
                finish = end or finish
        finally:
            pieces.close()
        reason, n_tokens = finish or ("stop", None)
        return Completion(
            text=text,
            n_tokens=self.count_tokens(text) if n_tokens is None else n_tokens,
            finish_reason=reason,
        )

    def complete_many(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, Completion]]:
        """Greedy completions, ``concurrency`` in flight; yields ``(index, completion)`` as each
        finishes. With ``request.watch`` an answer is cut exactly where the in-process backend
        would stop it: streamed and closed there where the server kind streams, else cut after
        it arrives whole (the server spends the rest of the budget)."""
        return self._run(requests, self._complete_one)

    # -- teacher forcing -----------------------------------------------------------------------

    def _likelihood_one(self, request: LikelihoodRequest, slot: int) -> AnswerLikelihood:
        if request.prompt.startswith(SERVER_CHAT_PREFIX):
            raise ScoringUnsupported(
                f"{self.url}: chat-mode teacher forcing needs the rendered chat template; pass "
                "--chat-template gemma|llama3|chatml, or score in raw mode"
            )
        return self._dialect.likelihood(request, slot)

    def likelihood_many(
        self, requests: Sequence[LikelihoodRequest]
    ) -> Iterator[tuple[int, AnswerLikelihood]]:
        """Teacher-forced scores; :class:`ScoringUnsupported` (one line) where the server
        cannot report log-probabilities of given tokens."""
        if "teacher-forced" not in self.capabilities:
            raise self._dialect.refusal()
        return self._run(requests, self._likelihood_one)

    # -- concurrency ---------------------------------------------------------------------------

    def _run(self, requests: Sequence[T], one: Callable[[T, int], R]) -> Iterator[tuple[int, R]]:
        def job(request: T) -> R:
            slot = self._slots.get()
            try:
                return one(request, slot)
            finally:
                self._slots.put(slot)

        if self.concurrency == 1:
            for index, request in enumerate(requests):
                yield index, job(request)
            return
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="simonsca-http")
        try:
            pending: dict[Future[R], int] = {}
            todo = iter(enumerate(requests))
            while True:
                while len(pending) < self.concurrency:
                    nxt = next(todo, None)
                    if nxt is None:
                        break
                    pending[pool.submit(job, nxt[1])] = nxt[0]
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: pending[f]):
                    index = pending.pop(future)
                    yield index, future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServedModel({self.url!r}, kind={self.facts.kind!r}, model={self.facts.model!r})"

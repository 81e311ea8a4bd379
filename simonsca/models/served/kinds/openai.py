"""A plain OpenAI-compatible server (``/v1/completions``, ``/v1/chat/completions``), and the
:class:`Dialect` base class every other server kind refines.

Plain OpenAI reports no log-probabilities of given tokens and has no tokenizer endpoint:
generation only, prompt lengths bounded by their UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from simonsca.models.base import (
    AnswerLikelihood,
    Completion,
    FinishReason,
    GenerationRequest,
    LikelihoodRequest,
)
from simonsca.models.served.client import HttpClient, ScoringUnsupported, ServerError
from simonsca.models.served.facts import ServerFacts, ServerKind
from simonsca.models.served.names import openai_model_ids, pick_model, stem_aliases


def describe(http: HttpClient, name: str | None, *, n_ctx: int | None) -> ServerFacts:
    """The model ``name`` picks from ``/v1/models``; the context is the user's ``n_ctx``."""
    ids = openai_model_ids(http)
    model = pick_model(http.root, ids, name, stem_aliases(ids))
    return ServerFacts(kind="openai", root=http.root, model=model, context_length=n_ctx)


def finish_reason(reason: str) -> FinishReason:
    """simonsca's finish reason for a server's (``length``/``limit``/``max_tokens``: out of
    tokens; anything else stopped)."""
    return "length" if reason in ("length", "limit", "max_tokens") else "stop"


#: Greedy decoding on a llama.cpp sampler chain (llama-server, llama-cpp-python's server): one
#: candidate, and the penalties their servers turn on by default (repeat_penalty 1.1) off.
LLAMA_CPP_GREEDY: dict[str, object] = {
    "temperature": 0.0,
    "top_k": 1,
    "seed": 0,
    "repeat_penalty": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
}


#: What a streamed answer yields: a piece of text, and at the end how it finished (reason and,
#: where the server says, the tokens generated).
StreamPiece = tuple[str, tuple[FinishReason, int | None] | None]


class Dialect:
    """Request and response shapes of one server kind. The base speaks plain OpenAI."""

    kind: ServerKind = "openai"
    completions_path = "/v1/completions"
    chat_path = "/v1/chat/completions"
    result_varies_with_concurrency = False
    #: Raw-prompt answers are streamed, so early stop can close the connection where it fires
    #: (set per kind once checked against the real server; the others are cut afterwards).
    streams = False

    def __init__(self, http: HttpClient, facts: ServerFacts) -> None:
        self.http = http
        self.facts = facts

    # tokens ---------------------------------------------------------------------------------

    @property
    def exact_tokens(self) -> bool:
        return False

    def tokenize(self, text: str, with_bos: bool) -> list[int]:
        raise ScoringUnsupported(
            f"{self.facts.root} ({self.kind}) has no tokenizer endpoint; teacher-forced scoring "
            "needs one (use llama-server, vLLM or llama-cpp-python's server)"
        )

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without BOS; an upper bound (UTF-8 bytes) without a tokenizer."""
        return len(text.encode("utf-8"))

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens the server will see for ``prompt`` (with BOS), or an upper bound."""
        return self.count_tokens(prompt) + 1

    # generation -----------------------------------------------------------------------------

    def sampling(self) -> dict[str, object]:
        # plain OpenAI has no top_k; the subclasses add it where the server takes it
        return {"temperature": 0.0, "seed": 0}

    def extra_body(self) -> dict[str, object]:
        """Fields every generation request carries besides sampling (llama-server: LoRA)."""
        return {}

    def refusal(self) -> ScoringUnsupported:
        return ScoringUnsupported(
            f"{self.facts.root} is {self.kind}, which reports no log-probabilities of given "
            "tokens; teacher-forced scoring needs llama-server, vLLM or llama-cpp-python's server"
        )

    def _completion_body(
        self, prompt: str, request: GenerationRequest, *, stream: bool = False
    ) -> dict[str, object]:
        return {
            "model": self.facts.model,
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            "stream": stream,
            **self.sampling(),
            **self.extra_body(),
        }

    def complete(self, prompt: str, request: GenerationRequest) -> Completion:
        return self._openai_completion(
            self._post(self.completions_path, self._completion_body(prompt, request))
        )

    def stream(self, prompt: str, request: GenerationRequest) -> Generator[StreamPiece, None, None]:
        """The answer as it is generated (OpenAI's streamed ``/v1/completions``)."""
        body = self._completion_body(prompt, request, stream=True)
        for event in self.http.events(self.completions_path, body):
            try:
                choice = event["choices"][0]
                reason = choice.get("finish_reason")
                yield (
                    str(choice.get("text") or ""),
                    (finish_reason(reason), None) if reason else None,
                )
            except (KeyError, IndexError, TypeError) as error:
                raise ServerError(
                    f"{self.facts.root} streamed a completion without {error}; is it "
                    "OpenAI-compatible?"
                ) from None

    def _post(self, path: str, body: dict[str, object]) -> Any:
        """One generation or scoring request (a hook: llama-cpp-python needs a reset first)."""
        return self.http.json("POST", path, body)

    @property
    def has_chat_template(self) -> bool:
        """Whether the server has the model's own chat template to apply (assumed: a server
        that applies a template of its own choosing says so, see llama-server)."""
        return True

    def render_chat(self, message: str) -> str | None:
        """The chat-templated prompt for a user message, where the server renders it into a raw
        prompt (llama-server); ``None``: the message goes to the chat endpoint instead."""
        return None

    def chat(self, message: str, request: GenerationRequest) -> Completion:
        body: dict[str, object] = {
            "model": self.facts.model,
            "messages": [{"role": "user", "content": message}],
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            "stream": False,
            **self.sampling(),
            **self.extra_body(),
        }
        return self._openai_completion(self._post(self.chat_path, body))

    def _openai_completion(self, reply: Any) -> Completion:
        try:
            choice = reply["choices"][0]
            text = choice["text"] if "text" in choice else choice["message"]["content"]
            reason = choice.get("finish_reason") or "stop"
            usage = reply.get("usage") or {}
            n_tokens = int(usage.get("completion_tokens", 0))
        except (KeyError, IndexError, TypeError) as error:
            raise ServerError(
                f"{self.facts.root} answered a completion without {error}; is it OpenAI-compatible?"
            ) from None
        self.after_reply(reply)
        return Completion(text=text or "", n_tokens=n_tokens, finish_reason=finish_reason(reason))

    def after_reply(self, reply: Any) -> None:
        """A hook to check what the reply says about the context (LM Studio)."""

    # teacher forcing ------------------------------------------------------------------------

    def likelihood(self, request: LikelihoodRequest, slot: int) -> AnswerLikelihood:
        raise self.refusal()

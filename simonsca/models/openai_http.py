"""A model behind an HTTP server: llama-server, llama-cpp-python's server, vLLM, Ollama, LM Studio.

:class:`ServedModel` implements the :class:`~simonsca.models.base.Model` protocol over HTTP (httpx),
so a URL can stand wherever a GGUF path does. What each server kind can do differs, and the
backend says so instead of faking it (:data:`SUPPORT` is the table):

* greedy generation everywhere (temperature 0, ``top_k`` 1 where accepted, seed 0, no penalties);
* teacher forcing only where the server reports log-probabilities of *given* tokens: vLLM
  (``prompt_logprobs``, one request per answer), llama-cpp-python's server (``echo`` +
  ``logprobs``, one request per answer) and llama-server (one request per answer token: the
  token is forced with ``logit_bias`` and ``n_probs`` reports its raw log-probability, on a
  pinned slot with ``cache_prompt``). Ollama and LM Studio raise :class:`ScoringUnsupported`.

Prompt lengths are checked before a request is sent (Ollama cuts an over-long prompt silently;
llama-cpp-python silently lowers ``max_tokens``): with the server's tokenizer where it has one,
otherwise with the prompt's UTF-8 byte count, an upper bound on its tokens.

Nothing here knows the file behind the URL, so ``info.sha256`` is ``None``; ``served["identity"]``
hashes what the server reports (kind, model id, version, context, adapters, digest where given).
That is weaker than a file hash: a different file served under the same id and version looks the
same.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeVar

import httpx

from simonsca.errors import ConfigError, ContextTooSmall, SimonscaError
from simonsca.models.base import (
    AnswerLikelihood,
    Completion,
    FinishReason,
    GenerationRequest,
    LikelihoodRequest,
    ModelInfo,
    max_tokens_for,
)
from simonsca.tasks import Item


class ServerError(SimonscaError):
    """A server that is down, a wrong URL, an unknown model name or a refused request."""


class ScoringUnsupported(ServerError):
    """The server cannot do what was asked (teacher forcing, chat-mode scoring)."""


ServerKind = Literal["llama-server", "llama-cpp-python", "vllm", "ollama", "lmstudio", "openai"]

#: Prefix of a chat-mode prompt for a server that applies its own chat template: the rest is the
#: user message, sent to the server's chat endpoint (see :meth:`ServedModel.chat_prompt`).
SERVER_CHAT_PREFIX = "<<simonsca: user message for the server's chat template>>\n"
#: Retried statuses: rate limited, bad gateway, unavailable (loading), gateway timeout.
RETRY_STATUS = frozenset({429, 502, 503, 504})
#: A bias that makes the forced token the greedy choice (llama-server teacher forcing).
FORCE_BIAS = 1.0e4
#: Log-probability reported for a token whose probability underflowed to 0 (llama-server).
LOGPROB_FLOOR = -1.0e4


@dataclass(frozen=True)
class ServerSupport:
    """What one server kind offers simonsca (the table in the README comes from here)."""

    generate: str
    teacher_forced: str | None  # how, or None when refused
    tokenizer: str
    chat: str
    default_concurrency: str


SUPPORT: Mapping[ServerKind, ServerSupport] = {
    "llama-server": ServerSupport(
        "POST /completion, token-id prompt",
        "one request per answer token: logit_bias forces it, n_probs gives its raw log-prob",
        "POST /tokenize (with pieces)",
        "POST /apply-template, then raw completion",
        "total_slots from /props",
    ),
    "llama-cpp-python": ServerSupport(
        "POST /v1/completions",
        "echo + logprobs, one request per answer (slow: ~0.4 s/token with a 262k vocabulary)",
        "POST /extras/tokenize",
        "POST /v1/chat/completions (GGUF template, else llama-2 format)",
        "1 (the server decodes one request at a time; simonsca serialises its requests)",
    ),
    "vllm": ServerSupport(
        "POST /v1/completions",
        "prompt_logprobs, one request per answer",
        "POST /tokenize",
        "POST /v1/chat/completions",
        "4 (the server does not say)",
    ),
    "ollama": ServerSupport(
        "POST /api/generate, raw: true",
        None,
        "none: UTF-8 bytes bound the tokens",
        "POST /api/chat",
        "1 (OLLAMA_NUM_PARALLEL is not reported)",
    ),
    "lmstudio": ServerSupport(
        "POST /api/v0/completions",
        None,
        "none: UTF-8 bytes bound the tokens",
        "POST /api/v0/chat/completions",
        "1",
    ),
    "openai": ServerSupport(
        "POST /v1/completions",
        None,
        "none: UTF-8 bytes bound the tokens",
        "POST /v1/chat/completions",
        "1",
    ),
}


# ---------------------------------------------------------------------------------------------
# HTTP with retries


def error_message(response: httpx.Response) -> str:
    """The server's own error text, from the shapes these servers use."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message", body)))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(body)[:300]


class HttpClient:
    """JSON over HTTP to one server root, with retries and one-line errors.

    Connection failures, 429 and 5xx-unavailable answers are retried with exponential backoff
    (honouring ``Retry-After``); a read that takes longer than ``timeout`` is not retried (the
    server may still be working on it) and becomes a :class:`ServerError`.
    """

    def __init__(
        self,
        root: str,
        *,
        timeout: float = 600.0,
        retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.root = root
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.Client(
            base_url=root,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    def request(
        self, method: str, path: str, body: object = None, *, retries: int | None = None
    ) -> httpx.Response:
        """The response (any status); raises :class:`ServerError` when none comes."""
        attempts = (self.retries if retries is None else retries) + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._client.request(method, path, json=body)
            except httpx.TimeoutException as error:
                if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout) and not last:
                    self._sleep(attempt, None)
                    continue
                raise ServerError(
                    f"{self.root}{path} gave no answer within the timeout "
                    f"({type(error).__name__}); pass a longer timeout or check the server"
                ) from None
            except httpx.TransportError as error:
                if not last:
                    self._sleep(attempt, None)
                    continue
                raise ServerError(
                    f"no server answers at {self.root} ({type(error).__name__}: {error}); "
                    "start it, or check the URL"
                ) from None
            if response.status_code in RETRY_STATUS and not last:
                self._sleep(attempt, response.headers.get("retry-after"))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2**attempt
        if retry_after and retry_after.strip().isdigit():
            delay = max(delay, float(retry_after))
        time.sleep(min(delay, 30.0))

    def json(
        self, method: str, path: str, body: object = None, *, retries: int | None = None
    ) -> Any:
        """The decoded JSON body of a 2xx answer; any other answer is a one-line error."""
        response = self.request(method, path, body, retries=retries)
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise ServerError(
                    f"{self.root}{path} answered with something that is not JSON: "
                    f"{response.text[:120]!r}"
                ) from None
        raise _status_error(self.root, path, response)

    def probe(self, path: str) -> Any | None:
        """GET ``path``'s JSON, or ``None`` when the server has no such endpoint."""
        response = self.request("GET", path, retries=1)
        if not response.is_success:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def close(self) -> None:
        self._client.close()


def _status_error(root: str, path: str, response: httpx.Response) -> SimonscaError:
    message = error_message(response)
    lowered = message.lower()
    if "context" in lowered and ("length" in lowered or "exceed" in lowered or "size" in lowered):
        return ContextTooSmall(f"{root}{path}: {message}")
    if response.status_code == 404 and "model" not in lowered:
        return ServerError(
            f"{root} has no {path} (HTTP 404); is this the server's root address and kind?"
        )
    if "model" in lowered and ("not found" in lowered or "does not exist" in lowered):
        return ServerError(f"{root}: {message}; pick a served model with URL#name")
    return ServerError(f"{root}{path} answered HTTP {response.status_code}: {message}")


# ---------------------------------------------------------------------------------------------
# What the server serves


@dataclass(frozen=True)
class ServerFacts:
    """What a server reported about the model at startup (recorded in ``info.served``)."""

    kind: ServerKind
    root: str
    model: str  # the id sent in requests
    context_length: int | None
    version: str | None = None
    chat_template: str | None = None
    slots: int | None = None
    adapters: tuple[Mapping[str, object], ...] = ()
    lora: tuple[tuple[int, float], ...] = ()  # llama-server: (adapter id, scale) per request
    digest: str | None = None
    bos_text: str | None = None
    details: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "url": self.root,
            "model": self.model,
            "context_length": self.context_length,
            "version": self.version,
            "chat_template_sha256": (
                hashlib.sha256(self.chat_template.encode("utf-8")).hexdigest()
                if self.chat_template
                else None
            ),
            "slots": self.slots,
            "adapters": [dict(a) for a in self.adapters],
            "lora": [list(pair) for pair in self.lora],
            "digest": self.digest,
            "details": dict(self.details),
        }

    @property
    def identity(self) -> str:
        """A stable cache identity: everything reported except the URL (the same server may move
        ports). Weaker than a file hash; see the module docstring."""
        fields = self.as_dict()
        fields.pop("url")
        blob = json.dumps(fields, sort_keys=True, default=str)
        return "served:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Plan:
    """The tokens of one teacher-forced answer, cut as the in-process backend cuts them."""

    prompt: list[int]
    forced: list[int]  # answer tokens, then stop tokens
    n_answer: int
    boundary: str


def plan_forcing(tokenize: Callable[[str, bool], list[int]], request: LikelihoodRequest) -> _Plan:
    """Prompt and answer tokens exactly as ``LlamaCppModel._force_group`` cuts them, with the
    server's tokenizer (``tokenize(text, with_bos)``)."""

    def answer_tokens(prompt: str, answer: str) -> tuple[list[int], list[int], str]:
        prompt_tokens = tokenize(prompt, True)
        joint = tokenize(prompt + answer, True)
        if joint[: len(prompt_tokens)] == prompt_tokens:
            return prompt_tokens, joint[len(prompt_tokens) :], "joint"
        return prompt_tokens, tokenize(answer, False), "separate"

    prompt_tokens, forced, boundary = answer_tokens(request.prompt, request.answer + request.stop)
    n_answer = len(forced)
    if request.stop:
        body = answer_tokens(request.prompt, request.answer)[1]
        n_answer = len(body) if forced[: len(body)] == body else len(forced)
    return _Plan(prompt_tokens, forced, n_answer, boundary)


def _summarise(
    plan: _Plan,
    logprobs: Sequence[float],
    margins: Sequence[float],
    pieces: Sequence[bytes],
    eog_next: bool,
) -> AnswerLikelihood:
    """Per-token results (forced tokens in order) into an :class:`AnswerLikelihood`;
    ``margins[k]``: the top log-prob minus forced token k's (0 when it was the top choice)."""
    n = plan.n_answer
    ends: list[int] = []
    position = 0
    for piece in pieces[:n]:
        position += len(piece)
        ends.append(position)
    return AnswerLikelihood(
        token_ends=tuple(ends),
        logprobs=tuple(float(x) for x in logprobs[:n]),
        margins=tuple(float(m) for m in margins[:n]),
        stop_logprob=float(sum(logprobs[n:])),
        stop_greedy=eog_next or all(m <= 0.0 for m in margins[n:]),
        boundary=plan.boundary,
    )


# ---------------------------------------------------------------------------------------------
# One dialect per server kind


class _Dialect:
    """Request and response shapes of one server kind. The base speaks plain OpenAI."""

    kind: ServerKind = "openai"
    completions_path = "/v1/completions"
    chat_path = "/v1/chat/completions"
    result_varies_with_concurrency = False

    def __init__(self, http: HttpClient, facts: ServerFacts) -> None:
        self.http = http
        self.facts = facts
        self._special: int | None = None

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

    def complete(self, prompt: str, request: GenerationRequest) -> Completion:
        body: dict[str, object] = {
            "model": self.facts.model,
            "prompt": prompt,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            "stream": False,
            **self.sampling(),
            **self.extra_body(),
        }
        return self._openai_completion(self._post(self.completions_path, body))

    def _post(self, path: str, body: dict[str, object]) -> Any:
        """One generation or scoring request (a hook: llama-cpp-python needs a reset first)."""
        return self.http.json("POST", path, body)

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
        return Completion(text=text or "", n_tokens=n_tokens, finish_reason=_finish(reason))

    def after_reply(self, reply: Any) -> None:
        """A hook to check what the reply says about the context (LM Studio)."""

    # teacher forcing ------------------------------------------------------------------------

    def likelihood(self, request: LikelihoodRequest, slot: int) -> AnswerLikelihood:
        raise self.refusal()


def _finish(reason: str) -> FinishReason:
    return "length" if reason in ("length", "limit", "max_tokens") else "stop"


class _LlamaCppPython(_Dialect):
    """llama-cpp-python's FastAPI server (``python -m llama_cpp.server``).

    It keeps one KV cache and reuses the longest prefix the new prompt shares with the previous
    request. With Gemma 3 that changes greedy answers by the previous request (measured: seed
    140's answer differs after seeds 165 or 176, not after 2 or 269 or on a fresh server), so
    each request follows a one-token reset request whose prompt shares only the BOS with any
    real prompt (~50 ms), under a lock: the answers then equal a fresh server's.
    """

    kind: ServerKind = "llama-cpp-python"
    RESET_PROMPT = "\u2400"  # "␀": a prompt nothing else starts with

    def __init__(self, http: HttpClient, facts: ServerFacts) -> None:
        super().__init__(http, facts)
        self._lock = threading.Lock()

    def _post(self, path: str, body: dict[str, object]) -> Any:
        reset = {"model": self.facts.model, "prompt": self.RESET_PROMPT, "max_tokens": 1}
        with self._lock:
            self.http.json("POST", self.completions_path, reset | self.sampling())
            return self.http.json("POST", path, body)

    @property
    def exact_tokens(self) -> bool:
        return True

    @property
    def n_special(self) -> int:
        """Tokens the tokenizer adds to any text (BOS): what ``/extras/tokenize`` of "" gives."""
        if self._special is None:
            self._special = len(self._tokens(""))
        return self._special

    def _tokens(self, text: str) -> list[int]:
        body = {"input": text, "model": self.facts.model}
        return [int(t) for t in self.http.json("POST", "/extras/tokenize", body)["tokens"]]

    def tokenize(self, text: str, with_bos: bool) -> list[int]:
        tokens = self._tokens(text)
        return tokens if with_bos else tokens[self.n_special :]

    def count_tokens(self, text: str) -> int:
        return len(self._tokens(text)) - self.n_special

    def prompt_tokens(self, prompt: str) -> int:
        return len(self._tokens(prompt))

    def sampling(self) -> dict[str, object]:
        # temperature 0 is llama.cpp's greedy sampler; the server's repeat_penalty default is 1.1
        return {
            "temperature": 0.0,
            "top_k": 1,
            "seed": 0,
            "repeat_penalty": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
        }

    def likelihood(self, request: LikelihoodRequest, slot: int) -> AnswerLikelihood:
        """One ``echo`` request: the server returns each prompt token's log-prob and its top-1.

        Its echo drops the BOS and shifts by one position, which is right only when the
        tokenizer adds a BOS; without one the numbers would be misaligned, so it refuses."""
        if self.n_special != 1:
            raise ScoringUnsupported(
                f"{self.facts.root}: llama-cpp-python's echo log-probs are misaligned for a "
                "model whose tokenizer adds no BOS; use llama-server or vLLM to score it"
            )
        plan = plan_forcing(self.tokenize, request)
        text = request.prompt + request.answer + request.stop
        server_tokens = self._tokens(text)
        if server_tokens != plan.prompt + plan.forced:
            # The boundary was cut "separate": a text prompt cannot carry those tokens.
            raise ScoringUnsupported(
                f"{self.facts.root}: the prompt/answer boundary falls inside a token and "
                "llama-cpp-python's server scores text prompts only; use llama-server or vLLM"
            )
        body = {
            "model": self.facts.model,
            "prompt": text,
            "max_tokens": 1,
            "echo": True,
            "logprobs": 1,
            **self.sampling(),
        }
        reply = self._post(self.completions_path, body)
        try:
            lp = reply["choices"][0]["logprobs"]
            token_logprobs: list[float | None] = lp["token_logprobs"]
            tops: list[dict[str, float] | None] = lp["top_logprobs"]
            token_texts: list[str] = lp["tokens"]
        except (KeyError, IndexError, TypeError):
            raise ServerError(
                f"{self.facts.root} returned no echo log-probs; start it with --logits_all true"
            ) from None
        # Entry j (BOS dropped) is prompt token j + 1; the forced tokens are the last ones.
        first = len(plan.prompt) - 1
        n = len(plan.forced)
        logprobs: list[float] = []
        margins: list[float] = []
        for j in range(first, first + n):
            value = token_logprobs[j]
            top = tops[j] or {}
            logprob = float(value) if value is not None else LOGPROB_FLOOR
            logprobs.append(logprob)
            # the dict holds the top-1 text and the forced token's (keyed by text)
            margins.append(max(0.0, max(top.values()) - logprob) if top else 0.0)
        eog_next = False
        if plan.n_answer < n:
            top = tops[first + plan.n_answer] or {}
            best = max(top, key=lambda k: top[k]) if top else None
            # EOG tokens render as "" (an empty top-1 text counts as ending the generation)
            eog_next = best == "" and top[best] > logprobs[plan.n_answer]
        pieces = [t.encode("utf-8") for t in token_texts[first : first + n]]
        return _summarise(plan, logprobs, margins, pieces, eog_next)


class _LlamaServer(_Dialect):
    """llama.cpp's own ``llama-server``: token-id prompts, per-request LoRA, slots."""

    kind: ServerKind = "llama-server"
    result_varies_with_concurrency = True  # slots decode together; temperature-0 results move

    def __init__(self, http: HttpClient, facts: ServerFacts) -> None:
        super().__init__(http, facts)
        self._piece_bytes: dict[int, bytes] = {}

    @property
    def exact_tokens(self) -> bool:
        return True

    def _pieces(self, text: str, *, special: bool) -> list[tuple[int, bytes]]:
        """Token ids with their bytes (``with_pieces``; a piece that is not valid UTF-8 comes
        as a list of bytes). Every piece seen is kept for the answer's byte offsets."""
        body = {"content": text, "add_special": special, "parse_special": True, "with_pieces": True}
        out: list[tuple[int, bytes]] = []
        for token in self.http.json("POST", "/tokenize", body)["tokens"]:
            if not isinstance(token, dict):
                raise ServerError(f"{self.facts.root}/tokenize ignores with_pieces; update it")
            piece = token.get("piece", "")
            raw = bytes(piece) if isinstance(piece, list) else str(piece).encode("utf-8")
            out.append((int(token["id"]), raw))
            self._piece_bytes[int(token["id"])] = raw
        return out

    def tokenize(self, text: str, with_bos: bool) -> list[int]:
        return [t for t, _ in self._pieces(text, special=with_bos)]

    def count_tokens(self, text: str) -> int:
        return len(self._pieces(text, special=False))

    def prompt_tokens(self, prompt: str) -> int:
        return len(self._pieces(prompt, special=True))

    def sampling(self) -> dict[str, object]:
        return {
            "temperature": 0.0,
            "top_k": 1,
            "seed": 0,
            "repeat_penalty": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "dry_multiplier": 0.0,
            "samplers": ["top_k", "temperature"],
        }

    def extra_body(self) -> dict[str, object]:
        if not self.facts.lora:
            return {}
        return {"lora": [{"id": i, "scale": s} for i, s in self.facts.lora]}

    def _body(self, prompt: object, n_predict: int, **extra: object) -> dict[str, object]:
        return {
            "model": self.facts.model,
            "prompt": prompt,
            "n_predict": n_predict,
            "stream": False,
            **self.sampling(),
            **self.extra_body(),
            **extra,
        }

    def complete(self, prompt: str, request: GenerationRequest) -> Completion:
        tokens = self.tokenize(prompt, True)
        body = self._body(
            tokens,
            request.max_tokens,
            stop=list(request.stop),
            cache_prompt=False,
            return_tokens=True,
        )
        reply = self.http.json("POST", "/completion", body)
        if reply.get("truncated"):
            raise ContextTooSmall(
                f"{self.facts.root}: the prompt plus max_tokens overran the server's context"
            )
        stop_type = str(reply.get("stop_type", "eos"))
        n_tokens = int(reply.get("tokens_predicted", len(reply.get("tokens") or [])))
        return Completion(
            text=str(reply.get("content", "")),
            n_tokens=n_tokens,
            finish_reason="length" if stop_type == "limit" else "stop",
        )

    def render_chat(self, message: str) -> str:
        body = {"messages": [{"role": "user", "content": message}]}
        text = str(self.http.json("POST", "/apply-template", body)["prompt"])
        bos = self.facts.bos_text
        return text[len(bos) :] if bos and text.startswith(bos) else text

    def likelihood(self, request: LikelihoodRequest, slot: int) -> AnswerLikelihood:
        """One request per forced token on one pinned slot (its cache holds the prefix)."""
        plan = plan_forcing(self.tokenize, request)
        logprobs: list[float] = []
        margins: list[float] = []
        eog_next = False
        for k, token in enumerate(plan.forced):
            prefix = plan.prompt + plan.forced[:k]
            if k == plan.n_answer:  # would greedy decoding end the generation here?
                free = self._body(prefix, 1, cache_prompt=True, id_slot=slot)
                eog_next = self.http.json("POST", "/completion", free).get("stop_type") == "eos"
            body = self._body(
                prefix,
                1,
                cache_prompt=True,
                id_slot=slot,
                n_probs=1,
                logit_bias=[[token, FORCE_BIAS]],
            )
            reply = self.http.json("POST", "/completion", body)
            probs = reply.get("completion_probabilities") or reply.get("probs") or []
            if not probs:
                raise ServerError(f"{self.facts.root}/completion returned no n_probs output")
            entry = probs[0]
            if int(entry.get("id", token)) != token:
                raise ServerError(
                    f"{self.facts.root}: logit_bias did not force token {token}; "
                    "is a sampler other than top_k/temperature configured?"
                )
            logprob = entry.get("logprob")
            value = float(logprob) if logprob is not None else LOGPROB_FLOOR
            top = entry.get("top_logprobs") or []
            best = float(top[0]["logprob"]) if top and top[0].get("logprob") is not None else value
            logprobs.append(value)
            margins.append(max(0.0, best - value))
        # plan_forcing tokenized every forced token, so each one's piece is known
        pieces = [self._piece_bytes.get(t, b"") for t in plan.forced]
        return _summarise(plan, logprobs, margins, pieces, eog_next)


class _VLLM(_Dialect):
    """vLLM's OpenAI-compatible server: ``prompt_logprobs``, LoRA adapters as model ids."""

    kind: ServerKind = "vllm"
    result_varies_with_concurrency = True  # batch composition moves the last bits

    def sampling(self) -> dict[str, object]:
        return {"temperature": 0.0, "top_k": 1, "seed": 0}

    @property
    def exact_tokens(self) -> bool:
        return True

    def tokenize(self, text: str, with_bos: bool) -> list[int]:
        body = {"model": self.facts.model, "prompt": text, "add_special_tokens": with_bos}
        return [int(t) for t in self.http.json("POST", "/tokenize", body)["tokens"]]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text, False))

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.tokenize(prompt, True))

    def likelihood(self, request: LikelihoodRequest, slot: int) -> AnswerLikelihood:
        plan = plan_forcing(self.tokenize, request)
        tokens = plan.prompt + plan.forced
        body = {
            "model": self.facts.model,
            "prompt": tokens,
            "max_tokens": 1,
            "prompt_logprobs": 1,
            **self.sampling(),
        }
        reply = self.http.json("POST", self.completions_path, body)
        try:
            rows: list[dict[str, dict[str, Any]] | None] = reply["choices"][0]["prompt_logprobs"]
        except (KeyError, IndexError, TypeError):
            raise ServerError(f"{self.facts.root} returned no prompt_logprobs") from None
        logprobs: list[float] = []
        margins: list[float] = []
        pieces: list[bytes] = []
        eog_next = False
        for k, token in enumerate(plan.forced):
            row = rows[len(plan.prompt) + k] or {}
            entry = row.get(str(token))
            if entry is None:
                raise ServerError(f"{self.facts.root}: prompt_logprobs lacks token {token}")
            logprob = float(entry["logprob"])
            top = [e for e in row.values() if int(e.get("rank") or 0) == 1]
            best = float(top[0]["logprob"]) if top else logprob
            logprobs.append(logprob)
            # rank 1 (ties included) is the top choice: margin 0
            margins.append(0.0 if int(entry.get("rank") or 1) == 1 else max(0.0, best - logprob))
            pieces.append(str(entry.get("decoded_token") or "").encode("utf-8"))
            if k == plan.n_answer:
                # an end-of-generation token decodes to "" (special tokens are skipped)
                eog_next = bool(top) and top[0].get("decoded_token") == "" and margins[-1] > 0
        return _summarise(plan, logprobs, margins, pieces, eog_next)


class _Ollama(_Dialect):
    """Ollama's native API: ``/api/generate`` with ``raw: true`` (no template), ``num_ctx`` set."""

    kind: ServerKind = "ollama"

    def options(self, request: GenerationRequest) -> dict[str, object]:
        return {
            "temperature": 0.0,
            "top_k": 1,
            "seed": 0,
            "repeat_penalty": 1.0,
            "num_predict": request.max_tokens,
            "stop": list(request.stop),
            "num_ctx": self.facts.context_length,
        }

    def complete(self, prompt: str, request: GenerationRequest) -> Completion:
        body = {
            "model": self.facts.model,
            "prompt": prompt,
            "raw": True,
            "stream": False,
            "options": self.options(request),
        }
        return self._reply(self.http.json("POST", "/api/generate", body), "response")

    def chat(self, message: str, request: GenerationRequest) -> Completion:
        body = {
            "model": self.facts.model,
            "messages": [{"role": "user", "content": message}],
            "stream": False,
            "options": self.options(request),
        }
        return self._reply(self.http.json("POST", "/api/chat", body), "message")

    def _reply(self, reply: Any, key: str) -> Completion:
        value = reply.get(key, "")
        text = value.get("content", "") if isinstance(value, dict) else str(value)
        return Completion(
            text=text,
            n_tokens=int(reply.get("eval_count", 0)),
            finish_reason=_finish(str(reply.get("done_reason", "stop"))),
        )


class _LMStudio(_Dialect):
    """LM Studio's REST API v0 (``/api/v0/completions``): it reports the loaded context."""

    kind: ServerKind = "lmstudio"
    completions_path = "/api/v0/completions"
    chat_path = "/api/v0/chat/completions"

    def sampling(self) -> dict[str, object]:
        return {"temperature": 0.0, "top_k": 1, "seed": 0}

    def after_reply(self, reply: Any) -> None:
        info = reply.get("model_info") or {}
        usage = reply.get("usage") or {}
        context = info.get("context_length")
        total = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        if context and total >= int(context):
            raise ContextTooSmall(
                f"{self.facts.root}: the prompt and answer filled LM Studio's loaded context of "
                f"{context} tokens (the answer may be cut); load the model with a longer context"
            )


DIALECTS: Mapping[ServerKind, type[_Dialect]] = {
    "llama-server": _LlamaServer,
    "llama-cpp-python": _LlamaCppPython,
    "vllm": _VLLM,
    "ollama": _Ollama,
    "lmstudio": _LMStudio,
    "openai": _Dialect,
}


# ---------------------------------------------------------------------------------------------
# The model

T = TypeVar("T")
R = TypeVar("R")


class ServedModel:
    """A model served over HTTP, behind the :class:`~simonsca.models.base.Model` protocol.

    Requests run in ``concurrency`` threads (at most that many in flight); results are yielded
    as each finishes. Make one with :func:`simonsca.models.loading.open_served_model`, which
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
        from simonsca.models.llamacpp import FALLBACK_CHAT_TEMPLATES

        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        if chat_template is not None and chat_template not in FALLBACK_CHAT_TEMPLATES:
            raise ConfigError(
                f"unknown chat template {chat_template!r}; pass --chat-template "
                + "|".join(FALLBACK_CHAT_TEMPLATES)
            )
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
        self.info = ModelInfo(
            name=self.name,
            path=url,
            sha256=None,
            chat_template_source=f"fallback:{chat_template}" if chat_template else "server",
            context_length=facts.context_length,
            backend=f"http:{facts.kind}",
            served=served,
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
            "protocol": "simonsca-http/1",
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
        from simonsca.models.llamacpp import FALLBACK_CHAT_TEMPLATES

        message = item_or_text.user_message if isinstance(item_or_text, Item) else item_or_text
        if self._fallback:
            return FALLBACK_CHAT_TEMPLATES[self._fallback].format(message=message)
        if isinstance(self._dialect, _LlamaServer) and self.facts.chat_template:
            return self._dialect.render_chat(message)
        return SERVER_CHAT_PREFIX + message

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
            return self._dialect.chat(message, request)
        self._check_fits(request.prompt, request.max_tokens)
        return self._dialect.complete(request.prompt, request)

    def complete(
        self, prompt: str, *, max_tokens: int, stop: Sequence[str] = ("\n\n",)
    ) -> Completion:
        """Greedy completion of one prompt."""
        request = GenerationRequest(prompt=prompt, max_tokens=max_tokens, stop=tuple(stop))
        return next(iter(self.complete_many([request])))[1]

    def complete_many(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, Completion]]:
        """Greedy completions, ``concurrency`` in flight; yields ``(index, completion)`` as each
        finishes. ``request.watch`` is not used (a server answer arrives whole)."""
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


def support_table() -> str:
    """What each server kind supports, as a Markdown table (for the README)."""
    lines = [
        "| server | generation | teacher-forced | tokenizer | chat mode | concurrency default |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, s in SUPPORT.items():
        lines.append(
            f"| {kind} | {s.generate} | {s.teacher_forced or 'refused (one-line error)'} | "
            f"{s.tokenizer} | {s.chat} | {s.default_concurrency} |"
        )
    return "\n".join(lines)


__all__ = [
    "SERVER_CHAT_PREFIX",
    "SUPPORT",
    "HttpClient",
    "ScoringUnsupported",
    "ServedModel",
    "ServerError",
    "ServerFacts",
    "ServerKind",
    "ServerSupport",
    "plan_forcing",
    "support_table",
]

"""llama-cpp-python's FastAPI server (``python -m llama_cpp.server``): what it reports at
startup and how simonsca talks to it."""

from __future__ import annotations

import re
import threading
from collections.abc import Generator
from typing import Any

from simonsca.models.base import AnswerLikelihood, GenerationRequest, LikelihoodRequest
from simonsca.models.served.client import HttpClient, ScoringUnsupported, ServerError, error_message
from simonsca.models.served.facts import ServerFacts, ServerKind
from simonsca.models.served.forcing import (
    LOGPROB_FLOOR,
    NO_RIVAL_SEEN,
    plan_forcing,
    summarise_forcing,
)
from simonsca.models.served.kinds.openai import LLAMA_CPP_GREEDY, Dialect, StreamPiece
from simonsca.models.served.names import openai_model_ids, pick_model, stem_aliases


def describe(
    http: HttpClient, openapi: dict[str, Any], name: str | None, *, n_ctx: int | None
) -> ServerFacts:
    """The model ``name`` picks; its context probed from the server's refusal of an over-long
    prompt (capped by ``n_ctx``); the version from ``/openapi.json``."""
    ids = openai_model_ids(http)
    model = pick_model(http.root, ids, name, stem_aliases(ids))
    probed = probe_context(http, model)
    context = min(probed, n_ctx) if probed and n_ctx else probed or n_ctx
    version = str(openapi.get("info", {}).get("version") or "") or None
    return ServerFacts(
        kind="llama-cpp-python",
        root=http.root,
        model=model,
        context_length=context,
        version=version,
    )


def probe_context(http: HttpClient, model: str) -> int | None:
    """llama-cpp-python reports no n_ctx; an over-long prompt's refusal states it (the length
    check runs before any decoding, so the probe costs tokenization only)."""
    unit = " x" * 64
    per_unit = max(1, len(http.json("POST", "/extras/tokenize", {"input": unit})["tokens"]) - 1)
    target = 1 << 20  # no llama-cpp-python context is this long (2 MB of text, ~1 s)
    body = {"model": model, "prompt": unit * (target // per_unit + 1), "max_tokens": 1}
    response = http.request("POST", "/v1/completions", body)
    match = re.search(r"maximum context length is (\d+)", error_message(response))
    return int(match.group(1)) if match else None


class LlamaCppPythonDialect(Dialect):
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
        self._special: int | None = None

    #: Checked by tests/test_http_server_real.py: the streamed answer equals the whole one, and
    #: closing the stream stops the server's generation (it checks for a disconnect per token).
    streams = True

    def _reset(self) -> None:
        reset = {"model": self.facts.model, "prompt": self.RESET_PROMPT, "max_tokens": 1}
        self.http.json("POST", self.completions_path, reset | self.sampling())

    def _post(self, path: str, body: dict[str, object]) -> Any:
        with self._lock:
            self._reset()
            return self.http.json("POST", path, body)

    def stream(self, prompt: str, request: GenerationRequest) -> Generator[StreamPiece, None, None]:
        with self._lock:
            self._reset()
            yield from super().stream(prompt, request)

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
        return dict(LLAMA_CPP_GREEDY)

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
            # A boundary was cut (prompt/answer "separate", or the stop merged into the
            # answer's last token): a text prompt cannot carry those tokens.
            raise ScoringUnsupported(
                f"{self.facts.root}: the prompt/answer/stop boundary falls inside a token and "
                "llama-cpp-python's server scores text prompts only; use llama-server or vLLM"
            )
        body = {
            "model": self.facts.model,
            "prompt": text,
            "max_tokens": 1,
            "echo": True,
            "logprobs": 2,  # the top two and the forced token: a tie is not a choice
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
            # the dict holds the top-2 texts and the forced token's (keyed by text)
            others = [v for text, v in top.items() if text != token_texts[j]]
            margins.append(max(others) - logprob if others else NO_RIVAL_SEEN)
        eog_next = False
        if plan.n_answer < n:
            top = tops[first + plan.n_answer] or {}
            best = max(top, key=lambda k: top[k]) if top else None
            # EOG tokens render as "" (an empty top-1 text counts as ending the generation)
            eog_next = best == "" and top[best] > logprobs[plan.n_answer]
        pieces = [t.encode("utf-8") for t in token_texts[first : first + n]]
        return summarise_forcing(plan, logprobs, margins, pieces, eog_next)

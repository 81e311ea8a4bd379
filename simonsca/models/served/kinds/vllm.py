"""vLLM's OpenAI-compatible server: what it reports at startup and how simonsca scores with it
(``prompt_logprobs``; LoRA adapters are served as model ids)."""

from __future__ import annotations

from typing import Any

from simonsca.models.base import AnswerLikelihood, LikelihoodRequest
from simonsca.models.served.client import HttpClient, ServerError
from simonsca.models.served.facts import ServerFacts, ServerKind
from simonsca.models.served.forcing import NO_RIVAL_SEEN, plan_forcing, summarise_forcing
from simonsca.models.served.kinds.openai import Dialect
from simonsca.models.served.names import pick_model, stem_aliases


def describe(
    http: HttpClient, version: dict[str, Any], name: str | None, *, n_ctx: int | None
) -> ServerFacts:
    """The model (or LoRA adapter id) ``name`` picks, with its ``max_model_len``."""
    listing = http.json("GET", "/v1/models").get("data", [])
    ids = [str(m["id"]) for m in listing]
    model = pick_model(http.root, ids, name, stem_aliases(ids))
    entry = next(m for m in listing if str(m["id"]) == model)
    context = entry.get("max_model_len")
    return ServerFacts(
        kind="vllm",
        root=http.root,
        model=model,
        context_length=int(context) if context else n_ctx,
        version=str(version["version"]),
        details={"root": entry.get("root"), "parent": entry.get("parent")},
    )


class VLLMDialect(Dialect):
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
            "prompt_logprobs": 2,  # the forced token and the best others: a tie is no choice
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
            others = [float(e["logprob"]) for key, e in row.items() if key != str(token)]
            logprobs.append(logprob)
            margins.append(max(others) - logprob if others else NO_RIVAL_SEEN)
            pieces.append(str(entry.get("decoded_token") or "").encode("utf-8"))
            if k == plan.n_answer:
                # an end-of-generation token decodes to "" (special tokens are skipped)
                eog_next = (
                    bool(top)
                    and top[0].get("decoded_token") == ""
                    and margins[-1] > 0
                    and sum(int(e.get("rank") or 0) == 1 for e in row.values()) == 1
                )
        return summarise_forcing(plan, logprobs, margins, pieces, eog_next)

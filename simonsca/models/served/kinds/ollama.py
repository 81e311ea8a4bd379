"""Ollama's native API: what it reports at startup and how simonsca generates with it
(``/api/generate`` with ``raw: true``, ``num_ctx`` set; no teacher forcing)."""

from __future__ import annotations

from typing import Any

from simonsca.models.base import Completion, GenerationRequest
from simonsca.models.served.client import HttpClient
from simonsca.models.served.facts import ServerFacts, ServerKind
from simonsca.models.served.kinds.openai import Dialect, finish_reason
from simonsca.models.served.names import pick_model


def describe(
    http: HttpClient, version: dict[str, Any], name: str | None, *, n_ctx: int | None
) -> ServerFacts:
    """The model ``name`` picks (``:latest`` may be left out), its digest and template; the
    context is ``n_ctx``, else the trained context capped at 4096 (sent as ``num_ctx``)."""
    tags = http.json("GET", "/api/tags").get("models", [])
    ids = [str(m.get("name") or m.get("model")) for m in tags]
    aliases = {i: i for i in ids} | {i.removesuffix(":latest"): i for i in ids}
    model = pick_model(http.root, ids, name, aliases)
    entry = next(m for m in tags if str(m.get("name") or m.get("model")) == model)
    show = http.json("POST", "/api/show", {"model": model})
    info = show.get("model_info") or {}
    trained = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    context = n_ctx or min(int(trained or 4096), 4096)
    return ServerFacts(
        kind="ollama",
        root=http.root,
        model=model,
        context_length=context,
        version=str(version["version"]),
        chat_template=str(show.get("template") or "") or None,
        digest=str(entry.get("digest") or "") or None,
        details=dict(show.get("details") or {}) | {"n_ctx_train": trained},
    )


class OllamaDialect(Dialect):
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
            finish_reason=finish_reason(str(reply.get("done_reason", "stop"))),
        )

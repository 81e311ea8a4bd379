"""LM Studio's REST API v0: what it reports at startup (the loaded context) and how simonsca
generates with it (``/api/v0/completions``; no teacher forcing)."""

from __future__ import annotations

from typing import Any

from simonsca.errors import ContextTooSmall
from simonsca.models.served.client import HttpClient
from simonsca.models.served.facts import ServerFacts, ServerKind
from simonsca.models.served.kinds.openai import Dialect
from simonsca.models.served.names import pick_model


def describe(
    http: HttpClient, models: dict[str, Any], name: str | None, *, n_ctx: int | None
) -> ServerFacts:
    """The language model ``name`` picks (or the only loaded one) and its context."""
    listing = [m for m in models["data"] if m.get("type") in ("llm", "vlm", None)]
    ids = [str(m["id"]) for m in listing]
    loaded = [str(m["id"]) for m in listing if m.get("state") == "loaded"]
    if name is None and len(loaded) == 1:
        name = loaded[0]
    model = pick_model(http.root, ids, name, {i: i for i in ids})
    entry = next(m for m in listing if str(m["id"]) == model)
    context = n_ctx or entry.get("max_context_length")
    return ServerFacts(
        kind="lmstudio",
        root=http.root,
        model=model,
        context_length=int(context) if context else None,
        details={
            k: entry.get(k)
            for k in ("publisher", "arch", "compatibility_type", "quantization", "state")
        },
    )


class LMStudioDialect(Dialect):
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

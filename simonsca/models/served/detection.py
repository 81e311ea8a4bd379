"""Which server answers at a URL, and what it serves: the kind from endpoints only one kind has,
then that kind's ``describe`` (see :mod:`simonsca.models.served.kinds`)."""

from __future__ import annotations

from typing import Any

from simonsca.models.served.client import HttpClient, ServerError
from simonsca.models.served.facts import ServerFacts, ServerKind
from simonsca.models.served.kinds import (
    llama_cpp_python,
    llama_server,
    lmstudio,
    ollama,
    openai,
    vllm,
)


def detect_kind(http: HttpClient) -> tuple[ServerKind, dict[str, Any]]:
    """The server kind from endpoints only one kind has, and what they said.

    llama-server: ``/props``; Ollama: ``/api/version``; vLLM: ``/version``; LM Studio:
    ``/api/v0/models``; llama-cpp-python: the title of ``/openapi.json``; else any ``/v1/models``.
    """
    # The first request tells a dead server apart from a live one (one retry).
    props = http.probe("/props")
    if isinstance(props, dict) and (
        "total_slots" in props or "default_generation_settings" in props
    ):
        return "llama-server", {"props": props}
    version = http.probe("/api/version")
    if isinstance(version, dict) and "version" in version:
        return "ollama", {"version": version}
    version = http.probe("/version")
    if isinstance(version, dict) and "version" in version:
        return "vllm", {"version": version}
    lmstudio_models = http.probe("/api/v0/models")
    if isinstance(lmstudio_models, dict) and isinstance(lmstudio_models.get("data"), list):
        return "lmstudio", {"models": lmstudio_models}
    openapi = http.probe("/openapi.json")
    if isinstance(openapi, dict) and "llama.cpp Python" in str(
        openapi.get("info", {}).get("title")
    ):
        return "llama-cpp-python", {"openapi": openapi}
    models = http.probe("/v1/models")
    if isinstance(models, dict) and isinstance(models.get("data"), list):
        return "openai", {"models": models}
    raise ServerError(
        f"{http.root} answers HTTP but is no server simonsca knows (no /props, /api/version, "
        "/version, /api/v0/models or /v1/models); give the server's root URL"
    )


def describe_server(http: HttpClient, name: str | None, *, n_ctx: int | None = None) -> ServerFacts:
    """Detect the server kind and record what it serves for ``name`` (or its only model)."""
    kind, seen = detect_kind(http)
    if kind == "llama-server":
        return llama_server.describe(http, seen["props"], name, n_ctx=n_ctx)
    if kind == "vllm":
        return vllm.describe(http, seen["version"], name, n_ctx=n_ctx)
    if kind == "ollama":
        return ollama.describe(http, seen["version"], name, n_ctx=n_ctx)
    if kind == "lmstudio":
        return lmstudio.describe(http, seen["models"], name, n_ctx=n_ctx)
    if kind == "llama-cpp-python":
        return llama_cpp_python.describe(http, seen["openapi"], name, n_ctx=n_ctx)
    return openai.describe(http, name, n_ctx=n_ctx)

"""A model given as a URL: ``http://host:port[/v1][#name]`` wherever a GGUF path is accepted.

:func:`open_served_model` finds out which server answers there (llama-server: ``/props``;
Ollama: ``/api/version``; vLLM: ``/version``; LM Studio: ``/api/v0/models``; llama-cpp-python:
the title of ``/openapi.json``; else any ``/v1/models``), records what it serves and returns a
:class:`~simonsca.models.openai_http.ServedModel`.

``#name`` picks one model (or, on llama-server, one LoRA adapter) among those the server serves;
the same spelling works on the command line and in the pytest plugin. Without it the server must
serve exactly one model (LM Studio: exactly one loaded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from simonsca.errors import ConfigError
from simonsca.models.openai_http import (
    HttpClient,
    ServedModel,
    ServerError,
    ServerFacts,
    ServerKind,
    error_message,
)


def is_model_url(text: str) -> bool:
    """Whether a model argument names a server rather than a file."""
    return text.strip().lower().startswith(("http://", "https://"))


def parse_model_url(text: str) -> tuple[str, str | None]:
    """``(root, name)`` of ``URL#name``: the root without a trailing ``/`` or ``/v1`` (each
    server kind adds its own paths), and the percent-decoded name, or ``None``."""
    text = text.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"model URL {text!r} is not http(s)://host[:port][/v1][#name]; "
            "give the server's address, e.g. http://127.0.0.1:8080"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"model URL {text!r} has a bad port number") from None
    if parts.query:
        raise ConfigError(f"model URL {text!r} has a query (?...); pick a model with #name")
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v1")
    root = f"{parts.scheme}://{parts.netloc}{path}"
    name = unquote(parts.fragment) if parts.fragment else None
    return root, name


def open_served_model(
    url: str,
    *,
    concurrency: int | None = None,
    timeout: float = 600.0,
    chat_template: str | None = None,
    n_ctx: int | None = None,
) -> ServedModel:
    """Connect to the server at ``url``, find out what it is and serves, and return the model.

    ``concurrency``: requests in flight (default: llama-server's slot count, 4 for vLLM, else
    1). ``timeout``: seconds to wait for one answer. ``chat_template``: a fallback template name
    rendered here in chat mode (otherwise the server's own template is used). ``n_ctx``: the
    context where the server does not report one (Ollama: sent as ``num_ctx``; llama-cpp-python:
    a cap on the probed value). Raises a one-line :class:`~simonsca.errors.SimonscaError`.
    """
    if timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    if n_ctx is not None and n_ctx < 16:
        raise ConfigError(f"n_ctx must be >= 16 tokens, got {n_ctx}")
    root, name = parse_model_url(url)
    http = HttpClient(root, timeout=timeout)
    try:
        facts = describe_server(http, name, n_ctx=n_ctx)
        return ServedModel(
            http,
            facts,
            url=url.strip(),
            concurrency=concurrency if concurrency is not None else default_concurrency(facts),
            chat_template=chat_template,
        )
    except BaseException:
        http.close()
        raise


# ---------------------------------------------------------------------------------------------
# Startup: which server is this, and what does it serve?


def _detect_kind(http: HttpClient) -> tuple[ServerKind, dict[str, Any]]:
    """The server kind from endpoints only one kind has, and what they said."""
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
    lmstudio = http.probe("/api/v0/models")
    if isinstance(lmstudio, dict) and isinstance(lmstudio.get("data"), list):
        return "lmstudio", {"models": lmstudio}
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


def _pick(root: str, ids: Sequence[str], name: str | None, aliases: Mapping[str, str]) -> str:
    """The served model id that ``name`` picks (or the only one)."""
    if name is None:
        if len(ids) == 1:
            return ids[0]
        listing = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
        if not ids:
            raise ServerError(f"{root} serves no model; load one first")
        raise ServerError(f"{root} serves {len(ids)} models ({listing}); pick one with URL#name")
    if name in aliases:
        return aliases[name]
    listing = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
    raise ServerError(f"model {name!r} is not served at {root}; it serves: {listing}")


def _stem_aliases(ids: Sequence[str]) -> dict[str, str]:
    """Each id, its basename and its basename without ``.gguf`` all name it."""
    aliases: dict[str, str] = {}
    for model_id in ids:
        base = model_id.replace("\\", "/").rsplit("/", 1)[-1]
        for alias in (model_id, base, base.removesuffix(".gguf")):
            aliases.setdefault(alias, model_id)
    return aliases


def _model_ids(http: HttpClient) -> list[str]:
    listing = http.json("GET", "/v1/models")
    return [str(m["id"]) for m in listing.get("data", []) if isinstance(m, dict) and "id" in m]


def _llama_cpp_python_context(http: HttpClient, model: str) -> int | None:
    """llama-cpp-python reports no n_ctx; an over-long prompt's refusal states it (the length
    check runs before any decoding, so the probe costs tokenization only)."""
    unit = " x" * 64
    per_unit = max(1, len(http.json("POST", "/extras/tokenize", {"input": unit})["tokens"]) - 1)
    target = 1 << 20  # no llama-cpp-python context is this long (2 MB of text, ~1 s)
    body = {"model": model, "prompt": unit * (target // per_unit + 1), "max_tokens": 1}
    response = http.request("POST", "/v1/completions", body)
    match = re.search(r"maximum context length is (\d+)", error_message(response))
    return int(match.group(1)) if match else None


def describe_server(http: HttpClient, name: str | None, *, n_ctx: int | None = None) -> ServerFacts:
    """Detect the server kind and record what it serves for ``name`` (or its only model)."""
    kind, seen = _detect_kind(http)
    root = http.root
    if kind == "llama-server":
        props = seen["props"]
        ids = _model_ids(http)
        adapters = http.probe("/lora-adapters") or []
        aliases = _stem_aliases(ids)
        model_path = str(props.get("model_path") or "")
        if model_path and ids:
            aliases.update({k: ids[0] for k in _stem_aliases([model_path])})
        adapter_alias = _stem_aliases([str(a.get("path", "")) for a in adapters])
        # The base model: every adapter explicitly at scale 0 (the server applies them all by
        # default); an adapter's name: that one at scale 1.
        lora: tuple[tuple[int, float], ...] = tuple((int(a["id"]), 0.0) for a in adapters)
        if name is not None and name not in aliases and name in adapter_alias:
            chosen = adapter_alias[name]
            lora = tuple(
                (int(a["id"]), 1.0 if str(a.get("path")) == chosen else 0.0) for a in adapters
            )
            name = None
        elif name is not None and name not in aliases:
            everything = ids + [f"{a.get('path')} (LoRA)" for a in adapters]
            _pick(root, everything, name, {})  # raises, listing models and adapters
        model = _pick(root, ids, name, aliases)
        settings = props.get("default_generation_settings") or {}
        context = settings.get("n_ctx") or props.get("n_ctx")
        return ServerFacts(
            kind=kind,
            root=root,
            model=model,
            context_length=int(context) if context else n_ctx,
            version=str(props.get("build_info") or "") or None,
            chat_template=str(props.get("chat_template") or "") or None,
            slots=int(props.get("total_slots") or 1),
            adapters=tuple({"id": a.get("id"), "path": a.get("path")} for a in adapters),
            lora=lora,
            bos_text=str(props.get("bos_token") or "") or None,
            details={"model_path": model_path},
        )
    if kind == "vllm":
        listing = http.json("GET", "/v1/models").get("data", [])
        ids = [str(m["id"]) for m in listing]
        model = _pick(root, ids, name, _stem_aliases(ids))
        entry = next(m for m in listing if str(m["id"]) == model)
        context = entry.get("max_model_len")
        return ServerFacts(
            kind=kind,
            root=root,
            model=model,
            context_length=int(context) if context else n_ctx,
            version=str(seen["version"]["version"]),
            details={"root": entry.get("root"), "parent": entry.get("parent")},
        )
    if kind == "ollama":
        tags = http.json("GET", "/api/tags").get("models", [])
        ids = [str(m.get("name") or m.get("model")) for m in tags]
        aliases = {i: i for i in ids} | {i.removesuffix(":latest"): i for i in ids}
        model = _pick(root, ids, name, aliases)
        entry = next(m for m in tags if str(m.get("name") or m.get("model")) == model)
        show = http.json("POST", "/api/show", {"model": model})
        info = show.get("model_info") or {}
        trained = next((v for k, v in info.items() if k.endswith(".context_length")), None)
        context = n_ctx or min(int(trained or 4096), 4096)
        return ServerFacts(
            kind=kind,
            root=root,
            model=model,
            context_length=context,
            version=str(seen["version"]["version"]),
            chat_template=str(show.get("template") or "") or None,
            digest=str(entry.get("digest") or "") or None,
            details=dict(show.get("details") or {}) | {"n_ctx_train": trained},
        )
    if kind == "lmstudio":
        listing = [m for m in seen["models"]["data"] if m.get("type") in ("llm", "vlm", None)]
        ids = [str(m["id"]) for m in listing]
        loaded = [str(m["id"]) for m in listing if m.get("state") == "loaded"]
        if name is None and len(loaded) == 1:
            name = loaded[0]
        model = _pick(root, ids, name, {i: i for i in ids})
        entry = next(m for m in listing if str(m["id"]) == model)
        context = n_ctx or entry.get("max_context_length")
        return ServerFacts(
            kind=kind,
            root=root,
            model=model,
            context_length=int(context) if context else None,
            details={
                k: entry.get(k)
                for k in ("publisher", "arch", "compatibility_type", "quantization", "state")
            },
        )
    ids = _model_ids(http)
    model = _pick(root, ids, name, _stem_aliases(ids))
    if kind == "llama-cpp-python":
        probed = _llama_cpp_python_context(http, model)
        context = min(probed, n_ctx) if probed and n_ctx else probed or n_ctx
        version = str(seen["openapi"].get("info", {}).get("version") or "") or None
        return ServerFacts(
            kind=kind, root=root, model=model, context_length=context, version=version
        )
    return ServerFacts(kind=kind, root=root, model=model, context_length=n_ctx)


def default_concurrency(facts: ServerFacts) -> int:
    """Requests in flight when the user does not say: llama-server's slot count, 4 for vLLM
    (it batches continuously but reports no limit), 1 elsewhere."""
    if facts.kind == "llama-server":
        return max(1, facts.slots or 1)
    if facts.kind == "vllm":
        return 4
    return 1


__all__ = [
    "default_concurrency",
    "describe_server",
    "is_model_url",
    "open_served_model",
    "parse_model_url",
]

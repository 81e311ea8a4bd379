"""A model given as a URL, ``http://host:port[/v1][#name]``: telling it from a path, parsing it."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from simonsca.errors import ConfigError


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

"""Which served model ``URL#name`` picks: the ids a server lists and the names that reach them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from simonsca.models.served.client import HttpClient, ServerError


def pick_model(root: str, ids: Sequence[str], name: str | None, aliases: Mapping[str, str]) -> str:
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


def stem_aliases(ids: Sequence[str]) -> dict[str, str]:
    """Each id, its basename and its basename without ``.gguf`` all name it."""
    aliases: dict[str, str] = {}
    for model_id in ids:
        base = model_id.replace("\\", "/").rsplit("/", 1)[-1]
        for alias in (model_id, base, base.removesuffix(".gguf")):
            aliases.setdefault(alias, model_id)
    return aliases


def openai_model_ids(http: HttpClient) -> list[str]:
    """The ids ``GET /v1/models`` lists."""
    listing = http.json("GET", "/v1/models")
    return [str(m["id"]) for m in listing.get("data", []) if isinstance(m, dict) and "id" in m]

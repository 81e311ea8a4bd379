"""What a server reported about the model it serves: the record kept in ``info.served``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ServerKind = Literal["llama-server", "llama-cpp-python", "vllm", "ollama", "lmstudio", "openai"]


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
        ports). Weaker than a file hash: a different file served under the same id and version
        looks the same."""
        fields = self.as_dict()
        fields.pop("url")
        blob = json.dumps(fields, sort_keys=True, default=str)
        return "served:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()

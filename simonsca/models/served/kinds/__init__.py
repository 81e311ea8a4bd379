"""One module per server kind: what the server reports at startup (``describe``) and what its
requests and replies look like (its :class:`~simonsca.models.served.kinds.openai.Dialect`)."""

from collections.abc import Mapping

from simonsca.models.served.facts import ServerKind
from simonsca.models.served.kinds.llama_cpp_python import LlamaCppPythonDialect
from simonsca.models.served.kinds.llama_server import LlamaServerDialect
from simonsca.models.served.kinds.lmstudio import LMStudioDialect
from simonsca.models.served.kinds.ollama import OllamaDialect
from simonsca.models.served.kinds.openai import Dialect
from simonsca.models.served.kinds.vllm import VLLMDialect

DIALECTS: Mapping[ServerKind, type[Dialect]] = {
    "llama-server": LlamaServerDialect,
    "llama-cpp-python": LlamaCppPythonDialect,
    "vllm": VLLMDialect,
    "ollama": OllamaDialect,
    "lmstudio": LMStudioDialect,
    "openai": Dialect,
}

__all__ = [
    "DIALECTS",
    "Dialect",
    "LMStudioDialect",
    "LlamaCppPythonDialect",
    "LlamaServerDialect",
    "OllamaDialect",
    "VLLMDialect",
]

"""What each server kind offers simonsca: the support table (the README's comes from here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from simonsca.models.served.facts import ServerKind


@dataclass(frozen=True)
class ServerSupport:
    """What one server kind offers simonsca (the table in the README comes from here)."""

    generate: str
    teacher_forced: str | None  # how, or None when refused
    tokenizer: str
    chat: str
    default_concurrency: str


SUPPORT: Mapping[ServerKind, ServerSupport] = {
    "llama-server": ServerSupport(
        "POST /completion, token-id prompt",
        "one request per answer token: logit_bias forces it, n_probs gives its raw log-prob",
        "POST /tokenize (with pieces)",
        "POST /apply-template, then raw completion",
        "total_slots from /props",
    ),
    "llama-cpp-python": ServerSupport(
        "POST /v1/completions",
        "echo + logprobs, one request per answer (slow: ~0.4 s/token with a 262k vocabulary)",
        "POST /extras/tokenize",
        "POST /v1/chat/completions (GGUF template, else llama-2 format)",
        "1 (the server decodes one request at a time; simonsca serialises its requests)",
    ),
    "vllm": ServerSupport(
        "POST /v1/completions",
        "prompt_logprobs, one request per answer",
        "POST /tokenize",
        "POST /v1/chat/completions",
        "4 (the server does not say)",
    ),
    "ollama": ServerSupport(
        "POST /api/generate, raw: true",
        None,
        "none: UTF-8 bytes bound the tokens",
        "POST /api/chat",
        "1 (OLLAMA_NUM_PARALLEL is not reported)",
    ),
    "lmstudio": ServerSupport(
        "POST /api/v0/completions",
        None,
        "none: UTF-8 bytes bound the tokens",
        "POST /api/v0/chat/completions",
        "1",
    ),
    "openai": ServerSupport(
        "POST /v1/completions",
        None,
        "none: UTF-8 bytes bound the tokens",
        "POST /v1/chat/completions",
        "1",
    ),
}


def support_table() -> str:
    """What each server kind supports, as a Markdown table (for the README)."""
    lines = [
        "| server | generation | teacher-forced | tokenizer | chat mode | concurrency default |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, s in SUPPORT.items():
        lines.append(
            f"| {kind} | {s.generate} | {s.teacher_forced or 'refused (one-line error)'} | "
            f"{s.tokenizer} | {s.chat} | {s.default_concurrency} |"
        )
    return "\n".join(lines)

"""The evaluation options, declared once for both the pytest plugin and the ``simonsca`` CLI.

As pytest-benchmark does for its display options: one table, so the two can never drift.
Each entry is (flag, settings key, argparse keyword arguments); the settings key is also the
``[tool.simonsca]`` key. Pure data -- importing this module imports nothing else.
"""

from __future__ import annotations

from typing import Any

Option = tuple[str, str, dict[str, Any]]

MODEL_OPTIONS: tuple[Option, ...] = (
    (
        "--base-model",
        "base_model",
        {"metavar": "GGUF", "help": "base model GGUF (default: the built-in Gemma 3 270M)"},
    ),
    (
        "--merged-model",
        "merged_model",
        {"metavar": "GGUF", "help": "finetuned (merged) model GGUF"},
    ),
    (
        "--merged-from-lora",
        "merged_from_lora",
        {
            "metavar": "GGUF",
            "help": "the adapter merged into --merged-model: also check that base + adapter "
            "gives the same answers",
        },
    ),
)

EVAL_OPTIONS: tuple[Option, ...] = (
    (
        "--lora",
        "lora",
        {
            "metavar": "GGUF",
            "help": "LoRA adapter GGUF applied at load; without a merged model: compare base with base + adapter",
        },
    ),
    (
        "--eval-size",
        "eval_size",
        {"type": int, "metavar": "N", "help": "number of held-out items (default 24)"},
    ),
    (
        "--eval-seed",
        "eval_seed",
        {"type": int, "metavar": "S", "help": "first eval seed, >= 1000000 (default 1000000)"},
    ),
    (
        "--eval-family",
        "eval_family",
        {"metavar": "NAME", "help": "v5, v5-small (default), next-small or generalization"},
    ),
    (
        "--prompt-mode",
        "prompt_mode",
        {
            "choices": ("raw", "chat", "both"),
            "help": "raw training text (default), the model's chat template, or both",
        },
    ),
    (
        "--chat-template",
        "chat_template",
        {
            "choices": ("gemma", "llama3", "chatml"),
            "help": "fallback chat template for a GGUF without one",
        },
    ),
    (
        "--n-ctx",
        "n_ctx",
        {"type": int, "metavar": "N", "help": "context window in tokens (default 2048)"},
    ),
    (
        "--n-threads",
        "n_threads",
        {"type": int, "metavar": "N", "help": "CPU threads for llama.cpp (default: all)"},
    ),
    (
        "--n-gpu-layers",
        "n_gpu_layers",
        {"type": int, "metavar": "N", "help": "layers to offload to a GPU (default 0)"},
    ),
)

GATE_OPTIONS: tuple[Option, ...] = (
    (
        "--min-exact-gain",
        "min_exact_gain",
        {"metavar": "X", "help": "fail unless merged - base exact match >= X (0.05 or 5%%)"},
    ),
    (
        "--min-cell-gain",
        "min_cell_gain",
        {"metavar": "X", "help": "fail unless merged - base cell accuracy >= X"},
    ),
    (
        "--max-family-regression",
        "max_family_regression",
        {"metavar": "X", "help": "fail when one family's cell accuracy drops by more than X"},
    ),
    (
        "--min-parse-rate",
        "min_parse_rate",
        {
            "type": float,
            "metavar": "X",
            "help": "fail when a smaller share of merged answers parses",
        },
    ),
)

REPORT_OPTIONS: tuple[Option, ...] = (
    (
        "--reports-dir",
        "reports_dir",
        {"metavar": "DIR", "help": "where reports go (default: reports/)"},
    ),
)


def add_options(
    add: Any, options: tuple[Option, ...], *, flag_prefix: str = "", dest_prefix: str = ""
) -> None:
    """Register ``options`` with an argparse ``add_argument`` or pytest ``addoption`` callable."""
    for flag, key, kwargs in options:
        add(
            flag.replace("--", "--" + flag_prefix, 1),
            dest=dest_prefix + key,
            default=None,
            **kwargs,
        )

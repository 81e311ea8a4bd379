"""simonsca: tells whether an LLM finetune really learned the SimonsCA1 cellular automaton.

The public names below load on first use, so that the pytest plugin (registered for every
pytest run in an environment with simonsca installed) costs nothing until it is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "Item": "simonsca.tasks",
    "Task": "simonsca.tasks",
    "Symbols": "simonsca.tasks",
    "PromptMode": "simonsca.tasks",
    "step": "simonsca.rules",
    "neighbor_counts": "simonsca.rules",
    "render_grid": "simonsca.codec",
    "parse_answer": "simonsca.codec",
    "make_item": "simonsca.dataset",
    "make_eval_item": "simonsca.dataset",
    "eval_items": "simonsca.dataset",
    "LlamaCppModel": "simonsca.models",
    "generate": "simonsca.runner",
    "teacher_force": "simonsca.runner",
    "score_item": "simonsca.scoring",
    "forced_score": "simonsca.likelihood",
    "summarize": "simonsca.summary",
    "Verdict": "simonsca.verdict",
    "Settings": "simonsca.settings",
    "CHECKS": "simonsca.checks",
    "EvalRecord": "simonsca.record",
    "run_suite": "simonsca.suite",
    "SimonscaError": "simonsca.errors",
}

__all__ = ["__version__", *sorted(_PUBLIC)]  # noqa: PLE0604 -- names load lazily


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'simonsca' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

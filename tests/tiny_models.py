"""The tiny real GGUF fixtures (fixtures/tiny/), and the module that writes them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "make_tiny_models", ROOT / "fixtures" / "make_tiny_models.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_tiny_models", mod)
    spec.loader.exec_module(mod)
    return mod


tiny = _load_generator()
BASE = tiny.TINY_DIR / tiny.BASE_NAME
LORA = tiny.TINY_DIR / tiny.LORA_NAME

"""Shared fixtures: the real Gemma 3 270M GGUF, loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    from simonsca.default_models import gemma_base_path

    return gemma_base_path()


@pytest.fixture(scope="session")
def gemma(gemma_path: Path) -> Iterator[object]:
    from simonsca.models import LlamaCppModel

    model = LlamaCppModel(gemma_path, n_ctx=1024)
    yield model
    model.close()


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A tiny real llama GGUF (random weights) from fixtures/tiny: loads in milliseconds."""
    from tiny_models import BASE

    return Path(BASE)

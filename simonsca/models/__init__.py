"""Model backends behind one small protocol (:class:`Model`), and baselines beside them."""

from simonsca.models.base import Baseline, Completion, FinishReason, Model, ModelInfo, ModelSpec
from simonsca.models.baselines import (
    BASELINES,
    AllDeadBaseline,
    CopyInputBaseline,
    MostCommonCountBaseline,
    OracleBaseline,
)
from simonsca.models.llamacpp import LlamaCppModel  # llama_cpp itself is imported on load
from simonsca.models.open import open_model, opened  # a backend is imported when one is opened

__all__ = [
    "BASELINES",
    "AllDeadBaseline",
    "Baseline",
    "Completion",
    "CopyInputBaseline",
    "FinishReason",
    "LlamaCppModel",
    "Model",
    "ModelInfo",
    "ModelSpec",
    "MostCommonCountBaseline",
    "OracleBaseline",
    "open_model",
    "opened",
]

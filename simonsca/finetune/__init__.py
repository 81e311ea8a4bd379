"""Train a LoRA adapter that teaches a GGUF base model the SimonsCA1 puzzles.

``python -m simonsca.finetune --out DIR`` generates items with simonsca's v5 generator on seeds
disjoint from every evaluation range, trains a LoRA with torch/transformers/peft (the ``train``
extra) on the GGUF base itself, and exports a GGUF adapter plus ``training_record.json`` and
``loss.png``. The torch-free parts (item selection, loss masks, the record schema) live in
:mod:`simonsca.finetune.data` and :mod:`simonsca.finetune.record`.
"""

from simonsca.finetune.data import (
    EVAL_SEED_START,
    IGNORE_INDEX,
    TRAIN_SEED_RANGE,
    Example,
    ItemFilter,
    build_example,
    training_items,
)

__all__ = [
    "EVAL_SEED_START",
    "IGNORE_INDEX",
    "TRAIN_SEED_RANGE",
    "Example",
    "ItemFilter",
    "build_example",
    "training_items",
]

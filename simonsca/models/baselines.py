"""Reference predictors that answer from the item itself: floors and a ceiling for the scores.

Each has ``answer(item) -> str`` and runs through :func:`simonsca.runner.evaluate` like a model.
On a neighbour-count item each answers what its name says, written as the count JSON.
"""

from __future__ import annotations

import numpy as np

from simonsca.codec import render_counts, render_grid
from simonsca.models.base import ModelInfo
from simonsca.tasks import Item, Task


class _Baseline:
    name: str = ""

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=f"baseline:{self.name}", path=None, sha256=None)

    def answer(self, item: Item) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _dead(item: Item) -> np.ndarray:
    return np.zeros(item.grid.shape, dtype=bool)


class AllDeadBaseline(_Baseline):
    """Every cell dead; on a count item every count 0."""

    name = "all-dead"

    def answer(self, item: Item) -> str:
        if item.task is Task.COUNT:
            return render_counts(np.zeros(item.grid.shape, dtype=int))
        return render_grid(_dead(item), item.symbols)


class CopyInputBaseline(_Baseline):
    """The input unchanged (a still life); on a count item the input's cells as counts 0/1."""

    name = "copy-input"

    def answer(self, item: Item) -> str:
        if item.task is Task.COUNT:
            return render_counts(item.grid.astype(int))
        return render_grid(item.grid, item.symbols)


class MostCommonCountBaseline(_Baseline):
    """Every count 4 (the mode of 8 fair coin flips); on a next-generation item all dead."""

    name = "most-common-count"

    def answer(self, item: Item) -> str:
        if item.task is Task.COUNT:
            return render_counts(np.full(item.grid.shape, 4, dtype=int))
        return render_grid(_dead(item), item.symbols)


class OracleBaseline(_Baseline):
    """The exact expected answer: a check that scoring gives 100%."""

    name = "oracle"

    def answer(self, item: Item) -> str:
        return item.output


BASELINES: dict[str, type[_Baseline]] = {
    cls.name: cls
    for cls in (AllDeadBaseline, CopyInputBaseline, MostCommonCountBaseline, OracleBaseline)
}

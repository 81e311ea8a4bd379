"""Per-item scores: how one answer did on one item (aggregates: :mod:`simonsca.summary`).

One answer is scored against its :class:`~simonsca.tasks.Item` as

* ``parse_ok`` -- the text held a grid (or count matrix) at all;
* ``shape_ok`` -- with the expected number of rows and columns;
* ``exact`` -- every cell right (so the shape is right too);
* ``cell_accuracy`` -- right cells over the cells of *either* grid. The answer (R rows x C
  columns) is laid on the expected grid (r x c) at the top-left corner. A cell is right when
  both grids have it and the values agree (the same live/dead state, or the same count). The
  denominator is the union of the two rectangles, ``r*c + R*C - min(r, R)*min(c, C)``: every
  expected cell the answer lacks and every extra cell the answer adds counts wrong, whatever
  its value. So an exact answer scores 1.0, only an exact answer does, and padding cannot help:
  the expected 7x6 grid plus 20 extra dead rows and columns scores 42/(27*26) = 0.060. An
  unparsable answer scores 0.0;
* ``live_f1`` -- next-generation task only (``None`` for counts): F1 of the answer's live cells
  against the expected live cells, by position, ``2*TP / (2*TP + FP + FN)``. Live cells the answer
  draws outside the expected area are false positives, expected live cells it does not cover are
  false negatives. F1 has no true negatives by definition, so dead cells -- including dead cells
  the answer adds or leaves out -- never change it: a wrong shape padded with dead cells keeps the
  F1 of its live pattern (shape errors are what ``shape_ok``, ``exact`` and ``cell_accuracy``
  measure). Changing the shape can never *raise* F1 above writing dead cells there. When neither
  grid has a live cell F1 is 1.0. An unparsable answer scores 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from simonsca import codec
from simonsca.tasks import Item, Task


@dataclass(frozen=True)
class ItemScore:
    """How one answer did on one item."""

    seed: int
    family: str
    facets: tuple[tuple[str, str], ...]  # (facet, value) pairs in FACETS order
    task: str  # "next" or "count"
    parse_ok: bool
    shape_ok: bool
    exact: bool
    cell_accuracy: float
    live_f1: float | None  # None for the count task
    reason: str | None  # why it is not exact: the parse reason, a shape or cell-count note

    @property
    def facet_dict(self) -> dict[str, str]:
        return dict(self.facets)

    def facet(self, name: str) -> str:
        return self.facet_dict[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "family": self.family,
            "facets": self.facet_dict,
            "task": self.task,
            "parse_ok": self.parse_ok,
            "shape_ok": self.shape_ok,
            "exact": self.exact,
            "cell_accuracy": self.cell_accuracy,
            "live_f1": self.live_f1,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemScore:
        return cls(
            seed=int(data["seed"]),
            family=str(data["family"]),
            facets=tuple((str(k), str(v)) for k, v in dict(data["facets"]).items()),
            task=str(data["task"]),
            parse_ok=bool(data["parse_ok"]),
            shape_ok=bool(data["shape_ok"]),
            exact=bool(data["exact"]),
            cell_accuracy=float(data["cell_accuracy"]),
            live_f1=None if data["live_f1"] is None else float(data["live_f1"]),
            reason=data["reason"],
        )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def score_answer(item: Item, value: np.ndarray | None, reason: str | None = None) -> ItemScore:
    """Score an already-parsed answer (``None`` with a ``reason`` when it did not parse).

    Shapes are rows x columns: ``"shape 5x4, expected 5x5"`` means 5 rows of 4 cells.
    """
    ordered = tuple(item.family_facets.items())  # in the order summary.FACETS names them

    def make(
        *,
        parse_ok: bool,
        shape_ok: bool,
        exact: bool,
        cell_accuracy: float,
        live_f1: float | None,
        reason: str | None,
    ) -> ItemScore:
        return ItemScore(
            seed=item.seed,
            family=item.family,
            facets=ordered,
            task=item.task.value,
            parse_ok=parse_ok,
            shape_ok=shape_ok,
            exact=exact,
            cell_accuracy=cell_accuracy,
            live_f1=live_f1,
            reason=reason,
        )

    is_next = item.task == Task.NEXT
    if value is None:
        return make(
            parse_ok=False,
            shape_ok=False,
            exact=False,
            cell_accuracy=0.0,
            live_f1=0.0 if is_next else None,
            reason=reason or "no answer found",
        )
    expected = np.asarray(item.expected)
    answer = np.asarray(value)
    if answer.ndim < 2:
        answer = answer.reshape((1, -1)) if answer.size else answer.reshape((0, 0))
    if answer.ndim > 2:
        # Not a grid at all; nothing lines up with the expected cells.
        return make(
            parse_ok=True,
            shape_ok=False,
            exact=False,
            cell_accuracy=0.0,
            live_f1=0.0 if is_next else None,
            reason=f"shape {_shape_text(answer.shape)}, expected {_shape_text(expected.shape)}",
        )
    shape_ok = answer.shape == expected.shape
    rows = min(answer.shape[0], expected.shape[0])
    cols = min(answer.shape[1], expected.shape[1])
    if is_next:
        want = expected.astype(bool)
        got = answer.astype(bool)
    else:
        want = expected
        got = answer
    overlap_right = int(np.count_nonzero(got[:rows, :cols] == want[:rows, :cols]))
    total = int(want.size)
    # Union of the two top-left-aligned rectangles: expected cells the answer lacks and extra
    # cells it adds both count wrong (see the module docstring).
    union = total + int(got.size) - rows * cols
    cell_accuracy = overlap_right / union if union else 1.0
    exact = shape_ok and overlap_right == total
    live_f1: float | None = None
    if is_next:
        tp = int(np.count_nonzero(got[:rows, :cols] & want[:rows, :cols]))
        fp = int(np.count_nonzero(got)) - tp
        fn = int(np.count_nonzero(want)) - tp
        live_f1 = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    if not shape_ok:
        why: str | None = (
            f"shape {_shape_text(answer.shape)}, expected {_shape_text(expected.shape)}"
        )
    elif not exact:
        why = f"{total - overlap_right} of {total} cells wrong"
    else:
        why = None
    return make(
        parse_ok=True,
        shape_ok=shape_ok,
        exact=exact,
        cell_accuracy=cell_accuracy,
        live_f1=live_f1,
        reason=why,
    )


def score_item(item: Item, text: str) -> ItemScore:
    """Parse a model's answer text (tolerantly, see :mod:`simonsca.codec`) and score it."""
    return score_text(item, text)[1]


def score_text(item: Item, text: str) -> tuple[codec.ParsedAnswer, ItemScore]:
    """What the parser read of an answer text, and its score (parsed once).

    When the parser had to cut an over-long text (see :func:`simonsca.codec.parse_answer`) and
    the answer is not exact, the reason says so: ``"shape 1x900, expected 6x8 (answer cut at
    ...)"``.
    """
    parsed = codec.parse_answer(text, item)
    score = score_answer(item, parsed.value, parsed.reason)
    cut = next((note for note in parsed.notes if note.startswith(codec.NOTE_CUT)), None)
    if cut is not None and not score.exact:
        score = replace(score, reason=f"{score.reason} ({cut})")
    return parsed, score

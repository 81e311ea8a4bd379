"""Training items and examples for the LoRA recipe -- no torch needed here.

Training items come from simonsca's own v5 generator (``simonsca.dataset.make_item``) on seeds
in :data:`TRAIN_SEED_RANGE`, which is disjoint from every evaluation range (evaluation uses seeds
``>= 1_000_000``; the seed's own run used ``0 .. 19_586``). Items can be restricted to small
grids and to one task by filtering the v5 stream; the filter is deterministic, so the same
options always give the same seeds.

An *example* is what the trainer sees: ``prompt tokens + answer tokens`` with labels that are
``IGNORE_INDEX`` on the prompt, so the loss covers exactly the answer (and the ``"\\n\\n"`` that
ends it, which is the stop string at inference).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from simonsca.errors import DatasetError
from simonsca.tasks import Item, Task

# [start, stop): disjoint from the seed's own training run (0..19_586) and from evaluation
# (seeds >= 1_000_000).
TRAIN_SEED_RANGE = range(100_000, 900_000)
EVAL_SEED_START = 1_000_000  # == simonsca.dataset.EVAL_SEED_START (checked by the tests)
IGNORE_INDEX = -100
ANSWER_END = "\n\n"  # what follows every answer in the v5 training file; the stop string


def v5_item_maker() -> Callable[[int], Item]:
    """The generator training items come from: simonsca's v5 ``make_item``."""
    from simonsca.dataset import make_item

    return make_item


@dataclass(frozen=True)
class ItemFilter:
    """Which v5 items the recipe trains on."""

    min_side: int = 5
    max_side: int = 15
    tasks: tuple[Task, ...] = (Task.NEXT, Task.COUNT)

    def __post_init__(self) -> None:
        if not 5 <= self.min_side <= self.max_side <= 15:
            raise DatasetError(
                f"grid sides must satisfy 5 <= min_side <= max_side <= 15 (v5 draws 5..15), "
                f"got {self.min_side}..{self.max_side}"
            )
        if not self.tasks:
            raise DatasetError("choose at least one task (next, count)")

    def accepts(self, item: Item) -> bool:
        return (
            self.min_side <= item.height <= self.max_side
            and self.min_side <= item.width <= self.max_side
            and item.task in self.tasks
        )


def parse_tasks(text: str) -> tuple[Task, ...]:
    """``"next,count"`` -> ``(Task.NEXT, Task.COUNT)``; raises DatasetError on unknown names."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tuple(Task(name) for name in names)
    except ValueError:
        raise DatasetError(f"--tasks takes next and/or count separated by commas, got {text!r}")


def check_seed_start(seed_start: int) -> None:
    """Refuse a first seed outside :data:`TRAIN_SEED_RANGE` (DatasetError)."""
    if seed_start not in TRAIN_SEED_RANGE:
        raise DatasetError(
            f"--seed-start {seed_start} is outside the training range "
            f"[{TRAIN_SEED_RANGE.start}, {TRAIN_SEED_RANGE.stop}); seeds elsewhere overlap "
            "the seed's own v5 run (0..19586) or the evaluation seeds (>= 1000000)"
        )


def training_items(
    seed_start: int,
    item_filter: ItemFilter,
    make_item: Callable[[int], Item] | None = None,
) -> Iterator[Item]:
    """v5 items from ``seed_start`` upwards that pass the filter, in seed order.

    Stops (StopIteration) at the end of :data:`TRAIN_SEED_RANGE`; never yields an eval seed.
    """
    check_seed_start(seed_start)
    make = make_item or v5_item_maker()
    for seed in range(seed_start, TRAIN_SEED_RANGE.stop):
        item = make(seed)
        if item_filter.accepts(item):
            yield item


def answer_text(item: Item) -> str:
    """What the model must produce after the prompt: the answer and the blank line ending it."""
    return item.output + ANSWER_END


@dataclass(frozen=True)
class Example:
    """One tokenised training sample: ids and labels of equal length."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def answer_positions(self) -> list[int]:
        """Positions whose *next* token is an answer token (where logits are needed)."""
        return [i - 1 for i, label in enumerate(self.labels) if label != IGNORE_INDEX]


def build_example(prompt_ids: Sequence[int], answer_ids: Sequence[int]) -> Example:
    """Concatenate prompt and answer ids; labels mask the prompt with IGNORE_INDEX.

    The prompt is tokenised on its own (with BOS, as llama.cpp does at inference) and the answer
    separately (without BOS), so training sees exactly the token boundary the model sees when
    it is asked the raw prompt.
    """
    if not prompt_ids:
        raise DatasetError("empty prompt: the answer must be conditioned on at least one token")
    if not answer_ids:
        raise DatasetError("empty answer: nothing to train on")
    ids = tuple(prompt_ids) + tuple(answer_ids)
    labels = (IGNORE_INDEX,) * len(prompt_ids) + tuple(answer_ids)
    return Example(input_ids=ids, labels=labels)


def pad_batch(
    examples: Sequence[Example], pad_id: int
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Right-pad a batch: (input_ids, attention_mask, labels) as nested lists."""
    width = max(len(e.input_ids) for e in examples)
    ids, mask, labels = [], [], []
    for e in examples:
        pad = width - len(e.input_ids)
        ids.append(list(e.input_ids) + [pad_id] * pad)
        mask.append([1] * len(e.input_ids) + [0] * pad)
        labels.append(list(e.labels) + [IGNORE_INDEX] * pad)
    return ids, mask, labels


def seeds_summary(seeds: Sequence[int]) -> dict[str, object]:
    """Compact, exact record of the seeds used: first, last, count and a hash of the list."""
    import hashlib

    digest = hashlib.sha256(json.dumps(list(seeds)).encode()).hexdigest()
    return {
        "count": len(seeds),
        "first": seeds[0] if seeds else None,
        "last": seeds[-1] if seeds else None,
        "sha256_of_json_list": digest,
    }

"""Deterministic SimonsCA1 items from seeds: the seed's v5 generator, eval families, writers.

Two generators:

* :func:`make_item` reproduces the seed author's v5 ``prepare_train_data.py`` item for item, so
  that the very items a model was trained on can be regenerated (and kept out of eval sets).
* :func:`make_eval_item` draws from :class:`Families` -- wrap flags, generations, other symbols
  and sizes v5 never trained on -- from a seed range disjoint from every training range.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simonsca import rules
from simonsca.atomic import atomic_text_writer
from simonsca.codec import render_counts, render_grid
from simonsca.errors import DatasetError, OutputExistsError
from simonsca.tasks import PROMPT_HEADER, Item, Symbols, Task

#: Evaluation seeds start here; v5 training files use seeds from 0 (at most 50,000 of them).
EVAL_SEED_START = 1_000_000
#: The seed's v5 run stopped at whichever came first: this many items ...
V5_MAX_ITEMS = 50_000
#: ... or this many bytes of ``json.dumps(item)`` summed over items (19,587 items in its log).
V5_MAX_BYTES = 10 * 1024 * 1024
#: The literal sample-start marker the seed handed to llama.cpp's ``finetune --sample-start``.
V5_SAMPLE_START = "<s>"

FORMATS = ("jsonl", "v5", "mlx")


def _instruction(seed: int, flags: list[str]) -> str:
    random.Random(seed + 1000).shuffle(flags)
    return PROMPT_HEADER + "\n" + " ".join(flags)


def _flags(symbols: Symbols, wrap_x: bool, wrap_y: bool, generations: int, task: Task) -> list[str]:
    flags = [f"dead='{symbols.dead}'", f"live='{symbols.live}'"]
    if wrap_x:
        flags.append("wrap_x=True")
    if wrap_y:
        flags.append("wrap_y=True")
    if generations > 1:
        flags.append(f"generation={generations}")
    if task is Task.COUNT:
        flags.append("alive_neighbor_count=True")
    return flags


def _build(
    *,
    seed: int,
    grid: np.ndarray,
    task: Task,
    wrap_x: bool,
    wrap_y: bool,
    generations: int,
    symbols: Symbols,
    generator: str,
) -> Item:
    if task is Task.COUNT:
        expected = rules.neighbor_counts(grid, wrap_x=wrap_x, wrap_y=wrap_y)
        output = render_counts(expected)
    else:
        expected = rules.step(grid, wrap_x=wrap_x, wrap_y=wrap_y, generations=generations)
        output = render_grid(expected, symbols)
    return Item(
        seed=seed,
        task=task,
        wrap_x=wrap_x,
        wrap_y=wrap_y,
        generations=generations,
        symbols=symbols,
        instruction=_instruction(seed, _flags(symbols, wrap_x, wrap_y, generations, task)),
        input=render_grid(grid, symbols),
        output=output,
        generator=generator,
        grid=grid,
        expected=np.asarray(expected),
    )


def v5_grid(seed: int) -> np.ndarray:
    """The input grid of v5 item ``seed`` (height x width, True = live)."""
    rng = random.Random(seed)
    width = rng.randint(5, 15)
    height = rng.randint(5, 15)
    cells = [[rng.choice([".", "*"]) == "*" for _ in range(width)] for _ in range(height)]
    return np.array(cells, dtype=bool)


def v5_shape(seed: int) -> tuple[int, int]:
    """(height, width) of v5 item ``seed``'s grid, without drawing its cells."""
    rng = random.Random(seed)
    width = rng.randint(5, 15)
    return rng.randint(5, 15), width


def _v5_symbols(seed: int) -> Symbols:
    rng = random.Random(seed)
    dead = rng.choice("01")
    live = rng.choice("01")
    while dead == live:
        dead = rng.choice("01")
        live = rng.choice("01")
    row_sep = rng.choice(["\n"])
    cell_sep = rng.choice([","])
    return Symbols(live=live, dead=dead, row_sep=row_sep, cell_sep=cell_sep)


def make_item(seed: int) -> Item:
    """Item ``seed`` exactly as the seed's v5 generator wrote it (see DESIGN.md)."""
    if seed < 0:
        raise DatasetError(f"seed must be >= 0, got {seed}")
    return _build(
        seed=seed,
        grid=v5_grid(seed),
        task=Task.COUNT if seed & 4 == 0 else Task.NEXT,
        wrap_x=True,
        wrap_y=True,
        generations=1,
        symbols=_v5_symbols(seed),
        generator="v5",
    )


@dataclass(frozen=True)
class Families:
    """What the eval generator may draw from; every choice is uniform over its options."""

    name: str
    tasks: tuple[Task, ...] = (Task.NEXT, Task.COUNT)
    wraps: tuple[tuple[bool, bool], ...] = ((True, True),)
    generations: tuple[int, ...] = (1,)
    symbol_pairs: tuple[tuple[str, str], ...] = (("1", "0"), ("0", "1"))  # (live, dead)
    min_side: int = 5
    max_side: int = 15

    def __post_init__(self) -> None:
        if not 1 <= self.min_side <= self.max_side:
            raise DatasetError(
                f"family {self.name!r}: need 1 <= min_side <= max_side, "
                f"got {self.min_side}..{self.max_side}"
            )
        if not self.tasks or not self.wraps or not self.generations or not self.symbol_pairs:
            raise DatasetError(f"family {self.name!r}: every option list needs at least one entry")
        for live, dead in self.symbol_pairs:
            if live == dead or len(live) != 1 or len(dead) != 1:
                raise DatasetError(
                    f"family {self.name!r}: symbols must be two different single characters, "
                    f"got live={live!r} dead={dead!r}"
                )


_ALL_WRAPS = ((True, True), (True, False), (False, True), (False, False))

#: Named eval families. ``v5-small`` is the default: the seed's distribution on 5-8 sided grids,
#: small enough that a 270M model on two CPU cores answers an item in about a second.
PRESETS: dict[str, Families] = {
    "v5": Families(name="v5"),
    "v5-small": Families(name="v5-small", max_side=8),
    "next-small": Families(name="next-small", tasks=(Task.NEXT,), max_side=8),
    "generalization": Families(
        name="generalization",
        wraps=_ALL_WRAPS,
        generations=(1, 2, 3),
        symbol_pairs=(("1", "0"), ("0", "1"), ("*", "."), ("#", "_")),
        min_side=3,
        max_side=20,
    ),
}


def families(name: str) -> Families:
    """Look up a preset by name with a one-line error listing the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown eval family {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None


def make_eval_item(seed: int, fam: Families = PRESETS["v5-small"]) -> Item:
    """A held-out item drawn from ``fam``; deterministic in (seed, fam)."""
    rng = random.Random(f"simonsca-eval/{fam.name}/{seed}")
    task = rng.choice(fam.tasks)
    wrap_x, wrap_y = rng.choice(fam.wraps)
    generations = rng.choice(fam.generations) if task is Task.NEXT else 1
    live, dead = rng.choice(fam.symbol_pairs)
    width = rng.randint(fam.min_side, fam.max_side)
    height = rng.randint(fam.min_side, fam.max_side)
    grid = np.array([[rng.random() < 0.5 for _ in range(width)] for _ in range(height)], dtype=bool)
    return _build(
        seed=seed,
        grid=grid,
        task=task,
        wrap_x=wrap_x,
        wrap_y=wrap_y,
        generations=generations,
        symbols=Symbols(live=live, dead=dead),
        generator=f"eval:{fam.name}",
    )


def v5_items(count: int | None = None, seed_start: int = 0) -> Iterator[Item]:
    """v5 items from ``seed_start``; without ``count``, the seed's own budget (50,000 / 10 MiB)."""
    total = 0
    seed = seed_start
    produced = 0
    while count is None or produced < count:
        item = make_item(seed)
        if count is None:
            total += len(json.dumps(v5_record(item)))
            if produced >= V5_MAX_ITEMS or total > V5_MAX_BYTES:
                return
        yield item
        produced += 1
        seed += 1


def eval_items(
    count: int, seed_start: int = EVAL_SEED_START, fam: Families = PRESETS["v5-small"]
) -> list[Item]:
    """``count`` held-out items: see :func:`iter_eval_items`."""
    return list(iter_eval_items(count, seed_start, fam))


#: Eval items made (and checked against every v5 grid) at a time.
EVAL_BATCH = 100_000


def iter_eval_items(
    count: int, seed_start: int = EVAL_SEED_START, fam: Families = PRESETS["v5-small"]
) -> Iterator[Item]:
    """``count`` held-out items from the seeds ``seed_start``, ``seed_start + 1``, ..., in seed
    order, skipping any whose input grid equals the grid of a v5 training item (seeds 0-49,999;
    small grids do collide: eval seed 1,014,305's 5x5 grid is v5 item 12,509's). Any prefix is
    the same for every ``count``, so a run with more items only adds items. Made a batch at a
    time, so a large ``count`` streams."""
    if seed_start < EVAL_SEED_START:
        raise DatasetError(
            f"eval seeds must start at {EVAL_SEED_START} or above (below are training seeds), "
            f"got --eval-seed {seed_start}"
        )
    made, seed = 0, seed_start
    while made < count:
        batch = [make_eval_item(s, fam) for s in range(seed, seed + min(EVAL_BATCH, count))]
        seed += len(batch)
        seen_in_training = training_collisions(batch, range(V5_MAX_ITEMS))
        for item in batch:
            if item.seed in seen_in_training:
                continue
            yield item
            made += 1
            if made == count:
                return


def _grid_key(grid: np.ndarray) -> tuple[tuple[int, ...], bytes]:
    return grid.shape, np.packbits(grid).tobytes()


def training_collisions(items: Sequence[Item], train_seeds: Iterable[int]) -> set[int]:
    """Seeds of the ``items`` whose input grid equals the grid of a v5 training item."""
    wanted: dict[tuple[tuple[int, ...], bytes], list[int]] = {}
    for item in items:
        wanted.setdefault(_grid_key(item.grid), []).append(item.seed)
    sides = {shape for shape, _ in wanted}
    if not any(5 <= h <= 15 and 5 <= w <= 15 for h, w in sides):
        return set()  # v5 grids are 5-15 on both sides: nothing can collide
    hits: set[int] = set()
    for seed in train_seeds:
        if v5_shape(seed) not in sides:
            continue  # cheap: only grids of a shape some eval item has can collide
        hits.update(wanted.get(_grid_key(v5_grid(seed)), ()))
    return hits


def assert_held_out(items: Sequence[Item], train_seeds: Iterable[int]) -> None:
    """Raise DatasetError if any eval input grid equals a v5 training input grid."""
    hits = training_collisions(items, train_seeds)
    if hits:
        raise DatasetError(
            f"eval item {min(hits)} has the same input grid as a v5 training item; "
            "choose another --eval-seed"
        )


# --- writers ---------------------------------------------------------------------------------


def v5_record(item: Item) -> dict[str, str]:
    """The dict the seed's generator measured with ``json.dumps`` for its 10 MiB budget."""
    return {"instruction": item.instruction, "input": item.input, "output": item.output}


def jsonl_record(item: Item) -> dict[str, object]:
    """instruction/input/output plus the metadata evaluation breaks results down by."""
    return {
        **v5_record(item),
        "seed": item.seed,
        "generator": item.generator,
        "task": item.task.value,
        "wrap_x": item.wrap_x,
        "wrap_y": item.wrap_y,
        "generations": item.generations,
        "live": item.symbols.live,
        "dead": item.symbols.dead,
        "width": item.width,
        "height": item.height,
        "family": item.family,
    }


def render_items(items: Iterable[Item], fmt: str) -> Iterator[str]:
    """Text chunks of a dataset file in one of :data:`FORMATS`."""
    for item in items:
        if fmt == "jsonl":
            yield json.dumps(jsonl_record(item), ensure_ascii=False) + "\n"
        elif fmt == "v5":
            yield V5_SAMPLE_START + item.training_text
        elif fmt == "mlx":
            yield json.dumps({"text": item.training_text}, ensure_ascii=False) + "\n"
        else:
            raise DatasetError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def write_items(items: Iterable[Item], path: str | Path, fmt: str, *, force: bool = False) -> int:
    """Write a dataset file atomically; refuse to replace an existing file unless ``force``."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not str(path).strip() or path.is_dir():
        raise DatasetError(f"{str(path)!r} is a folder, not a file name; give a file inside it")
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to replace it")
    if path.exists() and not path.is_file():
        raise DatasetError(f"{path} is not a regular file; give another file name")
    for parent in (path.parent, *path.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise DatasetError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_text_writer(path, newline="") as out:
            for chunk in render_items(items, fmt):
                out.write(chunk)
                count += 1
    except OSError as error:  # a disk that fills, a folder that cannot be written
        raise DatasetError(f"cannot write {path}: {error.strerror or error}") from None
    return count

"""What one SimonsCA1 puzzle is, and how it is put to a model.

An :class:`Item` carries both the texts the seed's generator wrote (instruction, input, output)
and the structured facts behind them (grid, flags, symbols), so that later stages never have to
re-parse the prompt to know what was asked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

PROMPT_HEADER = "SimonsCA1"


class Task(str, enum.Enum):
    """The two SimonsCA1 questions."""

    NEXT = "next"  # the grid after `generations` steps, in the input's symbols and layout
    COUNT = "count"  # alive_neighbor_count=True: 8-neighbour live counts as compact JSON

    def __str__(self) -> str:
        return self.value


class PromptMode(str, enum.Enum):
    """How a puzzle is shown to a model; models are reported separately per mode."""

    RAW = "raw"  # exactly the training text up to "# Output\n" (what v5 trained on)
    CHAT = "chat"  # the same text as one user message in the model's chat template

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Symbols:
    """How cells and rows are written."""

    live: str = "1"
    dead: str = "0"
    row_sep: str = "\n"
    cell_sep: str = ","

    @property
    def name(self) -> str:
        """Short family label, e.g. ``live=1,dead=0``."""
        return f"live={self.live},dead={self.dead}"


@dataclass(frozen=True)
class Item:
    """One puzzle: what was asked (texts) and the facts behind it (grids, flags)."""

    seed: int
    task: Task
    wrap_x: bool
    wrap_y: bool
    generations: int
    symbols: Symbols
    instruction: str  # "SimonsCA1\n" + the shuffled flag list
    input: str  # the rendered input grid
    output: str  # the exact expected answer text
    generator: str  # "v5" (the seed's generator) or "eval" (simonsca's families)
    # Boolean input grid (height x width) and the expected answer as an array:
    # bool grid for Task.NEXT, int neighbour counts for Task.COUNT. Read-only.
    grid: np.ndarray = field(compare=False, repr=False)
    expected: np.ndarray = field(compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("grid", "expected"):
            array = getattr(self, name)
            array.setflags(write=False)

    @property
    def height(self) -> int:
        return int(self.grid.shape[0])

    @property
    def width(self) -> int:
        return int(self.grid.shape[1])

    @property
    def wrap(self) -> str:
        """``xy``, ``x``, ``y`` or ``none``."""
        return ("x" if self.wrap_x else "") + ("y" if self.wrap_y else "") or "none"

    @property
    def size_bucket(self) -> str:
        side = max(self.height, self.width)
        if side <= 4:
            return "1-4"
        if side <= 8:
            return "5-8"
        if side <= 15:
            return "9-15"
        return "16+"

    @property
    def family_facets(self) -> dict[str, str]:
        """The facets evaluation results are broken down by."""
        return {
            "task": self.task.value,
            "wrap": self.wrap,
            "generations": str(self.generations),
            "size": self.size_bucket,
            "symbols": self.symbols.name,
        }

    @property
    def family(self) -> str:
        """One string naming the item's family, e.g. ``next/wrap=xy/gen=1/size=5-8/live=1,dead=0``."""
        f = self.family_facets
        return (
            f"{f['task']}/wrap={f['wrap']}/gen={f['generations']}/size={f['size']}/{f['symbols']}"
        )

    @property
    def prompt(self) -> str:
        """The raw completion prompt: the training text up to and including ``# Output\\n``."""
        return raw_prompt(self.instruction, self.input)

    @property
    def user_message(self) -> str:
        """The text put in the user turn in chat mode (the raw prompt without the trailing cue)."""
        return f"{self.instruction}\n\n# Input\n{self.input}\n\n# Output"

    @property
    def training_text(self) -> str:
        """The full training sample (without the ``<s>`` sample-start marker)."""
        return f"{self.prompt}{self.output}\n\n"


def raw_prompt(instruction: str, input_text: str) -> str:
    """The v5 completion prompt for an instruction and a rendered input grid."""
    return f"{instruction}\n\n# Input\n{input_text}\n\n# Output\n"

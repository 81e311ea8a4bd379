"""When a completion can stop early: its parse can no longer change, or it can no longer be right.

Generation runs each answer to a token budget (1.5x the expected answer's tokens + 16) or to the
blank line that ends an answer. A base model rarely writes that blank line, so it spends the
budget on rows nobody will read. :func:`watch_for` gives the in-process backend a ``watch``: it
is called with the text generated so far each time that text ends a line, and a non-None return
(a short reason) stops generation there (``finish_reason="cut"``). Reasons start with one of:

``final: ...``
    :func:`simonsca.codec.parse_is_final` promises that nothing written after this point can
    change ``parse_answer`` -- value, reason and notes -- so every score is exactly what the
    budget run would get. It fires on a complete echoed prompt line (``# Input``, ``SimonsCA1``,
    ``<s>``); on a complete non-row line after the grid's rows; for counts on a complete line of
    text after the closed JSON value (the line that closes the JSON is not enough: text after it
    adds the note "ignored text after the JSON"); for counts on the second line of cells written
    before any JSON (the parser reads a grid there: "not JSON: found rows of cells"); and past
    the parser's read limit. The grid's
    last row is not enough either: more rows may follow.

``cannot be right: ...``
    the answer can no longer be exact. What the stop does to the score, rule by rule (the budget
    run is the same text continued to the budget; "extra" means beyond the expected r x c):

    * a row of the grid already fails (ragged, unknown symbol, empty cell), or the parser's
      reading has ended without a grid: the parse fails whatever follows. Every score number is
      equal (parse 0, cell accuracy 0, live F1 0); only the reason text may differ, when another
      cell separator would read the full text cleanly ("wrong cell separator").
    * more complete rows than expected: fires at the first extra row (r + 1 complete rows).
      ``shape_ok`` and ``exact`` are False either way, and no score number is *lower* than the
      budget run's: the first r rows -- the only ones compared with expected cells -- are the
      same, and every row the budget run adds is an extra row whose cells count wrong (the union
      denominator of :mod:`simonsca.scoring`) and whose live cells are false positives. It is
      *higher* when the model would have written more rows (cell accuracy N/(U + w) instead of
      N/(U + k*w) for k extra rows of w cells, U the union of the first r + 1 rows with the
      expected grid) or when the budget would have cut its last row mid-way (the budget run is
      "ragged rows" and scores 0; the stopped one parses). It equals the budget run's only when
      the model would have ended right there. So the stop credits a runaway answer as if the
      model had stopped after one extra row.

    With ``eager=True`` two more rules fire; each can *lower* a score, so they are off by
    default:

    * a complete row of the grid with another width than expected: continuing could still add
      right cells in rows the expected grid has (an answer one column too wide scores about
      c/(c+1) at the budget, and only its first row's share at the stop); it can also raise it
      (the budget run's later rows are ragged).
    * counts written as JSON over several lines, with more rows or a longer row than expected:
      the stop leaves the JSON unclosed ("not JSON: truncated"), so the answer scores 0 where the
      budget run may have parsed.

On the recorded Gemma 3 270M answers (``fixtures/golden``, 24 v5-small items per model; replay
with ``python -m simonsca.early_stop fixtures/golden/gemma3-270m-answers.jsonl [--eager]``) the
default rules stop 16 of 24 base answers (11 for "more rows than expected", 5 final at rows of
cells where JSON counts are expected) and save 812 of its 3,062 characters (27%). The finetuned
control ends its answers itself and is never stopped. Nine of the eleven grids were "ragged
rows" at the budget (the budget cut the last row) and parse at the stop, which raises the base
model's mean cell accuracy on these items from 0.131 to 0.278.

The watch reads the answer through one :class:`simonsca.codec.AnswerScan`, the scanner that
``parse_answer`` and ``parse_is_final`` read through too, so the rules and the parser cannot
disagree on what was written. It reads each line once when called with growing prefixes of one
text; called with any other text it starts over, so its answer depends on the text alone: the
reason of the first line end at which a rule fires, or None.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from simonsca.codec import AnswerScan, answer_limit
from simonsca.models.base import Watch, watch_cut
from simonsca.tasks import Item

__all__ = [
    "CANNOT_BE_RIGHT",
    "FINAL",
    "GoldenStop",
    "StopPoint",
    "first_stop",
    "format_savings",
    "golden_savings",
    "watch_for",
]

FINAL = "final"
CANNOT_BE_RIGHT = "cannot be right"


def watch_for(item: Item, *, eager: bool = False) -> Watch:
    """A watch for one generation of ``item``: call it with the text so far at each line end.

    Returns None while the answer may still change, else ``"final: ..."`` or
    ``"cannot be right: ..."`` (see the module docstring for what each promises). ``eager`` adds
    the rules that can lower a score (wrong row width; over-long JSON counts).
    """
    return _Watch(item, eager)


class _Watch:
    def __init__(self, item: Item, eager: bool) -> None:
        self._item = item
        self._eager = eager
        self._limit = answer_limit(item)
        self._rows, self._cols = (int(n) for n in item.expected.shape)
        self._reset()

    def _reset(self) -> None:
        self._seen = ""  # the text read so far: whole lines, up to and including a line break
        self._fired: str | None = None
        self._scan = AnswerScan(self._item)

    def __call__(self, text: str) -> str | None:
        if not text.startswith(self._seen):
            self._reset()
        if self._fired is not None:
            return self._fired
        end = text.rfind("\n") + 1
        position = len(self._seen)
        while position < end:
            line_end = text.index("\n", position) + 1
            reason = self._read(text[position:line_end], text, line_end)
            position = line_end
            if reason is not None:
                self._seen, self._fired = text[:line_end], reason
                return reason
        self._seen = text[:end]
        return None

    def _read(self, raw: str, text: str, line_end: int) -> str | None:
        """Read one raw line (ending in a line break) of ``text``; a reason when a rule fires."""
        if line_end > self._limit:
            return f"{FINAL}: past the parse limit ({self._limit} characters)"
        # The parsers turn \r\n and lone \r into line breaks too: one raw line may be several.
        lines = raw.replace("\r\n", "\n").count("\n") + raw.count("\r") - raw.count("\r\n")
        for number, line in enumerate(self._scan.lines(raw), start=1):
            # "final" looks at the whole raw line, whichever of its lines a rule fires at.
            whole = self._scan if number == lines else None
            reason = self._rules(line, text, line_end, whole)
            if reason is not None:
                return reason
        return None

    def _final(self, text: str, line_end: int, whole: AnswerScan | None) -> str | None:
        scan = whole if whole is not None else AnswerScan(self._item, text[:line_end])
        final = scan.final()
        return None if final is None else f"{FINAL}: {final}"

    def _rules(self, line: str, text: str, line_end: int, whole: AnswerScan | None) -> str | None:
        """The rules, after the scan has read ``line`` (one line of the raw line ending at
        ``line_end``)."""
        grid, counts = self._scan.grid, self._scan.counts
        if grid is not None:
            if grid.fixed:  # the expected reading can no longer change
                final = self._final(text, line_end, whole)
                if final is not None:
                    return final
                if grid.rows == 0:  # it ended before any row: "no grid found" whatever follows
                    return f"{CANNOT_BE_RIGHT}: no grid found"
            if grid.failure is not None:  # only the reason may change ("wrong cell separator")
                return f"{CANNOT_BE_RIGHT}: {grid.failure}"
            if grid.rows > self._rows:
                return f"{CANNOT_BE_RIGHT}: {grid.rows} rows, expected {self._rows}"
            if self._eager and grid.width is not None and grid.width != self._cols:
                return f"{CANNOT_BE_RIGHT}: rows of {grid.width} cells, expected {self._cols}"
        if counts is not None:
            json_rows = counts.json
            # The lines where a "final" stop can begin: an echoed prompt line, text after the
            # closed JSON, a line closing a list, the second line of cells before any JSON.
            if (
                counts.echo_line
                or (json_rows.closed and line.strip())
                or "]" in line
                or (counts.cells_line and counts.cell_lines >= 2)
            ):
                final = self._final(text, line_end, whole)
                if final is not None:
                    return final
            if self._eager and not json_rows.closed and not counts.echoed:
                if json_rows.rows > self._rows:
                    return f"{CANNOT_BE_RIGHT}: {json_rows.rows} JSON rows, expected {self._rows}"
                if json_rows.longest > self._cols or json_rows.short_row:
                    return f"{CANNOT_BE_RIGHT}: a JSON row of another width than {self._cols}"
        return None


# --------------------------------------------------------------------------------------------
# What the watch would have saved on recorded answers


@dataclass(frozen=True)
class StopPoint:
    """Where a watch stopped a text: after ``line`` lines, keeping ``kept`` characters."""

    line: int
    kept: int
    reason: str


def first_stop(text: str, item: Item, *, eager: bool = False) -> StopPoint | None:
    """Replay ``text`` line by line through one watch, as the backend would; None: never fired."""
    cut = watch_cut(text, watch_for(item, eager=eager))
    if cut is None:
        return None
    kept, reason = cut
    return StopPoint(text.count("\n", 0, kept), kept, reason)


@dataclass(frozen=True)
class GoldenStop:
    """One recorded answer replayed through the watch."""

    seed: int
    model: str
    task: str
    chars: int  # characters the model wrote
    lines: int  # line breaks in it
    stop: StopPoint | None
    cell_accuracy: float  # score of the whole text
    cell_accuracy_at_stop: float  # score of the text the watch would have kept
    parse_ok: bool
    parse_ok_at_stop: bool

    @property
    def saved(self) -> int:
        return 0 if self.stop is None else self.chars - self.stop.kept


def golden_savings(
    records: Iterable[dict[str, object]] | str | Path,
    *,
    eager: bool = False,
    family: str = "v5-small",
) -> list[GoldenStop]:
    """Replay recorded answers (``fixtures/golden/*.jsonl`` rows or that file's path).

    Each record needs ``seed``, ``model`` and ``text``; items are rebuilt from the seed in the
    eval ``family`` the answers were recorded on.
    """
    from simonsca.dataset import families, make_eval_item
    from simonsca.scoring import score_item

    if isinstance(records, (str, Path)):
        lines = Path(records).read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    fam = families(family)
    out: list[GoldenStop] = []
    for record in records:
        item = make_eval_item(int(str(record["seed"])), fam)
        text = str(record["text"])
        stop = first_stop(text, item, eager=eager)
        whole = score_item(item, text)
        kept = whole if stop is None else score_item(item, text[: stop.kept])
        out.append(
            GoldenStop(
                seed=item.seed,
                model=str(record["model"]),
                task=item.task.value,
                chars=len(text),
                lines=text.count("\n"),
                stop=stop,
                cell_accuracy=whole.cell_accuracy,
                cell_accuracy_at_stop=kept.cell_accuracy,
                parse_ok=whole.parse_ok,
                parse_ok_at_stop=kept.parse_ok,
            )
        )
    return out


def format_savings(stops: Sequence[GoldenStop]) -> str:
    """A table of every stopped answer and per-model totals."""
    header = (
        f"{'seed':>8} {'model':<7} {'task':<5} {'chars':>5} {'line':>4} {'saved':>5}  "
        f"{'cell acc. whole -> stopped':<27} reason"
    )
    rows = [header]
    for s in stops:
        if s.stop is None:
            continue
        rows.append(
            f"{s.seed:>8} {s.model:<7} {s.task:<5} {s.chars:>5} "
            f"{f'{s.stop.line}/{s.lines + 1}':>4} {s.saved:>5}  "
            f"{s.cell_accuracy:.3f} -> {s.cell_accuracy_at_stop:.3f}"
            f"{'' if s.parse_ok == s.parse_ok_at_stop else ' (now parses)':<13}  {s.stop.reason}"
        )
    for model in sorted({s.model for s in stops}):
        mine = [s for s in stops if s.model == model]
        stopped = [s for s in mine if s.stop is not None]
        chars = sum(s.chars for s in mine)
        saved = sum(s.saved for s in mine)
        before = sum(s.cell_accuracy for s in mine) / len(mine)
        after = sum(s.cell_accuracy_at_stop for s in mine) / len(mine)
        rows.append(
            f"{model}: {len(stopped)} of {len(mine)} answers stopped early, "
            f"{saved} of {chars} characters saved ({100 * saved / max(1, chars):.0f}%); "
            f"mean cell accuracy {before:.3f} -> {after:.3f}"
        )
    return "\n".join(rows)


if __name__ == "__main__":  # python -m simonsca.early_stop fixtures/golden/...jsonl [--eager]
    import sys

    args = sys.argv[1:]
    paths = [a for a in args if a != "--eager"]
    print(format_savings(golden_savings(paths[0], eager="--eager" in args)))

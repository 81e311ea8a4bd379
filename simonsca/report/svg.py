"""Inline SVG for ``report.html``: item grids and the forest plot of paired deltas.

Pure functions: a record's values in, :class:`markupsafe.Markup` out. Every piece of text that
reaches the markup (labels, facet values, numbers) is escaped here, and numbers are formatted by
this module, so the template can insert the result as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from simonsca.compare import Delta, FamilyDelta
from simonsca.metrics import METRICS, MetricSpec
from simonsca.report.tables import NAMES
from simonsca.verdict import Comparison

Grid = Sequence[Sequence[int]]

MINUS = "\u2212"
BETTER, WORSE, NEUTRAL = "#1a7f37", "#c62828", "#555"

# --------------------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class GridPicture:
    """One drawn grid and how many of the expected cells it gets wrong (missing ones included)."""

    svg: Markup
    wrong_cells: int


@dataclass
class _Marks:
    live: list[str]
    wrong: list[str]
    missing: list[str]
    extra: list[str]
    numbers: list[str]
    bad_numbers: list[str]
    n_wrong: int = 0


def cell_px(rows: int, cols: int) -> int:
    """Pixels per cell: big grids shrink so an item's pictures stay on one row."""
    return max(6, min(18, 180 // max(rows, cols, 1)))


def _square(r: int, c: int) -> str:
    return f"M{c} {r}h1v1h-1z"


def _mark_cells(value: Grid, expected: Grid | None, counts: bool) -> _Marks:
    """Sort every cell of the union of both rectangles into what is drawn for it."""
    marks = _Marks([], [], [], [], [], [])
    rows = len(value)
    e_rows = len(expected) if expected else 0
    e_cols = len(expected[0]) if expected and e_rows else 0
    height = max(rows, e_rows)
    width = max(max((len(r) for r in value), default=0), e_cols)
    for r in range(height):
        for c in range(width):
            have = r < rows and c < len(value[r])
            want = expected is not None and r < e_rows and c < e_cols
            if not have:
                if want:
                    marks.missing.append(_square(r, c))
                    marks.n_wrong += 1
                continue
            v = int(value[r][c])
            wrong = want and expected is not None and v != int(expected[r][c])
            if counts:
                text = f'<text x="{c + 0.5}" y="{r + 0.75}">{v}</text>'
                (marks.bad_numbers if wrong else marks.numbers).append(text)
            elif v:
                marks.live.append(_square(r, c))
            if wrong:
                marks.wrong.append(_square(r, c))
                marks.n_wrong += 1
            elif expected is not None and not want:
                marks.extra.append(f"M{c + 0.2} {r + 0.2}l.6 .6m0 -.6l-.6 .6")
    return marks


def _grid_lines(value: Grid) -> str:
    rows = len(value)
    cols = max((len(r) for r in value), default=0)
    across = "".join(f"M0 {r}H{cols}" for r in range(rows + 1))
    down = "".join(f"M{c} 0V{rows}" for c in range(cols + 1))
    return across + down


def grid_svg(value: Grid, expected: Grid | None = None, *, counts: bool, label: str) -> GridPicture:
    """A grid (live cells dark) or a count matrix (numbers), compared with ``expected`` if given.

    Wrong cells get a red outline (a wrong count is also written in red); expected cells the
    answer lacks are grey with a red outline; cells the answer adds outside the expected grid get
    a red cross -- the same cells cell accuracy counts wrong.
    """
    marks = _mark_cells(value, expected, counts)
    e_rows = len(expected) if expected else 0
    e_cols = len(expected[0]) if expected and e_rows else 0
    height = max(len(value), e_rows, 1)
    width = max(max((len(r) for r in value), default=0), e_cols, 1)
    px = cell_px(height, width)
    head = (
        f'<svg class="grid" xmlns="http://www.w3.org/2000/svg" viewBox="-0.1 -0.1 '
        f'{width + 0.2} {height + 0.2}" width="{width * px}" height="{height * px}" '
        f'role="img" aria-label="{escape(label)}" data-wrong-cells="{marks.n_wrong}">'
    )
    parts = [head]
    if marks.missing:
        parts.append(f'<path class="missing" d="{"".join(marks.missing)}" fill="#ddd"/>')
    if marks.live:
        parts.append(f'<path class="live" d="{"".join(marks.live)}" fill="#222"/>')
    parts.append(f'<path d="{_grid_lines(value)}" stroke="#bbb" stroke-width="0.04" fill="none"/>')
    if marks.numbers or marks.bad_numbers:
        parts.append('<g font-size="0.62" text-anchor="middle" font-family="monospace">')
        parts.append("".join(marks.numbers))
        if marks.bad_numbers:
            bad = "".join(marks.bad_numbers)
            parts.append(f'<g class="wrong-numbers" fill="#d00" font-weight="bold">{bad}</g>')
        parts.append("</g>")
    if marks.wrong or marks.missing:
        outline = "".join(marks.wrong + marks.missing)
        parts.append(
            f'<path class="wrong" d="{outline}" fill="none" stroke="#e00" stroke-width="0.14"/>'
        )
    if marks.extra:
        parts.append(
            f'<path class="extra" d="{"".join(marks.extra)}" stroke="#e00" stroke-width="0.12"/>'
        )
    parts.append("</svg>")
    return GridPicture(Markup("".join(parts)), marks.n_wrong)


# --------------------------------------------------------------------------------- forest plot


@dataclass(frozen=True)
class ForestRow:
    """One line of the plot: a paired delta and its 95% CI, in the metric's own units."""

    kind: str  # "delta" or "family"
    metric: str
    label: str
    diff: float
    low: float
    high: float
    flagged: bool = False  # a family below the regression limit
    facet: str = ""
    value: str = ""


@dataclass(frozen=True)
class ForestGroup:
    """Rows under one heading; ``limit`` draws the family-regression limit across them."""

    title: str
    rows: tuple[ForestRow, ...]
    limit: float | None = None


@dataclass(frozen=True)
class ForestPanel:
    """Groups sharing one x axis (one unit: percentage points or nats)."""

    unit: str
    groups: tuple[ForestGroup, ...]


def _delta_row(d: Delta) -> ForestRow:
    spec = METRICS[d.metric]
    label = spec.label if spec.higher_is_better else f"{spec.label} (lower is better)"
    return ForestRow("delta", d.metric, label, d.diff, d.low, d.high)


def _family_row(f: FamilyDelta, limit: float) -> ForestRow:
    flagged = f.regressed  # decided once, with the no_family_regressed check's rule
    label = f"{f.facet}={f.value} (n={f.n})"
    return ForestRow("family", f.metric, label, f.diff, f.low, f.high, flagged, f.facet, f.value)


def forest_panels(comparison: Comparison, family_limit: float) -> tuple[ForestPanel, ...]:
    """Every paired delta (generation, then teacher-forced), then the primary metric per family,
    grouped into one panel per unit."""
    groups: list[ForestGroup] = []
    for mode, title in (
        (comparison.generation, "greedy answers"),
        (comparison.forced, "teacher-forced"),
    ):
        if mode is not None and mode.deltas:
            rows = tuple(_delta_row(d) for d in mode.deltas)
            groups.append(ForestGroup(f"{title} ({mode.n} items)", rows))
    primary = comparison.primary
    if primary is not None and primary.families:
        spec = METRICS[primary.families[0].metric]
        rows = tuple(_family_row(f, family_limit) for f in primary.families)
        groups.append(ForestGroup(f"{spec.label} by family", rows, family_limit))
    panels = []
    for unit in ("share", "nats"):
        kept = []
        for g in groups:
            rows = tuple(r for r in g.rows if METRICS[r.metric].unit == unit)
            if rows:
                kept.append(ForestGroup(g.title, rows, g.limit))
        if kept:
            panels.append(ForestPanel(unit, tuple(kept)))
    return tuple(panels)


# Layout, in pixels.
_WIDTH, _LABEL_W, _NOTE_W = 760, 230, 190
_ROW_H, _HEAD_H, _AXIS_H, _GAP = 20, 22, 34, 14
_PLOT_L = _LABEL_W
_PLOT_R = _WIDTH - _NOTE_W
_CHAR_PX = 6.5  # the width of one character of an 11px tick label, roughly


def _scale_factor(unit: str) -> float:
    return 100.0 if unit == "share" else 1.0


def _unit_word(unit: str) -> str:
    return "pp" if unit == "share" else "nats"


def nice_ticks(low: float, high: float, count: int = 8) -> tuple[list[float], float]:
    """Round tick values, the first at or below ``low``, the last at or below ``high`` (steps of
    1, 2 or 5 times a power of ten, about ``count`` of them)."""
    span = max(high - low, 1e-9)
    raw = span / count
    power = 10 ** _floor_log10(raw)
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = _floor_div(low, step)
    ticks = []
    k = first
    while k * step <= high + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks, step


def _floor_log10(x: float) -> int:
    exponent = 0
    while x >= 10:
        x /= 10
        exponent += 1
    while x < 1:
        x *= 10
        exponent -= 1
    return exponent


def _floor_div(x: float, step: float) -> int:
    k = int(x / step)
    return k - 1 if k * step > x + step * 1e-9 else k


def signed(value: float, decimals: int) -> str:
    """``+20``, ``0``, ``−0.25``: a signed tick label with a real minus sign."""
    if abs(value) < 10 ** -(decimals + 1):
        return "0"
    text = f"{abs(value):.{decimals}f}"
    return ("+" if value > 0 else MINUS) + text


def _decimals(step: float) -> int:
    decimals = 0
    while step * 10**decimals < 1 - 1e-9 and decimals < 6:
        decimals += 1
    return decimals


def _row_colour(row: ForestRow, spec: MetricSpec) -> str:
    if row.flagged:
        return WORSE
    if row.low > 0 or row.high < 0:
        good = (row.low > 0) == spec.higher_is_better
        return BETTER if good else WORSE
    return NEUTRAL


def _row_note(row: ForestRow, spec: MetricSpec) -> str:
    """``+22.2 [+13.4, +31.5] pp``: the delta and its CI, the unit once."""
    unit = _unit_word(spec.unit)

    def t(x: float) -> str:
        return spec.delta_text(x).removesuffix(f" {unit}").replace("-", MINUS)

    flag = " (!)" if row.flagged else ""
    return f"{t(row.diff)} [{t(row.low)}, {t(row.high)}] {unit}{flag}"


@dataclass(frozen=True)
class _Axis:
    lo: float  # in display units (pp or nats)
    hi: float
    ticks: tuple[float, ...]
    decimals: int

    def x(self, value: float) -> float:
        return _PLOT_L + (value - self.lo) / (self.hi - self.lo) * (_PLOT_R - _PLOT_L)


def _axis(panel: ForestPanel) -> _Axis:
    k = _scale_factor(panel.unit)
    values = [0.0]
    for g in panel.groups:
        values += [v * k for r in g.rows for v in (r.low, r.high, r.diff)]
        if g.limit is not None:
            values.append(-g.limit * k)
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.06 or (1.0 if panel.unit == "share" else 0.05)
    lo, hi = lo - pad, hi + pad
    for count in (8, 6, 5, 4, 3, 2):  # as many ticks as their labels leave room for
        ticks, step = nice_ticks(lo, hi, count)
        axis = _Axis(min(ticks[0], lo), max(ticks[-1], hi), tuple(ticks), _decimals(step))
        widest = max(len(_tick_label(t, axis.decimals, panel.unit)) for t in ticks)
        if axis.x(step) - axis.x(0.0) >= widest * _CHAR_PX + 10:
            break
    return axis


def _tick_label(value: float, decimals: int, unit: str) -> str:
    label = signed(value, decimals)
    return label if label == "0" else f"{label} {_unit_word(unit)}"


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(text)}</text>'


def _draw_row(row: ForestRow, axis: _Axis, y: float, unit: str) -> str:
    spec = METRICS[row.metric]
    k = _scale_factor(unit)
    colour = _row_colour(row, spec)
    x_lo, x_hi, x_mid = axis.x(row.low * k), axis.x(row.high * k), axis.x(row.diff * k)
    mid = y + _ROW_H / 2
    data = f'data-kind="{row.kind}" data-metric="{escape(row.metric)}"'
    if row.kind == "family":
        data += f' data-facet="{escape(row.facet)}" data-value="{escape(row.value)}"'
    data += f' data-flagged="{int(row.flagged)}"'
    return "".join(
        [
            f'<g class="forest-row" {data}>',
            f"<title>{escape(row.label)}: {escape(_row_note(row, spec))}</title>",
            _text(_PLOT_L - 8, mid + 4, row.label + (" (!)" if row.flagged else ""), "", "end"),
            _line(x_lo, x_hi, mid, mid, colour, 2.5, "ci"),
            _line(x_lo, x_lo, mid - 4, mid + 4, colour, 1.5),
            _line(x_hi, x_hi, mid - 4, mid + 4, colour, 1.5),
            (
                f'<rect x="{x_mid - 4.5:.1f}" y="{mid - 4.5:.1f}" width="9" height="9" '
                f'fill="{colour}" class="point"/>'
            ),
            _text(_PLOT_R + 10, mid + 4, _row_note(row, spec), "note"),
            "</g>",
        ]
    )


def _line(
    x1: float, x2: float, y1: float, y2: float, colour: str, width: float, cls: str = ""
) -> str:
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-width="{width}"{klass}/>'
    )


def _draw_axis(
    axis: _Axis, top: float, bottom: float, unit: str, names: tuple[str, str] = NAMES
) -> str:
    parts = [
        f'<line x1="{_PLOT_L}" x2="{_PLOT_R}" y1="{bottom:.1f}" y2="{bottom:.1f}" stroke="#888"/>'
    ]
    for t in axis.ticks:
        if not axis.lo - 1e-9 <= t <= axis.hi + 1e-9:
            continue
        x = axis.x(t)
        if abs(t) > 1e-12:  # the zero line is drawn on its own, darker
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom + 4:.1f}" '
                'stroke="#eee"/>'
            )
        label = _tick_label(t, axis.decimals, unit)
        parts.append(_text(x, bottom + 16, label, "tick", "middle"))
    x0 = axis.x(0.0)
    parts.append(
        f'<line class="zero" x1="{x0:.1f}" x2="{x0:.1f}" y1="{top:.1f}" y2="{bottom:.1f}" '
        'stroke="#222" stroke-width="1.2"/>'
    )
    what = "percentage points" if unit == "share" else "nats per answer token"
    title = f"{names[1]} \u2212 {names[0]}, {what}"
    parts.append(_text((_PLOT_L + _PLOT_R) / 2, bottom + 30, title, "axis-title", "middle"))
    return "".join(parts)


def _draw_panel(
    panel: ForestPanel, top: float, names: tuple[str, str] = NAMES
) -> tuple[str, float]:
    axis = _axis(panel)
    k = _scale_factor(panel.unit)
    rows: list[str] = []
    limits: list[str] = []
    y = top
    for group in panel.groups:
        rows.append(_text(8, y + 15, group.title, "group"))
        y += _HEAD_H
        first = y
        for row in group.rows:
            rows.append(_draw_row(row, axis, y, panel.unit))
            y += _ROW_H
        if group.limit is not None:
            x = axis.x(-group.limit * k)
            text = f"limit {signed(-group.limit * k, 1)} {_unit_word(panel.unit)}"
            limits.append(
                f'<g class="family-limit"><line x1="{x:.1f}" x2="{x:.1f}" y1="{first - 8:.1f}" '
                f'y2="{y:.1f}" stroke="{WORSE}" stroke-dasharray="4 3" stroke-width="1.2"/>'
                + _text(x + 4, first - _HEAD_H + 15, text, "limit")
                + "</g>"
            )
    bottom = y + 4
    body = _draw_axis(axis, top, bottom, panel.unit, names) + "".join(limits) + "".join(rows)
    unit = escape(panel.unit)
    return f'<g class="forest-panel" data-unit="{unit}">{body}</g>', bottom + _AXIS_H


def forest_svg(
    panels: Sequence[ForestPanel], *, title: str, names: tuple[str, str] = NAMES
) -> Markup:
    """The forest plot: a point at each delta, a bar for its 95% CI, a zero line per panel, and
    the family-regression limit dashed; signed tick labels in the panel's unit. ``names``: the
    reference's and the candidate's (the axis reads candidate minus reference)."""
    parts = []
    y = 6.0
    for panel in panels:
        drawn, y = _draw_panel(panel, y, names)
        parts.append(drawn)
        y += _GAP
    height = int(y)
    head = (
        f'<svg class="forest" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {height}" '
        f'width="{_WIDTH}" height="{height}" role="img" aria-label="{escape(title)}" '
        'font-family="system-ui,sans-serif" font-size="12">'
    )
    return Markup(head + f"<title>{escape(title)}</title>" + "".join(parts) + "</svg>")

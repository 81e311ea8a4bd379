"""The learning curve's views: the compact table (terminal, ``summary.md``), ``curve.csv`` and
the SVG plots of ``report.html`` -- each only lays out a :class:`~simonsca.curve.Curve`."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from markupsafe import Markup, escape

from simonsca.curve import BaselineLevel, Curve, CurvePoint, NeighbourDelta
from simonsca.metrics import METRICS
from simonsca.report.svg import BETTER, NEUTRAL, WORSE, _decimals, _line, _text, nice_ticks
from simonsca.report.tables import Table, estimate_cell

#: ``curve.csv``'s columns: one row per point and metric (a trivial baseline's rows have no
#: step, its value only); the delta columns are filled on the curve's primary metric.
CSV_COLUMNS = (
    "step",
    "name",
    "metric",
    "value",
    "low",
    "high",
    "delta_vs_previous",
    "delta_low",
    "delta_high",
    "trend",
)


def _change_cell(d: NeighbourDelta | None) -> str:
    if d is None:
        return "-"
    spec = METRICS[d.metric]
    return f"{spec.delta_text(d.diff)} ({spec.delta_text(d.low)} to {spec.delta_text(d.high)})"


def curve_rows(curve: Curve) -> Table:
    """step, name, each metric's value (CI), the change from the previous point on the primary
    metric with its CI, and its trend; then the trivial baselines' bars (no step)."""
    primary = METRICS[curve.primary]
    header = ["step" if curve.axis == "step" else "#", "name"]
    header += [METRICS[m].column for m in curve.metrics]
    header += [f"vs previous ({primary.column})", "trend"]
    rows = []
    for p in curve.points:
        d = curve.delta_to(p.name)
        best = " (best)" if curve.best is not None and curve.best.name == p.name else ""
        cells = [str(p.step), p.name + best]
        cells += [estimate_cell(m, p.values.get(m)) for m in curve.metrics]
        cells += [_change_cell(d), d.trend if d is not None else "-"]
        rows.append(cells)
    names = dict.fromkeys(b.name for b in curve.baselines)
    for name in names:
        cells = ["-", f"{name} (baseline)"]
        for m in curve.metrics:
            level = next((b for b in curve.levels(m) if b.name == name), None)
            cells.append(METRICS[m].value_text(level.value) if level is not None else "-")
        rows.append(cells + ["-", "-"])
    return header, rows


def best_line(curve: Curve) -> str | None:
    """The best checkpoint in one line, with what its pick is worth."""
    b = curve.best
    if b is None:
        return None
    spec = METRICS[b.metric]
    v = b.value
    caveat = f"confirmed: {b.confirmed}" if b.confirmed else b.caveat
    return (
        f"best {'checkpoint' if curve.axis == 'step' else 'candidate'}: {b.name}"
        + (f" (step {b.step})" if curve.axis == "step" else "")
        + f", {spec.label} {spec.value_text(v.value)} "
        f"(95% CI {spec.value_text(v.low)} to {spec.value_text(v.high)}) -- {caveat}"
    )


def curve_notes(curve: Curve) -> list[str]:
    """The lines under the curve's table: the best checkpoint, and how the trend is read."""
    out = []
    best = best_line(curve)
    if best is not None:
        out.append(best)
    level = round(100 * curve.confidence)
    out.append(
        f"trend: the paired change from the previous point ({level}% CI, same items): still "
        "learning when the CI lies on the better side of 0, getting worse when on the worse "
        "side, plateau when it includes 0"
    )
    return out


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def curve_csv(curve: Curve) -> str:
    """``curve.csv``: every point's every metric (and the baselines' bars), one row each."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in curve.points:
        d = curve.delta_to(p.name)
        for m in curve.metrics:
            e = p.values[m]
            row = [str(p.step), p.name, m, _number(e.value), _number(e.low), _number(e.high)]
            if d is not None and m == d.metric:
                row += [_number(d.diff), _number(d.low), _number(d.high), d.trend]
            else:
                row += ["", "", "", ""]
            writer.writerow(row)
    for b in curve.baselines:
        writer.writerow(["", b.name, b.metric, _number(b.value), "", "", "", "", "", ""])
    return out.getvalue()


# ------------------------------------------------------------------------------ the plots

_W, _H = 380, 230
_L, _R, _T, _B = 62, 20, 30, 42  # margins: left (y ticks), right, top (title), bottom (x ticks)


def _scale(unit: str) -> float:
    return 100.0 if unit == "share" else 1.0


def _x_of(steps: list[int]) -> tuple[float, float]:
    """The x range: the steps, with room on either side so no point sits on the frame."""
    lo, hi = min(steps), max(steps)
    span = hi - lo if hi > lo else 1
    return lo - 0.05 * span, hi + 0.05 * span


def _baseline_marks(
    levels: tuple[BaselineLevel, ...], y: Callable[[float], float], k: float, metric: str
) -> list[str]:
    """One dashed line per baseline value (baselines at the same value share it and its label);
    labels pushed apart so that they do not overlap."""
    spec = METRICS[metric]
    same: dict[float, list[str]] = {}
    for b in levels:
        same.setdefault(round(b.value, 9), []).append(b.name)
    out = []
    last = -1e9
    for value, names in sorted(same.items(), key=lambda kv: -kv[0]):  # top to bottom
        at = y(value * k)
        label_y = max(at - 4, last + 11)
        last = label_y
        name = ", ".join(names)
        out.append(
            f'<g class="baseline" data-name="{escape(name)}">'
            f"<title>{escape(name)}: {escape(spec.value_text(value))}</title>"
            f'<line x1="{_L}" x2="{_W - _R}" y1="{at:.1f}" y2="{at:.1f}" '
            f'stroke="{NEUTRAL}" stroke-dasharray="5 4" stroke-width="1.2"/>'
            + _text(_W - _R, label_y, name, "baseline-name", "end")
            + "</g>"
        )
    return out


def _plot(curve: Curve, metric: str) -> Markup:
    spec = METRICS[metric]
    k = _scale(spec.unit)
    points = [p for p in curve.points if metric in p.values]
    levels = curve.levels(metric)
    ys = [v * k for p in points for v in _ends(p, metric)] + [b.value * k for b in levels]
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.08 or (2.0 if spec.unit == "share" else 0.05)
    ticks, step = nice_ticks(y_lo - pad, y_hi + pad, 5)
    y_lo, y_hi = min(ticks[0], y_lo - pad), max(ticks[-1], y_hi + pad)
    x_lo, x_hi = _x_of([p.step for p in points])

    def x(s: float) -> float:
        return _L + (s - x_lo) / (x_hi - x_lo) * (_W - _L - _R)

    def y(v: float) -> float:
        return _T + (y_hi - v) / (y_hi - y_lo) * (_H - _T - _B)

    unit = "%" if spec.unit == "share" else " nats"
    decimals = _decimals(step)
    title = spec.label + ("" if spec.higher_is_better else " (lower is better)")
    head = f'<text x="{_L}" y="16" class="title" font-weight="600" font-size="12">'
    parts = [f"{head}{escape(title)}</text>"]
    bottom = _H - _B
    for t in ticks:
        if y_lo - 1e-9 <= t <= y_hi + 1e-9:
            parts.append(_line(_L, _W - _R, y(t), y(t), "#eee", 1))
            parts.append(_text(_L - 6, y(t) + 4, f"{t:.{decimals}f}{unit}", "tick", "end"))
    parts.append(_line(_L, _W - _R, bottom, bottom, "#888", 1))
    for p in points:
        parts.append(_line(x(p.step), x(p.step), bottom, bottom + 4, "#888", 1))
        parts.append(_text(x(p.step), bottom + 16, str(p.step), "tick", "middle"))
    parts.append(_text((_L + _W - _R) / 2, _H - 8, curve.axis_title, "axis-title", "middle"))
    parts += _baseline_marks(levels, y, k, metric)
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{x(p.step):.1f} {y((p.values[metric].value or 0.0) * k):.1f}"
        for i, p in enumerate(points)
        if p.values[metric].value is not None
    )
    parts.append(
        f'<path class="trace" d="{path}" fill="none" stroke="#1f4e99" stroke-width="1.5"/>'
    )
    for p in points:
        parts.append(_point(curve, p, metric, x(p.step), y, k))
    label = f"learning curve: {title} against the {curve.axis_title}"
    head = (
        f'<svg class="curve" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" '
        f'width="{_W}" height="{_H}" role="img" aria-label="{escape(label)}" '
        f'data-metric="{escape(metric)}" font-family="system-ui,sans-serif" font-size="11">'
    )
    return Markup(head + f"<title>{escape(label)}</title>" + "".join(parts) + "</svg>")


def _ends(p: CurvePoint, metric: str) -> list[float]:
    e = p.values[metric]
    return [v for v in (e.value, e.low, e.high) if v is not None]


def _point(
    curve: Curve, p: CurvePoint, metric: str, px: float, y: Callable[[float], float], k: float
) -> str:
    """One point: a dot at its value, a bar for its CI, coloured by its trend (primary metric);
    the best checkpoint boxed."""
    e = p.values[metric]
    d = curve.delta_to(p.name)
    colour = "#1f4e99"
    if d is not None and d.metric == metric:
        colour = {"still learning": BETTER, "getting worse": WORSE}.get(d.trend, NEUTRAL)
    best = curve.best is not None and curve.best.name == p.name and curve.best.metric == metric
    where = f"step {p.step}" if curve.axis == "step" else f"#{p.step}"
    note = f"{p.name} ({where}): {estimate_cell(metric, e)}"
    if d is not None and d.metric == metric:
        note += f"; vs {d.previous}: {_change_cell(d)}, {d.trend}"
    if best:
        note += f"; best -- {curve.best.caveat if curve.best else ''}"
    mid = y((e.value or 0.0) * k)
    lo = y((e.low if e.low is not None else e.value or 0.0) * k)
    hi = y((e.high if e.high is not None else e.value or 0.0) * k)
    shape = (
        f'<rect x="{px - 5:.1f}" y="{mid - 5:.1f}" width="10" height="10" fill="none" '
        f'stroke="{colour}" stroke-width="2" class="best"/>'
        if best
        else ""
    )
    return (
        f'<g class="curve-point" data-name="{escape(p.name)}" data-step="{p.step}" '
        f'data-value="{(e.value or 0.0):.6f}">'
        f"<title>{escape(note)}</title>"
        + _line(px, px, lo, hi, colour, 2, "ci")
        + f'<circle cx="{px:.1f}" cy="{mid:.1f}" r="3.5" fill="{colour}" class="point"/>'
        + shape
        + "</g>"
    )


def curve_svgs(curve: Curve) -> tuple[tuple[str, Markup], ...]:
    """One small plot per curve metric: (metric, its SVG)."""
    return tuple((m, _plot(curve, m)) for m in curve.metrics)


__all__ = ["CSV_COLUMNS", "best_line", "curve_csv", "curve_notes", "curve_rows", "curve_svgs"]

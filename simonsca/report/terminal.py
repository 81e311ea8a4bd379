"""The plain-text view for the terminal (CLI and the pytest summary)."""

from __future__ import annotations

from simonsca.record import EvalRecord
from simonsca.report.curve_views import curve_notes, curve_rows
from simonsca.report.tables import (
    check_rows,
    curve_of,
    delta_rows,
    exact_test_line,
    likelihood_lines,
    merge_check_line,
    model_rows,
    other_mode_lines,
    primary_comparisons,
    verdict_lines,
)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def render_terminal(record: EvalRecord) -> str:
    """Verdict and likelihood lines first (one per candidate), then the tables (a delta table
    per candidate), the learning curve, findings and every check."""
    e = record.evaluation
    out = [f"compared: {e.compared}"]
    out += verdict_lines(record)
    out += likelihood_lines(e)
    out.append("")
    out += [text_table(*model_rows(e)), ""]
    for _, c in primary_comparisons(e):
        header, rows = delta_rows(c)
        if rows:
            out.append(text_table(header, rows))
        for mode in (c.generation, c.forced):
            if mode is not None:
                out.append(exact_test_line(mode, c.names))
        out.append("")
    curve = curve_of(e)
    if curve is not None:
        out += [text_table(*curve_rows(curve)), *curve_notes(curve), ""]
    out += other_mode_lines(e)
    for m in e.merge_checks:
        out.append(merge_check_line(m, e.reference))
    for f in e.findings:
        out.append(f"finding ({f.severity}) {f.code}: {f.title}")
    for w in e.warnings:
        out.append(f"note: {w}")
    if record.checks:
        header, rows = check_rows(record)
        out += ["", text_table(header, [[r[0], r[1], _short(r[2])] for r in rows])]
    return "\n".join(out).rstrip() + "\n"


def _short(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

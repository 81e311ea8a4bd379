"""Reports: read-only views of one :class:`~simonsca.record.EvalRecord`.

``report.json`` (the record itself, :func:`simonsca.record.to_json`), ``summary.md``
(:mod:`.markdown`), ``report.html`` (:mod:`.html`, from a Jinja2 template), the terminal text
(:mod:`.terminal`) and, when the candidates are checkpoints, ``curve.csv`` (the learning curve:
:mod:`simonsca.curve`, :mod:`.curve_views`). :func:`write_reports` renders every view first, then
writes the run's folder whole (:mod:`.files`).
"""

from __future__ import annotations

from pathlib import Path

from simonsca.record import EvalRecord, to_json

REPORT_FILES = ("report.json", "summary.md", "report.html")
#: Written beside them when the run has a learning curve (two or more checkpoints).
CURVE_FILE = "curve.csv"


def render_all(record: EvalRecord) -> dict[str, str]:
    """Every file of a run's report folder, rendered (nothing written): :data:`REPORT_FILES`,
    and :data:`CURVE_FILE` when the run has a learning curve."""
    from simonsca.report.curve_views import curve_csv
    from simonsca.report.html import render_html
    from simonsca.report.markdown import render_markdown
    from simonsca.report.tables import curve_of

    files = {
        "report.json": to_json(record),
        "summary.md": render_markdown(record),
        "report.html": render_html(record),
    }
    curve = curve_of(record.evaluation)
    if curve is not None:
        files[CURVE_FILE] = curve_csv(curve)
    return files


def write_reports(record: EvalRecord, reports_dir: str | Path = "reports") -> Path:
    """Write ``<reports_dir>/<run id>/{report.json,summary.md,report.html}`` (and ``curve.csv``
    when there is a curve), the folder whole or not at all; return the folder."""
    from simonsca.report.files import prepare_reports_dir, write_run

    root = prepare_reports_dir(Path(reports_dir))
    return write_run(root, record.run_id, render_all(record))


def load_record(path: str | Path) -> EvalRecord:
    """Read a ``report.json`` (or the run folder holding it) back into the record (one line
    naming the file when it cannot be: :func:`simonsca.runs.read_run`)."""
    from simonsca.runs import read_run

    return read_run(Path(path)).record


__all__ = ["CURVE_FILE", "REPORT_FILES", "load_record", "render_all", "write_reports"]

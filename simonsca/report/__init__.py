"""Reports: read-only views of one :class:`~simonsca.record.EvalRecord`.

``report.json`` (the record itself, :func:`simonsca.record.to_json`), ``summary.md``
(:mod:`.markdown`), ``report.html`` (:mod:`.html`, from a Jinja2 template) and the terminal text
(:mod:`.terminal`). :func:`write_reports` renders every view first, then writes the run's folder
whole (:mod:`.files`).
"""

from __future__ import annotations

from pathlib import Path

from simonsca.record import EvalRecord, to_json

REPORT_FILES = ("report.json", "summary.md", "report.html")


def render_all(record: EvalRecord) -> dict[str, str]:
    """Every file of a run's report folder, rendered (nothing written)."""
    from simonsca.report.html import render_html
    from simonsca.report.markdown import render_markdown

    return {
        "report.json": to_json(record),
        "summary.md": render_markdown(record),
        "report.html": render_html(record),
    }


def write_reports(record: EvalRecord, reports_dir: str | Path = "reports") -> Path:
    """Write ``<reports_dir>/<run id>/{report.json,summary.md,report.html}``; return the folder."""
    from simonsca.report.files import prepare_reports_dir, write_run

    root = prepare_reports_dir(Path(reports_dir))
    return write_run(root, record.run_id, render_all(record))


def load_record(path: str | Path) -> EvalRecord:
    """Read a ``report.json`` (or the run folder holding it) back into the record (one line
    naming the file when it cannot be: :func:`simonsca.runs.read_run`)."""
    from simonsca.runs import read_run

    return read_run(Path(path)).record


__all__ = ["REPORT_FILES", "load_record", "render_all", "write_reports"]

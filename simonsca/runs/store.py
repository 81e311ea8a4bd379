"""Stored runs: find one from what the user typed, read it back, list them all.

A run is a folder ``<reports>/<run id>/`` holding ``report.json`` (written whole by
:mod:`simonsca.report.files`). What the user types -- a run folder, its ``report.json``, or a run
id under the reports folder -- is resolved here once, and every way it can be wrong is one line
(:class:`~simonsca.errors.StoredRunError`) before anything else is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from simonsca import options
from simonsca.errors import StoredRunError
from simonsca.record import EvalRecord, from_json
from simonsca.report.files import LATEST

REPORT = "report.json"


@dataclass(frozen=True)
class StoredRun:
    """One run read back: where its ``report.json`` is, and the record in it."""

    path: Path
    record: EvalRecord

    @property
    def run_id(self) -> str:
        return self.record.run_id


def reports_folder(given: str | Path | None = None, start: Path | None = None) -> Path:
    """Where runs are stored: ``given`` (``--reports-dir``), else ``[tool.simonsca]
    reports_dir``, else ``reports/`` -- the same rule ``simonsca compare`` writes by."""
    if given is not None:
        return Path(given)
    table = options.read_pyproject(start or Path.cwd())
    chosen = options.resolve({}, {k: v for k, v in table.items() if k == "reports_dir"})
    return Path(chosen.reports_dir or "reports")


def resolve_run(run: str | Path, reports: Path) -> Path:
    """The ``report.json`` that ``run`` names: a file, a run folder, or a run id in ``reports``."""
    text = str(run)
    if not text.strip():
        raise StoredRunError("expected a run (a run folder, its report.json or a run id), got ''")
    given = Path(run)
    for candidate in (given, reports / given):
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            if (candidate / REPORT).is_file():
                return candidate / REPORT
            raise StoredRunError(
                f"{candidate} is a folder but not a stored run (no {REPORT} in it); "
                f"simonsca runs list shows the runs in {reports}"
            )
        if given.is_absolute():
            break
    raise StoredRunError(
        f"no stored run {text}: no such file or folder, and no run {text!r} in {reports}; "
        f"simonsca runs list shows the stored runs"
    )


def read_run(path: Path) -> StoredRun:
    """Read a ``report.json`` (or the run folder holding it); one line naming it if it cannot."""
    report = path / REPORT if path.is_dir() else path
    try:
        data = report.read_bytes()
    except FileNotFoundError:
        raise StoredRunError(f"{report}: no such file") from None
    except OSError as error:
        raise StoredRunError(f"{report}: cannot be read ({error.strerror or error})") from None
    return StoredRun(report, from_json(data, source=str(report)))


def load_run(run: str | Path, reports: Path) -> StoredRun:
    """What the user typed, resolved and read back."""
    return read_run(resolve_run(run, reports))


@dataclass(frozen=True)
class Listed:
    """One entry of the reports folder: a run read back, or why it could not be."""

    folder: Path
    run: StoredRun | None
    problem: str | None = None


def stored_runs(reports: Path) -> Iterator[Listed]:
    """Every run folder in ``reports`` (``latest`` and hidden partial folders left out)."""
    if not reports.is_dir():
        raise StoredRunError(
            f"reports folder {reports} does not exist; pass --reports-dir (where simonsca "
            "compare wrote its reports)"
        )
    for entry in sorted(reports.iterdir()):
        if entry.name == LATEST or entry.name.startswith(".") or entry.is_symlink():
            continue
        if not entry.is_dir() or not (entry / REPORT).is_file():
            continue
        try:
            yield Listed(entry, read_run(entry / REPORT))
        except StoredRunError as error:
            yield Listed(entry, None, str(error).removeprefix(f"{entry / REPORT}: "))


def newest_first(listed: Iterator[Listed]) -> list[Listed]:
    """Runs by their creation time, newest first (unreadable ones last, by folder name)."""
    entries = list(listed)
    readable = [e for e in entries if e.run is not None]
    readable.sort(key=lambda e: (e.run.record.created, e.folder.name) if e.run else ("", ""))
    return [*reversed(readable), *(e for e in entries if e.run is None)]

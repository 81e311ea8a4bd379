"""Stored runs, read back and compared with no model at all (``simonsca runs list|compare``).

:mod:`.store` finds and reads a run (a folder, its ``report.json`` or a run id), :mod:`.pairing`
compares two runs item by item from their stored scores, :mod:`.views` shows both as text.
"""

from __future__ import annotations

from simonsca.runs.pairing import RunComparison, SideComparison, compare_stored, items_difference
from simonsca.runs.store import (
    Listed,
    StoredRun,
    load_run,
    newest_first,
    read_run,
    reports_folder,
    resolve_run,
    stored_runs,
)

__all__ = [
    "Listed",
    "RunComparison",
    "SideComparison",
    "StoredRun",
    "compare_stored",
    "items_difference",
    "load_run",
    "newest_first",
    "read_run",
    "reports_folder",
    "resolve_run",
    "stored_runs",
]

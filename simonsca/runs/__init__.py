"""Stored runs, read back and compared with no model at all (``simonsca runs list|compare``).

:mod:`.store` finds and reads a run (a folder, its ``report.json`` or a run id), :mod:`.pairing`
compares two runs item by item from their stored scores, :mod:`.views` shows both as text,
:mod:`.reference` makes one stored contender a new run's reference (``--compare-to``).
"""

from __future__ import annotations

from simonsca.runs.pairing import (
    ItemSet,
    RunComparison,
    SideComparison,
    compare_stored,
    item_set_difference,
    items_difference,
    planned_items,
    record_items,
)
from simonsca.runs.reference import StoredReference, load_reference
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
    "ItemSet",
    "Listed",
    "RunComparison",
    "SideComparison",
    "StoredReference",
    "StoredRun",
    "compare_stored",
    "item_set_difference",
    "items_difference",
    "load_reference",
    "load_run",
    "newest_first",
    "planned_items",
    "read_run",
    "record_items",
    "reports_folder",
    "resolve_run",
    "stored_runs",
]

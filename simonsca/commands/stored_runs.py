"""``simonsca runs``: stored runs read back (:mod:`simonsca.runs`) -- no model needed."""

from __future__ import annotations

import argparse
from typing import Any

from simonsca.commands.common import Parser


def _runs_list(args: argparse.Namespace) -> int:
    from simonsca import runs
    from simonsca.runs.views import runs_table

    folder = runs.reports_folder(args.reports_dir)
    listed = runs.newest_first(runs.stored_runs(folder))
    print(runs_table(listed) if listed else f"no stored runs in {folder}")
    return 0


def _runs_compare(args: argparse.Namespace) -> int:
    from simonsca import runs
    from simonsca.runs.views import comparison_text

    folder = runs.reports_folder(args.reports_dir)
    a, b = runs.load_run(args.a, folder), runs.load_run(args.b, folder)
    print(comparison_text(runs.compare_stored(a, b)), end="")
    return 0


def add_parsers(sub: Any) -> None:
    """Register ``runs`` and its actions."""
    rn = sub.add_parser(
        "runs",
        help="stored runs (reports/): list them, compare two item by item -- no model needed",
        description="Read the runs simonsca compare and simonsca eval stored (report.json in "
        "a folder per run) back, with no model file. A RUN is a run folder, its report.json, "
        "or a run id in the reports folder (latest: the newest).",
    )
    actions = rn.add_subparsers(
        dest="runs_action", required=True, metavar="ACTION", parser_class=Parser
    )
    reports = {
        "metavar": "DIR",
        "help": "the reports folder (default: [tool.simonsca] reports_dir, else reports/)",
    }
    ls = actions.add_parser(
        "list",
        help="one line per stored run, newest first",
        description="One line per stored run, newest first: run id, date, models, items, "
        "verdict, checks.",
    )
    ls.add_argument("--reports-dir", **reports)
    ls.set_defaults(handler=_runs_list)
    rc = actions.add_parser(
        "compare",
        help="run B against run A on the same items, from their stored scores",
        description="Pair two stored runs item by item and show, per model side both have "
        "(merged, base, ...), B minus A with paired bootstrap CIs: teacher-forced cell "
        "accuracy, answer NLL (signed-rank test), cell accuracy, parse rate. Refused in one "
        "line when the runs' items differ. No model is loaded.",
    )
    rc.add_argument("a", metavar="A", help="the earlier run (folder, report.json or run id)")
    rc.add_argument("b", metavar="B", help="the later run")
    rc.add_argument("--reports-dir", **reports)
    rc.set_defaults(handler=_runs_compare)

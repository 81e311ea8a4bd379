"""Stored runs as terminal text: the list of runs, and run B against run A.

Only reads: labels, units and directions come from :mod:`simonsca.metrics`, the table layout from
:mod:`simonsca.report.terminal`.
"""

from __future__ import annotations

from collections.abc import Sequence

from simonsca.compare import Delta
from simonsca.metrics import METRICS
from simonsca.record import EvalRecord
from simonsca.report.tables import delta_cells
from simonsca.report.terminal import text_table
from simonsca.runs.pairing import (
    CONTENDER_ROLES,
    RunComparison,
    SideComparison,
    contenders,
    scored_seeds,
)
from simonsca.runs.store import Listed

#: What ``simonsca runs compare`` shows per side, most telling first (those a run has).
RUN_METRICS: tuple[str, ...] = ("forced_cell_accuracy", "nll", "cell_accuracy", "parse_ok")


def date_text(created: str) -> str:
    """``2026-12-05 14:28Z`` from the record's ISO time."""
    return created.replace("T", " ")[:16] + ("Z" if created.endswith("Z") else "")


def models_text(record: EvalRecord) -> str:
    """``base=base.gguf vs merged=merged.gguf``; several candidates after one ``vs``, comma
    separated; a one-model run: ``model=...``."""
    e = record.evaluation
    names = {
        m.contender: m.info.name
        for m in e.models
        if m.kind == "model" and m.prompt_mode == e.primary_mode and m.role in CONTENDER_ROLES
    }
    shown = [(n, role) for n, role in contenders(record) if n in names]
    reference = [f"{n}={names[n]}" for n, role in shown if role == "reference"]
    others = ", ".join(f"{n}={names[n]}" for n, role in shown if role != "reference")
    return " vs ".join([*reference, *([others] if others else [])]) or "-"


def items_text(record: EvalRecord) -> str:
    e = record.evaluation
    gen, forced = len(scored_seeds(e, forced=False)), len(scored_seeds(e, forced=True))
    counts = [f"{gen} gen"] if gen else []
    counts += [f"{forced} TF"] if forced else []
    first = min((i.seed for i in e.items), default=e.settings.eval_seed)
    return f"{e.settings.eval_family} from {first}: {', '.join(counts) or 'none'}; {e.settings.prompt_mode}"


def _verdict_word(record: EvalRecord, candidate: str) -> str:
    if record.evaluation.files_identical(candidate):
        return "IDENTICAL"
    verdict = record.verdict_of(candidate)
    return verdict.word if verdict is not None else "-"


def verdict_text(record: EvalRecord) -> str:
    """The one candidate's verdict; several: ``name WORD`` each; none: ``- (one model)``."""
    candidates = record.evaluation.candidates
    if not candidates:
        return "- (one model)"
    if len(candidates) == 1:
        return _verdict_word(record, candidates[0].name)
    return ", ".join(f"{c.name} {_verdict_word(record, c.name)}" for c in candidates)


def checks_text(record: EvalRecord) -> str:
    if not record.checks:
        return "-"
    failed = len(record.failed)
    return f"FAIL {failed}/{len(record.checks)}" if failed else f"PASS ({len(record.checks)})"


def runs_table(listed: Sequence[Listed]) -> str:
    """``simonsca runs list``: one line per run, as given (newest first)."""
    header = ["run", "created", "models", "items", "verdict", "checks"]
    rows = []
    for entry in listed:
        if entry.run is None:
            rows.append([entry.folder.name, "-", f"unreadable: {entry.problem}", "", "", ""])
            continue
        r = entry.run.record
        rows.append(
            [
                r.run_id,
                date_text(r.created),
                models_text(r),
                items_text(r),
                verdict_text(r),
                checks_text(r),
            ]
        )
    return text_table(header, rows)


def _delta(side: SideComparison, metric: str) -> tuple[Delta, str] | None:
    """The side's delta of ``metric`` and the test beside it (if any)."""
    if metric == "nll" and side.likelihood is not None:
        return side.likelihood.delta, f"signed-rank p={side.likelihood.signed_rank.p:.3g}"
    for mode in (side.forced, side.generation):
        found = mode.delta(metric) if mode is not None else None
        if found is not None:
            return found, ""
    return None


def _direction(d: Delta) -> str:
    """``better``/``worse`` when the CI of B - A excludes 0, else ``-``."""
    if d.low <= 0 <= d.high:
        return "-"
    up = d.low > 0
    return "better" if up == METRICS[d.metric].higher_is_better else "worse"


def comparison_text(c: RunComparison) -> str:
    """``simonsca runs compare A B``: both runs, the shared items, then B - A per contender."""
    out = []
    for name, run in (("A", c.a), ("B", c.b)):
        r = run.record
        out.append(
            f"{name}: {r.run_id} ({date_text(r.created)}) {models_text(r)}; verdict "
            f"{verdict_text(r)}, checks {checks_text(r)}"
        )
    out.append(f"items: {c.items} (the same in both runs)")
    for side in c.sides:
        same = {True: "the same files in both runs", False: "other files", None: "not hashed"}[
            side.same_files
        ]
        if side.prompt_mode != c.a.record.evaluation.primary_mode:
            continue  # the same models in the other prompt mode
        out.append(f"{side.label}: A {side.a.name} vs B {side.b.name} ({same})")
    confidence = f"{100 * (1 - c.alpha):g}% CI"
    header = ["contender", "metric", "A", "B", "B - A", confidence, "B vs A", "n", "test"]
    rows = []
    for side in c.sides:
        for metric in RUN_METRICS:
            found = _delta(side, metric)
            if found is None:
                continue
            d, test = found
            rows.append([side.label, *delta_cells(d), _direction(d), str(d.n), test])
    out += ["", text_table(header, rows)]
    return "\n".join(out) + "\n"

"""The rows every view shows, built once from the record: models, deltas, families, checks.

Cells are plain text; each view (terminal, Markdown, HTML) only lays them out and escapes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from simonsca.checks import CheckOutcome, Status, family_regressed
from simonsca.compare import (
    Comparison,
    Delta,
    LikelihoodComparison,
    ModeComparison,
    likelihood_line,
)
from simonsca.metrics import FORCED_METRICS, GENERATION_METRICS, METRICS
from simonsca.record import EvalRecord, Evaluation, MergeCheck
from simonsca.summary import Estimate

Table = tuple[list[str], list[list[str]]]

#: How each score is defined, in the words every view shows (the HTML legend, this summary).
SCORING_DEFINITIONS: tuple[str, ...] = (
    (
        "Cell accuracy = right cells \u00f7 the cells of either grid (answer laid on the expected "
        "grid at the top-left; every expected cell the answer lacks and every extra cell it adds "
        "counts wrong)."
    ),
    "Live F1 = F1 of live cells by position (dead cells, padding included, do not count).",
    (
        "Teacher-forced cell accuracy = share of cells whose token is the model's top choice "
        "given the right prefix."
    ),
)


def estimate_cell(name: str, e: Estimate | None) -> str:
    """``35.6% (28-44)``: the value and its 95% interval."""
    spec = METRICS[name]
    if e is None or e.value is None:
        return "-"
    return f"{spec.value_text(e.value)} ({spec.interval_text(e.low, e.high)})"


def model_rows(evaluation: Evaluation) -> Table:
    """Every model and baseline with each metric and its 95% CI, and items/s."""
    gen = [m for m in GENERATION_METRICS]
    tf = [m for m in FORCED_METRICS] if evaluation.forced_summaries else []
    header = ["", "kind", "mode"] + [METRICS[m].column for m in gen + tf] + ["items/s"]
    rows = []
    for m in evaluation.models:
        summary = evaluation.summaries.get(m.label)
        forced = evaluation.forced_summaries.get(m.label)
        cells = [m.label, m.kind, m.prompt_mode]
        cells += [estimate_cell(k, summary.metrics.get(k) if summary else None) for k in gen]
        cells += [estimate_cell(k, forced.metrics.get(k) if forced else None) for k in tf]
        if m.kind == "baseline":
            speed = "-"
        else:
            parts = []
            for value, n in (
                (m.generation_items_per_second, m.n_answers),
                (m.forced_items_per_second, m.n_forced),
            ):
                if n:
                    parts.append("cached" if value is None else f"{value:.2f}")
            speed = " / ".join(parts) or "-"
        rows.append(cells + [speed])
    return header, rows


def delta_cells(d: Delta) -> list[str]:
    """One delta as table cells: metric, its two values, the difference and its CI."""
    spec = METRICS[d.metric]
    return [
        spec.label,
        spec.value_text(d.base),
        spec.value_text(d.merged),
        spec.delta_text(d.diff),
        f"{spec.delta_text(d.low)} to {spec.delta_text(d.high)}",
    ]


def delta_rows(comparison: Comparison) -> Table:
    header = ["metric", "base", "merged", "delta", "95% CI"]
    rows = []
    for mode in (comparison.generation, comparison.forced):
        rows += [delta_cells(d) for d in (mode.deltas if mode is not None else ())]
    return header, rows


def family_rows(mode: ModeComparison, limit: float) -> Table:
    header = ["facet", "value", "n", "base", "merged", "delta", "95% CI"]
    rows = []
    for f in mode.families:
        spec = METRICS[f.metric]
        flag = " (!)" if family_regressed(f, limit) else ""
        rows.append(
            [
                f.facet,
                f.value,
                str(f.n),
                spec.value_text(f.base),
                spec.value_text(f.merged),
                spec.delta_text(f.diff) + flag,
                f"{spec.delta_text(f.low)} to {spec.delta_text(f.high)}",
            ]
        )
    return header, rows


def exact_test_line(mode: ModeComparison) -> str:
    t = mode.exact_test
    what = "exact match" if mode.scoring == "generate" else "greedy-consistent exact"
    return (
        f"McNemar exact test on {what}: {t.n} discordant items "
        f"(only base right or only merged right), p={t.p:.4g}"
    )


def likelihood_text(lik: LikelihoodComparison) -> str:
    return "likelihood: " + likelihood_line(lik)


def likelihood_lines(evaluation: Evaluation) -> list[str]:
    """``likelihood: ...``: the paired NLL line of a comparison, or each model's answer NLL with
    its CI when one model was judged (``simonsca eval``)."""
    c = evaluation.comparison
    if c is not None:
        return [likelihood_text(c.likelihood)] if c.likelihood is not None else []
    noise = evaluation.noise
    floor = f"; noise floor {noise.item_nll:.4f} nats/token ({noise.method})" if noise else ""
    out = []
    for label, summary in evaluation.forced_summaries.items():
        e = summary.metrics.get("nll")
        if e is None or e.value is None or e.low is None or e.high is None:
            continue
        out.append(
            f"likelihood: answer NLL {label} {e.value:.3f} nats/token (95% CI {e.low:.3f} to "
            f"{e.high:.3f}, n={e.n}){floor}"
        )
    return out


def check_rows(record: EvalRecord) -> Table:
    header = ["check", "outcome", "why"]
    rows = [[c.test, c.status.value.upper(), c.message] for c in record.checks]
    return header, rows


def verdict_title(record: EvalRecord) -> str:
    comparison = record.evaluation.comparison
    if comparison is None:
        if record.evaluation.files_identical:
            return "simonsca: merged vs base -- IDENTICAL"
        return "simonsca evaluation"
    return f"simonsca: merged vs base -- {comparison.verdict.word}"


def verdict_line(record: EvalRecord) -> str | None:
    """``verdict: WORD -- headline``: the first line a user reads."""
    e = record.evaluation
    if e.files_identical:
        return (
            "verdict: IDENTICAL -- identical: the merged model files are byte-identical to the "
            "base (nothing was run; the finetune changed nothing)"
        )
    c = e.comparison
    if c is None:
        return None
    return f"verdict: {c.verdict.word} -- {c.headline}"


def gate_line(checks: Sequence[CheckOutcome]) -> str:
    """What the checks decided, counted -- and nothing more."""
    if not checks:
        return "No checks were run."
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    tally = (
        f"{counts[Status.PASSED]} passed, {counts[Status.FAILED]} failed, "
        f"{counts[Status.XFAILED]} expected failures (not required), "
        f"{counts[Status.SKIPPED]} skipped"
    )
    failed = [c.name for c in checks if c.failed]
    if failed:
        return f"{len(failed)} of {len(checks)} checks failed ({', '.join(failed)}): {tally}."
    return f"No check failed: {tally}."


def merge_check_line(check: MergeCheck) -> str:
    return (
        f"merge check: the merged file answers exactly like base + {check.adapter} on "
        f"{check.identical} of {check.n} items"
    )

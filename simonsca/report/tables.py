"""The rows every view shows, built once from the record: models, deltas, families, checks.

Cells are plain text; each view (terminal, Markdown, HTML) only lays them out and escapes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from simonsca.compare import Delta, LikelihoodComparison, ModeComparison
from simonsca.curve import Curve
from simonsca.metrics import FORCED_METRICS, GENERATION_METRICS, METRICS
from simonsca.outcome import CheckOutcome, Status
from simonsca.record import EvalRecord, Evaluation, MergeCheck
from simonsca.stats import ci_label
from simonsca.summary import Estimate
from simonsca.verdict import Comparison, likelihood_line, noise_text

Table = tuple[list[str], list[list[str]]]

#: The two-model run's names: a comparison without names of its own is base vs merged.
NAMES = ("base", "merged")

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
    """Every paired delta (generation, then teacher-forced); the header names both sides."""
    header = ["metric", *comparison.names, "delta", ci_label(comparison.alpha)]
    rows = []
    for mode in (comparison.generation, comparison.forced):
        rows += [delta_cells(d) for d in (mode.deltas if mode is not None else ())]
    return header, rows


def family_rows(
    mode: ModeComparison, limit: float, names: tuple[str, str] = NAMES, alpha: float = 0.05
) -> Table:
    header = ["facet", "value", "n", *names, "delta", ci_label(alpha)]
    rows = []
    for f in mode.families:
        spec = METRICS[f.metric]
        flag = " (!)" if f.regressed else ""
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


def exact_test_line(mode: ModeComparison, names: tuple[str, str] = NAMES) -> str:
    t = mode.exact_test
    what = "exact match" if mode.scoring == "generate" else "greedy-consistent exact"
    return (
        f"McNemar exact test on {what}: {t.n} discordant items "
        f"(only {names[0]} right or only {names[1]} right), p={t.p:.4g}"
    )


def likelihood_text(
    lik: LikelihoodComparison, names: tuple[str, str] = NAMES, alpha: float = 0.05
) -> str:
    return "likelihood: " + likelihood_line(lik, names, alpha)


def primary_comparisons(evaluation: Evaluation) -> list[tuple[str, Comparison]]:
    """(candidate, its comparison with the reference) in the primary prompt mode, candidates in
    the run's order (those without a comparison left out)."""
    out = []
    for candidate in evaluation.candidates:
        c = evaluation.comparison_of(candidate.name)
        if c is not None:
            out.append((candidate.name, c))
    return out


def curve_of(evaluation: Evaluation) -> Curve | None:
    """The run's learning curve (None: fewer than two checkpoints), as the record holds it --
    the one place the views get it."""
    return evaluation.curve


def several(evaluation: Evaluation) -> bool:
    """More than one candidate: every line says which one it is about."""
    return len(evaluation.candidates) > 1


def likelihood_lines(evaluation: Evaluation) -> list[str]:
    """``likelihood: ...``: the paired NLL line of each candidate's comparison, or each model's
    answer NLL with its CI when one model was judged (``simonsca eval``)."""
    found = [
        (c, lik) for _, c in primary_comparisons(evaluation) if (lik := c.likelihood) is not None
    ]
    if len(found) > 1:
        # one floor for every candidate (it is the reference's): said once, after them
        lines = [
            "likelihood: " + likelihood_line(lik, c.names, c.alpha, with_noise=False)
            for c, lik in found
        ]
        return [*lines, f"likelihood: {noise_text(evaluation.noise)} (the reference's, for all)"]
    if found:
        return [likelihood_text(lik, c.names, c.alpha) for c, lik in found]
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


def check_name(outcome: CheckOutcome, checks: Sequence[CheckOutcome]) -> str:
    """The test a check row names: ``test_x`` when the run has one candidate,
    ``test_x[checkpoint-20]`` (its pytest id) when it has several."""
    if len({c.candidate for c in checks}) > 1:
        return outcome.test_id
    return outcome.test


def check_rows(record: EvalRecord) -> Table:
    """Every check's outcome, by candidate (each row names its candidate when there are
    several)."""
    header = ["check", "outcome", "why"]
    checks = record.checks
    rows = [[check_name(c, checks), c.status.value.upper(), c.message] for c in checks]
    return header, rows


def _verdict_word(e: Evaluation, candidate: str) -> str | None:
    if e.files_identical(candidate):
        return "IDENTICAL"
    c = e.comparison_of(candidate)
    return c.verdict.word if c is not None else None


def verdict_title(record: EvalRecord) -> str:
    """``simonsca: merged vs base -- IMPROVED``; with several candidates, each verdict counted:
    ``simonsca: 3 candidates vs base -- 2 IMPROVED, 1 NO EFFECT``."""
    e = record.evaluation
    reference = e.reference or "base"
    words = [(c.name, _verdict_word(e, c.name)) for c in e.candidates]
    known = [(name, word) for name, word in words if word is not None]
    if not known:
        return "simonsca evaluation"
    if len(e.candidates) == 1:
        name, word = known[0]
        return f"simonsca: {name} vs {reference} -- {word}"
    counts: dict[str, int] = {}
    for _, word in known:
        counts[word] = counts.get(word, 0) + 1
    tally = ", ".join(f"{n} {word}" for word, n in counts.items())
    return f"simonsca: {len(e.candidates)} candidates vs {reference} -- {tally}"


def _identical_line(e: Evaluation, candidate: str) -> str:
    reference = e.reference or "base"
    who = "merged" if candidate == "merged" else candidate
    the = "the base" if reference == "base" else f"the reference ({reference})"
    return (
        f"identical: the {who} model files are byte-identical to {the} (nothing was run; the "
        "finetune changed nothing)"
    )


def verdict_lines(record: EvalRecord) -> list[str]:
    """The first lines a user reads, one per candidate: ``verdict: WORD -- headline`` (one
    candidate), ``verdict checkpoint-20: WORD -- headline`` (several)."""
    e = record.evaluation
    out = []
    for candidate in e.candidates:
        line = verdict_line(record, candidate.name)
        if line is not None:
            out.append(line)
    return out


def verdict_line(record: EvalRecord, candidate: str | None = None) -> str | None:
    """``candidate``'s verdict line (default: the first candidate's); None when it has none."""
    e = record.evaluation
    if candidate is None:
        if not e.candidates:
            return None
        candidate = e.candidates[0].name
    prefix = f"verdict {candidate}" if several(e) else "verdict"
    if e.files_identical(candidate):
        return f"{prefix}: IDENTICAL -- {_identical_line(e, candidate)}"
    c = e.comparison_of(candidate)
    if c is None:
        return None
    return f"{prefix}: {c.verdict.word} -- {c.headline}"


def other_mode_lines(evaluation: Evaluation) -> list[str]:
    """``chat prompts: WORD -- headline``: each comparison in a prompt mode other than the
    primary one (``chat prompts, checkpoint-20: ...`` with several candidates)."""
    out = []
    for p in evaluation.comparisons:
        if p.prompt_mode == evaluation.primary_mode:
            continue
        who = f", {p.candidate}" if several(evaluation) else ""
        c = p.comparison
        out.append(f"{p.prompt_mode} prompts{who}: {c.verdict.word} -- {c.headline}")
    return out


def identical_sentence(evaluation: Evaluation, candidate: str) -> str:
    """Why nothing was run for ``candidate``."""
    if not several(evaluation):
        return "Nothing was run: the model files are byte-identical, so every answer would be."
    return (
        f"Nothing was run for {candidate}: its model files are byte-identical to "
        f"{evaluation.reference or 'base'}'s, so every answer would be."
    )


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
    named = len({c.candidate for c in checks}) > 1
    failed = [f"{c.name}[{c.candidate}]" if named else c.name for c in checks if c.failed]
    if failed:
        return f"{len(failed)} of {len(checks)} checks failed ({', '.join(failed)}): {tally}."
    return f"No check failed: {tally}."


def merge_check_line(check: MergeCheck, reference: str | None = "base") -> str:
    return (
        f"merge check: the {check.candidate} file answers exactly like {reference or 'base'} + "
        f"{check.adapter} on {check.identical} of {check.n} items"
    )

"""The evaluation ``pytest evals/``, ``simonsca compare`` and ``simonsca eval`` all run.

plan (:mod:`simonsca.plan`: every file and folder checked before any model work; who is compared:
:mod:`simonsca.contenders`) -> answers (:mod:`simonsca.answering`: the reference and each
candidate, greedy and teacher-forced, per prompt mode; baselines) -> scores (once) -> summaries
and comparisons (each candidate against the reference, at its multiplicity-corrected level) ->
findings -> checks (per candidate) -> one :class:`~simonsca.record.EvalRecord` -> reports.
Candidates whose files are byte-identical to the reference's are ``IDENTICAL`` at once, without
loading anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from simonsca.answering import Answers, Say, answer_all, stderr
from simonsca.cache import open_cache
from simonsca.checks import evaluate_checks
from simonsca.compare import NoiseFloor
from simonsca.contenders import Contender
from simonsca.curve import Curve
from simonsca.forensics.findings import Finding, Severity
from simonsca.gguf_file import identical_files
from simonsca.learning_curve import learning_curve
from simonsca.likelihood import forced_score
from simonsca.metrics import FORCED_METRICS, GENERATION_METRICS, METRICS
from simonsca.models import BASELINES
from simonsca.multiplicity import candidate_levels
from simonsca.plan import Plan, held_out_items, make_run_id, plan
from simonsca.record import (
    SCHEMA,
    Candidate,
    Environment,
    EvalRecord,
    Evaluation,
    ItemRecord,
    ModelEntry,
    Pairing,
    answer_record,
    item_record,
    label_of,
    now_iso,
)
from simonsca.runner import ForcedRun, GenerationRun, answer_baseline
from simonsca.settings import Settings
from simonsca.summary import summarize
from simonsca.tasks import Item
from simonsca.verdict import Comparison, Verdict, compare_runs

if TYPE_CHECKING:
    from simonsca.runs.reference import StoredReference

__all__ = ["SuiteResult", "evaluate_plan", "make_run_id", "plan", "run_baselines", "run_suite"]

#: Finding code: the raw-format gain is not (or hardly) reachable through the chat template.
GAIN_LOST_IN_CHAT = "gain-only-in-raw-format"


@dataclass(frozen=True)
class SuiteResult:
    """The record of one run, and where its reports were written."""

    record: EvalRecord
    report_dir: Path | None


# --------------------------------------------------------------------------- scoring, records


def _item_records(
    items: Sequence[Item],
    generation: Mapping[str, GenerationRun],
    forced: Mapping[str, ForcedRun],
    stored: StoredReference | None,
) -> tuple[ItemRecord, ...]:
    """Every item with every answer to it, parsed and scored once; ``stored``: a stored
    reference, whose answers and scores are read under its labels, not re-run."""
    out = []
    for k, item in enumerate(items):
        answers = {}
        for label, run in generation.items():
            if k < len(run.predictions):
                said = run.predictions[k]
                answers[label] = answer_record(
                    item,
                    said.text,
                    n_tokens=said.n_tokens,
                    finish_reason=said.finish_reason,
                    cached=said.cached,
                    prompt=None if said.prompt == item.prompt else said.prompt,
                )
        scores = {
            label: forced_score(item, run.likelihoods[k])
            for label, run in forced.items()
            if k < len(run.likelihoods)
        }
        if stored is not None:
            stored_answers, stored_forced = stored.for_item(item.seed)
            answers.update(stored_answers)
            scores.update(stored_forced)
        out.append(item_record(item, answers, scores))
    return tuple(out)


def _model_entries(answers: Answers, baselines: Mapping[str, GenerationRun]) -> list[ModelEntry]:
    entries = []
    for label in dict.fromkeys([*answers.generation, *answers.forced]):
        role, contender = answers.contenders[label]
        gen = answers.generation.get(label)
        tf = answers.forced.get(label)
        run = gen or tf
        assert run is not None
        finish: dict[str, int] = {}
        for pred in gen.predictions if gen else ():
            finish[pred.finish_reason] = finish.get(pred.finish_reason, 0) + 1
        entries.append(
            ModelEntry(
                label=label,
                contender=contender.name,
                role=role,
                kind="model",
                prompt_mode=run.prompt_mode.value,
                info=run.info,
                origin=contender.spec.origin,
                generation_seconds=gen.seconds if gen else 0.0,
                generation_items_per_second=gen.items_per_second if gen else None,
                n_answers=len(gen.predictions) if gen else 0,
                n_cached=sum(p.cached for p in gen.predictions) if gen else 0,
                n_generated_tokens=sum(p.n_tokens for p in gen.predictions) if gen else 0,
                finish_reasons=finish,
                forced_seconds=tf.seconds if tf else 0.0,
                forced_items_per_second=tf.items_per_second if tf else None,
                n_forced=len(tf.likelihoods) if tf else 0,
            )
        )
    for label, baseline in baselines.items():
        entries.append(
            ModelEntry(
                label=label,
                contender=label,
                role="baseline",
                kind="baseline",
                prompt_mode=baseline.prompt_mode.value,
                info=baseline.info,
                n_answers=len(baseline.predictions),
                finish_reasons={"stop": len(baseline.predictions)},
            )
        )
    return entries


def run_baselines(items: Sequence[Item]) -> dict[str, GenerationRun]:
    """Every trivial baseline (and the oracle) on ``items``: the bar the models are read
    against."""
    return {name: answer_baseline(cls(), items) for name, cls in BASELINES.items()}


def _compare_mode(
    items: Sequence[ItemRecord],
    ref: str,
    cand: str,
    names: tuple[str, str],
    baselines: Sequence[str],
    noise: NoiseFloor | None,
    alpha: float,
    flip_margin: float | None,
    family_limit: float,
) -> Comparison:
    answered = [i for i in items if ref in i.answers and cand in i.answers]
    forced = [i for i in items if ref in i.forced and cand in i.forced]
    return compare_runs(
        base=[i.answers[ref].score for i in answered],
        merged=[i.answers[cand].score for i in answered],
        base_texts=[i.answers[ref].text for i in answered],
        merged_texts=[i.answers[cand].text for i in answered],
        baselines={b: [i.answers[b].score for i in items] for b in baselines},
        base_forced=[i.forced[ref] for i in forced],
        merged_forced=[i.forced[cand] for i in forced],
        noise=noise,
        flip_margin=flip_margin,
        alpha=alpha,
        names=names,
        family_limit=family_limit,
    )


def _comparisons(
    p: Plan,
    items: Sequence[ItemRecord],
    running: Sequence[Contender],
    baselines: Sequence[str],
    answers: Answers,
) -> tuple[Pairing, ...]:
    """Each running candidate against the reference in every prompt mode, each candidate at
    its level under ``--correction`` (:mod:`simonsca.multiplicity`): a first pass at alpha
    orders the candidates by their primary p-value, the second judges each at its level."""
    s = p.settings
    ref = p.reference_name
    if ref is None or not running:
        return ()
    primary = s.prompt_modes[0]

    def judge(c: Contender, mode: str, alpha: float) -> Comparison:
        cand = label_of(c.name, mode, primary)
        return _compare_mode(
            items,
            label_of(ref, mode, primary),
            cand,
            (ref, c.name),
            baselines,
            answers.noise,
            alpha,
            answers.flips.get(cand),
            s.max_family_regression,
        )

    first = {c.name: judge(c, primary, s.alpha) for c in running}
    p_values = {
        name: (c.primary.primary_test.p if c.primary.primary_test is not None else 1.0)
        for name, c in first.items()
    }
    levels = candidate_levels(p_values, s.alpha, s.correction)
    out = []
    for c in running:
        for mode in s.prompt_modes:
            level = levels[c.name]
            comparison = (
                first[c.name] if mode == primary and level == s.alpha else judge(c, mode, level)
            )
            out.append(Pairing(ref, c.name, mode, comparison))
    return tuple(out)


def _findings(p: Plan, e: Evaluation, say: Say) -> tuple[Finding, ...]:
    """Causes, for each candidate whose finetune changed nothing (forensics on the files)."""
    if p.reference is None or p.reference.spec.is_url:
        return ()
    out: list[Finding] = []
    for c in p.candidates:
        comparison = e.comparison_of(c.name)
        quiet = e.files_identical(c.name) or (
            comparison is not None and comparison.verdict in (Verdict.INERT, Verdict.NO_EFFECT)
        )
        if not quiet or c.spec.is_url:
            continue
        from simonsca.forensics import explain_failure

        say("simonsca: looking for causes (weight diff, adapter vs quantisation step)")
        base = p.reference.spec.path
        merged = c.spec.path if c.spec.path != base else None
        found = explain_failure(base=base, merged=merged, adapter=c.spec.lora)
        if len(p.candidates) > 1:
            found = tuple(replace(f, title=f"{c.name}: {f.title}") for f in found)
        out += found
    return tuple(out)


def _chat_findings(record: EvalRecord) -> tuple[Finding, ...]:
    out = []
    for c in record.evaluation.candidates:
        outcome = record.check("gain_holds_in_chat_format", c.name)
        if outcome.failed:
            several = len(record.evaluation.candidates) > 1
            out.append(
                Finding(
                    GAIN_LOST_IN_CHAT,
                    Severity.WARNING,
                    (f"{c.name}: " if several else "")
                    + "the finetune's gain exists only in the raw training format",
                    outcome.message,
                    {},
                )
            )
    return tuple(out)


def _identical(p: Plan) -> dict[str, bool]:
    """Candidates whose files (and adapters) are byte-identical to the reference's."""
    ref = p.reference
    if ref is None or ref.spec.is_url:
        return {}
    return {
        c.name: True
        for c in p.candidates
        if not c.spec.is_url
        and identical_files(ref.spec.path, c.spec.path, ref.spec.lora, c.spec.lora)
    }


def _confirmed(p: Plan, curve: Curve | None, say: Say) -> Curve | None:
    """With ``--confirm-best``: the best checkpoint and the reference answer as many fresh
    held-out items (the seeds after this run's) -- the best is then measured on items it was not
    picked on (picking and measuring on the same items flatters the winner)."""
    s = p.settings
    if not s.confirm_best or curve is None or curve.best is None or p.reference is None:
        return curve
    best = next(c for c in p.candidates if c.name == curve.best.name)
    fresh_seed = s.eval_seed + s.n_items
    say(f"simonsca: confirming {best.name} on {s.n_items} fresh items from seed {fresh_seed}")
    fresh = replace(s, eval_seed=fresh_seed, confirm_best=False, reports_dir=None, run_id=None)
    again = evaluate_plan(
        replace(
            p, settings=fresh, candidates=(best,), items=held_out_items(fresh), reports_dir=None
        ),
        say=say,
    ).evaluation
    comparison = again.comparison_of(best.name)
    metric = curve.best.metric
    summaries = again.forced_summaries if metric in FORCED_METRICS else again.summaries
    summary = summaries.get(best.name)
    value = summary.metrics.get(metric) if summary is not None else None
    ref = summaries.get(p.reference.name)
    ref_value = ref.metrics.get(metric) if ref is not None else None
    if comparison is None or value is None or value.value is None:
        return curve
    spec = METRICS[metric]
    sentence = (
        f"on {value.n} fresh held-out items (seeds from {fresh_seed:,}): {spec.label} "
        f"{spec.value_text(value.value)} (95% CI {spec.value_text(value.low)} to "
        f"{spec.value_text(value.high)})"
        + (
            f", {p.reference.name} {spec.value_text(ref_value.value)}"
            if ref_value is not None and ref_value.value is not None
            else ""
        )
        + f"; verdict there {comparison.verdict.word}"
    )
    return replace(curve, best=replace(curve.best, confirmed=sentence))


def evaluate_plan(p: Plan, *, say: Say = stderr) -> EvalRecord:
    """Run a checked :class:`Plan` and judge it; the record of the run."""
    s = p.settings
    created = now_iso()
    identical = _identical(p)
    running = tuple(c for c in p.candidates if c.name not in identical)
    for name in identical:
        which = "base and merged files are" if name == "merged" else f"{name}'s files are"
        say(f"simonsca: {which} byte-identical -- nothing to run (verdict: identical)")
    answers = Answers()
    if running:
        cache = open_cache(s.cache)
        try:
            answers = answer_all(replace(p, candidates=running), cache, say)
        finally:
            if cache is not None:
                cache.close()
    if p.stored is not None:
        answers.noise = p.stored.noise

    baselines = run_baselines(p.items)
    items = _item_records(p.items, {**answers.generation, **baselines}, answers.forced, p.stored)
    entries = _model_entries(answers, baselines)
    if p.stored is not None:
        entries = [*p.stored.model_entries(), *entries]
    labels = [e.label for e in entries]
    summaries = {
        label: summarize(
            [i.answers[label].score for i in items if label in i.answers], GENERATION_METRICS
        )
        for label in labels
        if any(label in i.answers for i in items)
    }
    forced_summaries = {
        label: summarize([i.forced[label] for i in items if label in i.forced], FORCED_METRICS)
        for label in labels
        if any(label in i.forced for i in items)
    }
    warnings = tuple(
        w
        for run in [*answers.generation.values(), *answers.forced.values()]
        for w in run.info.caveats
    )
    evaluation = Evaluation(
        settings=s,
        compared=p.describe(),
        items=items,
        models=tuple(entries),
        summaries=summaries,
        forced_summaries=forced_summaries,
        reference=None if p.single else p.reference_name,
        candidates=() if p.single else tuple(Candidate(c.name, c.step) for c in p.candidates),
        comparisons=_comparisons(p, items, running, list(baselines), answers),
        identical_files=identical,
        merge_checks=tuple(answers.merge_checks),
        noise=answers.noise,
        warnings=tuple(dict.fromkeys(warnings)),
    )
    evaluation = replace(
        evaluation,
        findings=_findings(p, evaluation, say),
        curve=_confirmed(p, learning_curve(evaluation), say),
    )
    record = EvalRecord(
        schema=SCHEMA,
        run_id=p.run_id,
        created=created,
        environment=Environment.current(),
        evaluation=evaluation,
        checks=evaluate_checks(evaluation),
    )
    chat = _chat_findings(record)
    if chat:
        evaluation = replace(evaluation, findings=(*evaluation.findings, *chat))
        record = replace(record, evaluation=evaluation)
    return record


def run_suite(settings: Settings, *, say: Say = stderr, single: str | None = None) -> SuiteResult:
    """Plan, run, judge and write the reports: what ``pytest evals/`` and the CLI run."""
    checked = plan(settings, single=single)
    record = evaluate_plan(checked, say=say)
    report_dir = None
    if checked.reports_dir is not None:
        from simonsca.report import write_reports

        report_dir = write_reports(record, checked.reports_dir)
    return SuiteResult(record=record, report_dir=report_dir)

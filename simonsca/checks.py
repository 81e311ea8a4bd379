"""Every pass/fail rule, once: what fails, on which setting, with which message.

Each :class:`Check` names the ``evals/`` test that enforces it, the settings it reads (from
:class:`~simonsca.settings.Settings`) and an ``evaluate`` function that turns an
:class:`~simonsca.record.Evaluation` into a :class:`CheckOutcome` (passed, failed, skipped or
expected failure, with a message that states the numbers). The ``evals/`` tests enforce the
outcomes one each, ``simonsca compare`` exits 1 exactly when one of them failed, and the reports
list them -- so the three cannot disagree (in the spirit of pytest-benchmark's regression
checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from simonsca.compare import FamilyDelta
from simonsca.metrics import METRICS, PRIMARY
from simonsca.outcome import CheckOutcome, Status
from simonsca.record import Evaluation
from simonsca.settings import Settings
from simonsca.stats import ci_label
from simonsca.verdict import Comparison, Verdict


@dataclass(frozen=True)
class Judged:
    """What a rule reads: the run, and the one candidate it judges (checks are per candidate:
    ``test_x[checkpoint-20]``). ``name`` is None in a run with no candidate."""

    e: Evaluation
    name: str | None
    # the numbers a rule's message states, noted as it decides (see CheckOutcome.detail)
    detail: dict[str, int | float | str] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.e.settings

    @property
    def comparison(self) -> Comparison | None:
        return self.e.comparison_of(self.name) if self.name is not None else None

    @property
    def files_identical(self) -> bool:
        return self.name is not None and self.e.files_identical(self.name)

    @property
    def who(self) -> str:
        """How messages name the candidate: ``merged`` or ``checkpoint-20``."""
        return self.name or "merged"

    @property
    def the_model(self) -> str:
        return "the merged model" if self.who == "merged" else self.who

    @property
    def the_reference(self) -> str:
        ref = self.e.reference or "base"
        return "the base" if ref == "base" else f"the reference ({ref})"


@dataclass(frozen=True)
class Check:
    """One rule: its name, its test, what makes it fail, the settings it reads."""

    name: str
    test: str
    fails_when: str
    settings: tuple[str, ...]
    evaluate: Callable[[Judged], tuple[Status, str]]


def _passed(message: str) -> tuple[Status, str]:
    return Status.PASSED, message


def _failed(message: str) -> tuple[Status, str]:
    return Status.FAILED, message


def _skipped(message: str) -> tuple[Status, str]:
    return Status.SKIPPED, message


# --------------------------------------------------------------------------- the rules


def _differs(e: Judged) -> tuple[Status, str]:
    c = e.comparison
    if e.files_identical:
        return _failed(
            "the finetune changed nothing: the merged model files are byte-identical to the base"
        )
    if c is None:
        return _skipped("no comparison with a reference in this run")
    e.detail["verdict"] = c.verdict.value
    if c.verdict is Verdict.INERT:
        return _failed(f"the finetune changed nothing that matters: {c.headline}")
    return _passed(f"{e.the_model} differs from {e.the_reference} ({c.verdict.word})")


def _significant(e: Judged) -> tuple[Status, str]:
    c = e.comparison
    if e.files_identical:
        return _failed("the finetune changed nothing at all (byte-identical files)")
    if c is None:
        return _skipped("no comparison with a reference in this run")
    e.detail.update(verdict=c.verdict.value, alpha=c.alpha)
    if c.verdict in (Verdict.INERT, Verdict.NO_EFFECT):
        what = (
            f"{e.the_model} answers no better and no worse than {e.the_reference} (the CI of the "
            f"gain includes 0 and McNemar p >= {c.alpha:g})"
        )
        return _failed(f"{what}: {c.headline}")
    return _passed(f"a significant effect: {c.verdict.word}")


def _no_regression(e: Judged) -> tuple[Status, str]:
    c = e.comparison
    if c is None:
        return (
            _passed("nothing was run, so nothing regressed")
            if e.files_identical
            else (_skipped("no comparison with a reference in this run"))
        )
    e.detail.update(verdict=c.verdict.value, alpha=c.alpha)
    if c.verdict is Verdict.REGRESSED:
        return _failed(f"{e.the_model} is significantly worse: {c.headline}")
    return _passed("no significant loss")


def _gain(metric: str, key: str) -> Callable[[Judged], tuple[Status, str]]:
    spec = METRICS[metric]

    def evaluate(e: Judged) -> tuple[Status, str]:
        threshold = getattr(e.settings, key)
        if threshold is None:
            return _skipped(f"no {key} configured ([tool.simonsca] or --{key.replace('_', '-')})")
        if e.files_identical:
            return _failed(
                f"{spec.label} gain is 0 (byte-identical files), below {key} "
                f"{spec.delta_text(threshold)}"
            )
        c = e.comparison
        d = c.delta(metric) if c is not None else None
        if c is None or d is None:
            return _skipped(f"no {spec.label} was measured (scoring {e.settings.scoring})")
        e.detail.update(
            metric=metric, diff=d.diff, low=d.low, high=d.high, n=d.n, threshold=threshold
        )
        numbers = (
            f"{spec.label} gain {spec.delta_text(d.diff)} ({e.e.reference or 'base'} "
            f"{spec.value_text(d.base)} -> "
            f"{e.who} {spec.value_text(d.merged)}, {ci_label(c.alpha)} "
            f"{spec.delta_text(d.low)} to {spec.delta_text(d.high)}, n={d.n})"
        )
        if d.diff < threshold - 1e-12:
            return _failed(f"{numbers} is below {key} {spec.delta_text(threshold)}")
        return _passed(f"{numbers} meets {key} {spec.delta_text(threshold)}")

    return evaluate


def family_regressions(c: Comparison) -> list[FamilyDelta]:
    """Every family of either scoring mode that regressed (``FamilyDelta.regressed``, decided by
    :func:`simonsca.compare.family_regressed` with max_family_regression)."""
    out = [
        f
        for mode in (c.generation, c.forced)
        for f in (mode.families if mode is not None else ())
        if f.regressed
    ]
    return sorted(out, key=lambda f: -abs(f.diff))


def _families(e: Judged) -> tuple[Status, str]:
    c = e.comparison
    limit = e.settings.max_family_regression
    if c is None:
        return (
            _passed("nothing was run, so no family regressed")
            if e.files_identical
            else (_skipped("no comparison with a reference in this run"))
        )
    worst = family_regressions(c)
    e.detail.update(regressed=len(worst), limit=limit)
    if worst:
        lines = "; ".join(
            f"{f.facet}={f.value} (n={f.n}): {METRICS[f.metric].label} "
            f"{METRICS[f.metric].value_text(f.base)} -> {METRICS[f.metric].value_text(f.merged)} "
            f"({METRICS[f.metric].delta_text(f.diff)})"
            for f in worst
        )
        return _failed(
            f"{len(worst)} families regressed by more than max_family_regression "
            f"{100 * limit:.1f} pp: {lines}"
        )
    return _passed(
        f"no family lost more than {100 * limit:.1f} pp of cell accuracy (greedy or teacher-forced)"
    )


def _well_formed(e: Judged) -> tuple[Status, str]:
    minimum = e.settings.min_parse_rate
    if e.files_identical:
        return _skipped("nothing was run: the files are byte-identical")
    label = e.e.label(e.name) if e.name is not None else None
    merged = e.e.summaries.get(label) if label is not None else None
    if merged is None:
        return _skipped("no greedy answers were generated (scoring teacher-forced)")
    parsed = merged.metrics["parse_ok"].value or 0.0
    shaped = merged.metrics["shape_ok"].value or 0.0
    e.detail.update(parse_rate=parsed, shape_rate=shaped)
    if minimum is not None:
        e.detail["threshold"] = minimum
    if minimum is None:
        return _skipped(
            f"no min_parse_rate configured ({e.who}: parse {parsed:.0%}, shape {shaped:.0%})"
        )
    if parsed < minimum - 1e-12:
        reasons = sorted(
            {
                s.reason
                for s in e.e.generation_scores(label or "")
                if not s.parse_ok and s.reason is not None
            }
        )[:5]
        return _failed(
            f"only {parsed:.0%} of {e.who} answers parse (shape ok {shaped:.0%}); min_parse_rate "
            f"is {minimum:.0%}. Typical reasons: {reasons}"
        )
    return _passed(f"{parsed:.0%} of {e.who} answers parse (min_parse_rate {minimum:.0%})")


def _skill(e: Judged) -> tuple[Status, str]:
    c = e.comparison
    b = c.baseline if c is not None else None
    if e.files_identical or b is None:
        return _skipped("no model answers to compare with the baselines")
    m = b.merged
    e.detail.update(metric=b.metric, best_baseline=b.best, baseline=b.best_value)
    e.detail.update(
        {k: v for k, v in (("value", m.value), ("low", m.low), ("high", m.high)) if v is not None}
    )
    if b.skill_shown:
        return _passed(f"skill beyond the trivial baselines: {b.sentence(e.who)}")
    message = f"no demonstrated skill beyond the answer format: {b.sentence(e.who)}"
    if not e.settings.require_skill:
        return Status.XFAILED, message + " (set require_skill = true or --require-skill to fail)"
    return _failed(message)


def _chat(e: Judged) -> tuple[Status, str]:
    if e.name is None:
        return _skipped("no comparison with a reference in this run")
    raw, chat = e.e.comparison_of(e.name, "raw"), e.e.comparison_of(e.name, "chat")
    if raw is None or chat is None:
        return _skipped("run with --prompt-mode both to compare the raw and chat formats")
    share = e.settings.min_chat_gain_share
    if raw.verdict is not Verdict.IMPROVED:
        return _skipped(f"no raw-format gain to keep (raw verdict {raw.verdict.word})")
    raw_d, chat_d = raw.delta("cell_accuracy"), chat.delta("cell_accuracy")
    if raw_d is None or chat_d is None:
        return _skipped("cell accuracy was not measured in both formats")
    spec = METRICS["cell_accuracy"]
    e.detail.update(raw_gain=raw_d.diff, chat_gain=chat_d.diff, share=share)
    numbers = (
        f"cell accuracy gain {spec.delta_text(raw_d.diff)} raw, {spec.delta_text(chat_d.diff)} "
        f"chat (chat verdict {chat.verdict.word})"
    )
    if chat.verdict is not Verdict.IMPROVED or chat_d.diff < share * raw_d.diff - 1e-12:
        return _failed(
            f"the finetune's gain is (mostly) lost in the chat format: {numbers}; the chat gain "
            f"must keep min_chat_gain_share {share:.0%} of the raw gain. Chat apps (LM Studio, "
            "...) wrap prompts in the chat template: they will not show the finetuned behaviour"
        )
    return _passed(f"the gain holds in the chat format: {numbers}")


def _merge(e: Judged) -> tuple[Status, str]:
    check = e.e.merge_check(e.name) if e.name is not None else None
    if check is None:
        return _skipped("the adapter behind the merged file is unknown (pass --merged-from-lora)")
    minimum = e.settings.min_merge_agreement
    e.detail.update(identical=check.identical, n=check.n, agreement=check.agreement)
    e.detail["threshold"] = minimum
    numbers = (
        f"the merged file and base + {check.adapter} give the same answer on {check.identical} "
        f"of {check.n} items ({check.agreement:.0%}; min_merge_agreement {minimum:.0%})"
    )
    if check.agreement < minimum - 1e-12:
        return _failed(numbers + ": the merge did not reproduce the adapter")
    return _passed(numbers)


def _vs_stored(e: Judged) -> tuple[Status, str]:
    limit = e.settings.max_drop_vs_stored
    if e.settings.compare_to is None:
        return _skipped("no stored run to compare with (--compare-to RUN)")
    c = e.comparison
    if c is None:
        return _skipped("no comparison with the stored run")
    metric = PRIMARY[c.primary.scoring]
    d = c.delta(metric)
    if d is None:
        return _skipped(f"no cell accuracy was measured (scoring {e.settings.scoring})")
    spec = METRICS[metric]
    e.detail.update(metric=metric, stored=d.base, now=d.merged, diff=d.diff, low=d.low)
    e.detail.update(high=d.high, n=d.n)
    if limit is not None:
        e.detail["threshold"] = limit
    numbers = (
        f"{spec.label} {spec.value_text(d.base)} in the stored run ({e.e.reference}) -> "
        f"{spec.value_text(d.merged)} now (delta {spec.delta_text(d.diff)}, {ci_label(c.alpha)} "
        f"{spec.delta_text(d.low)} to {spec.delta_text(d.high)}, n={d.n})"
    )
    if limit is None:
        return _skipped(f"no max_drop_vs_stored configured: {numbers}")
    if -d.diff > limit + 1e-12:
        return _failed(
            f"{e.who} dropped by more than max_drop_vs_stored {100 * limit:.1f} pp: {numbers}"
        )
    return _passed(f"no drop beyond max_drop_vs_stored {100 * limit:.1f} pp: {numbers}")


CHECKS: tuple[Check, ...] = (
    Check(
        "differs_from_base",
        "test_merged_model_differs_from_base",
        "the files are byte-identical, or every answer is and (with teacher forcing) every "
        "answer's NLL is within the noise floor (verdict IDENTICAL or INERT)",
        (),
        _differs,
    ),
    Check(
        "significant_effect",
        "test_finetune_has_a_significant_effect",
        "no significant gain or loss: the CI of the cell-accuracy gain includes 0 and McNemar "
        "p >= alpha (verdict NO EFFECT, INERT or IDENTICAL)",
        ("alpha",),
        _significant,
    ),
    Check(
        "did_not_regress",
        "test_merged_model_did_not_regress",
        "the merged model is significantly worse (verdict REGRESSED)",
        ("alpha",),
        _no_regression,
    ),
    Check(
        "exact_gain",
        "test_exact_match_gain_meets_threshold",
        "the exact-match gain is below min_exact_gain",
        ("min_exact_gain",),
        _gain("exact", "min_exact_gain"),
    ),
    Check(
        "cell_gain",
        "test_cell_accuracy_gain_meets_threshold",
        "the cell-accuracy gain is below min_cell_gain",
        ("min_cell_gain",),
        _gain("cell_accuracy", "min_cell_gain"),
    ),
    Check(
        "no_family_regressed",
        "test_no_family_regressed",
        "one family (task, wrap, generations, size, symbols) lost more than max_family_regression",
        ("max_family_regression",),
        _families,
    ),
    Check(
        "answers_well_formed",
        "test_answers_are_well_formed",
        "fewer than min_parse_rate of the merged answers parse",
        ("min_parse_rate",),
        _well_formed,
    ),
    Check(
        "beats_trivial_baselines",
        "test_merged_model_beats_trivial_baselines",
        "the merged model's (1 - alpha) CI of cell accuracy (alpha after --correction) does not "
        "lie above the best of all-dead / "
        "copy-input / most-common-count (an expected failure unless require_skill)",
        ("require_skill",),
        _skill,
    ),
    Check(
        "gain_holds_in_chat_format",
        "test_gain_holds_in_chat_format",
        "with --prompt-mode both: the chat-format gain keeps less than min_chat_gain_share of "
        "the raw gain",
        ("min_chat_gain_share",),
        _chat,
    ),
    Check(
        "merged_matches_adapter",
        "test_merged_file_matches_base_plus_adapter",
        "with --merged-from-lora: fewer than min_merge_agreement of the merged file's answers "
        "equal base + adapter's",
        ("min_merge_agreement",),
        _merge,
    ),
    Check(
        "no_drop_vs_stored",
        "test_no_drop_vs_stored_run",
        "with --compare-to: the primary cell accuracy is lower than the stored run's by more "
        "than max_drop_vs_stored (point estimate; the message gives its CI)",
        ("max_drop_vs_stored",),
        _vs_stored,
    ),
)

BY_NAME = {check.name: check for check in CHECKS}


def evaluate_checks(evaluation: Evaluation) -> tuple[CheckOutcome, ...]:
    """Every check's outcome for every candidate of ``evaluation``: by candidate, each in
    :data:`CHECKS` order (one outcome per check when the run has no candidate)."""
    out = []
    names: list[str | None] = [c.name for c in evaluation.candidates] or [None]
    for name in names:
        for check in CHECKS:
            judged = Judged(evaluation, name)
            status, message = check.evaluate(judged)
            shown = tuple((key, _show(getattr(evaluation.settings, key))) for key in check.settings)
            out.append(
                CheckOutcome(
                    check.name, check.test, status, message, shown, name, dict(judged.detail)
                )
            )
    return tuple(out)


def _show(value: object) -> str:
    return "off" if value is None else str(value)

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

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simonsca.compare import Comparison, FamilyDelta, Verdict
from simonsca.metrics import METRICS

if TYPE_CHECKING:
    from simonsca.record import Evaluation


class Status(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # the check does not apply to this run (message says why)
    XFAILED = "xfailed"  # failed, but only required on request (e.g. --require-skill)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CheckOutcome:
    """What one check decided, and why, in one message."""

    name: str
    test: str  # the evals/ test that enforces it
    status: Status
    message: str
    settings: tuple[tuple[str, str], ...] = ()  # the settings it read, as shown to users

    @property
    def failed(self) -> bool:
        return self.status is Status.FAILED


@dataclass(frozen=True)
class Check:
    """One rule: its name, its test, what makes it fail, the settings it reads."""

    name: str
    test: str
    fails_when: str
    settings: tuple[str, ...]
    evaluate: Callable[[Evaluation], tuple[Status, str]]


def _passed(message: str) -> tuple[Status, str]:
    return Status.PASSED, message


def _failed(message: str) -> tuple[Status, str]:
    return Status.FAILED, message


def _skipped(message: str) -> tuple[Status, str]:
    return Status.SKIPPED, message


def _primary(e: Evaluation) -> Comparison | None:
    return e.comparison


# --------------------------------------------------------------------------- the rules


def _differs(e: Evaluation) -> tuple[Status, str]:
    c = _primary(e)
    if e.files_identical:
        return _failed(
            "the finetune changed nothing: the merged model files are byte-identical to the base"
        )
    if c is None:
        return _skipped("no base-vs-merged comparison in this run")
    if c.verdict is Verdict.INERT:
        return _failed(f"the finetune changed nothing that matters: {c.headline}")
    return _passed(f"the merged model differs from the base ({c.verdict.word})")


def _significant(e: Evaluation) -> tuple[Status, str]:
    c = _primary(e)
    if e.files_identical:
        return _failed("the finetune changed nothing at all (byte-identical files)")
    if c is None:
        return _skipped("no base-vs-merged comparison in this run")
    if c.verdict in (Verdict.INERT, Verdict.NO_EFFECT):
        what = (
            "the merged model answers no better and no worse than the base (the CI of the gain "
            f"includes 0 and McNemar p >= {e.settings.alpha:g})"
        )
        return _failed(f"{what}: {c.headline}")
    return _passed(f"a significant effect: {c.verdict.word}")


def _no_regression(e: Evaluation) -> tuple[Status, str]:
    c = _primary(e)
    if c is None:
        return (
            _passed("nothing was run, so nothing regressed")
            if e.files_identical
            else (_skipped("no base-vs-merged comparison in this run"))
        )
    if c.verdict is Verdict.REGRESSED:
        return _failed(f"the merged model is significantly worse: {c.headline}")
    return _passed("no significant loss")


def _gain(metric: str, key: str) -> Callable[[Evaluation], tuple[Status, str]]:
    spec = METRICS[metric]

    def evaluate(e: Evaluation) -> tuple[Status, str]:
        threshold = getattr(e.settings, key)
        if threshold is None:
            return _skipped(f"no {key} configured ([tool.simonsca] or --{key.replace('_', '-')})")
        if e.files_identical:
            return _failed(
                f"{spec.label} gain is 0 (byte-identical files), below {key} "
                f"{spec.delta_text(threshold)}"
            )
        c = _primary(e)
        d = c.delta(metric) if c is not None else None
        if d is None:
            return _skipped(f"no {spec.label} was measured (scoring {e.settings.scoring})")
        numbers = (
            f"{spec.label} gain {spec.delta_text(d.diff)} (base {spec.value_text(d.base)} -> "
            f"merged {spec.value_text(d.merged)}, {1 - e.settings.alpha:.0%} CI "
            f"{spec.delta_text(d.low)} to {spec.delta_text(d.high)}, n={d.n})"
        )
        if d.diff < threshold - 1e-12:
            return _failed(f"{numbers} is below {key} {spec.delta_text(threshold)}")
        return _passed(f"{numbers} meets {key} {spec.delta_text(threshold)}")

    return evaluate


def family_regressed(f: FamilyDelta, limit: float) -> bool:
    """The no_family_regressed rule for one family: its cell accuracy (greedy or teacher-forced)
    fell by more than ``limit``. (The limit is a share of cells: an NLL family has none.)"""
    spec = METRICS[f.metric]
    if spec.unit != "share":
        return False
    loss = -f.diff if spec.higher_is_better else f.diff
    return loss > limit + 1e-12


def family_regressions(c: Comparison, limit: float) -> list[FamilyDelta]:
    """Every family of either scoring mode that regressed (see :func:`family_regressed`)."""
    out = [
        f
        for mode in (c.generation, c.forced)
        for f in (mode.families if mode is not None else ())
        if family_regressed(f, limit)
    ]
    return sorted(out, key=lambda f: -abs(f.diff))


def _families(e: Evaluation) -> tuple[Status, str]:
    c = _primary(e)
    limit = e.settings.max_family_regression
    if c is None:
        return (
            _passed("nothing was run, so no family regressed")
            if e.files_identical
            else (_skipped("no base-vs-merged comparison in this run"))
        )
    worst = family_regressions(c, limit)
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


def _well_formed(e: Evaluation) -> tuple[Status, str]:
    minimum = e.settings.min_parse_rate
    if e.files_identical:
        return _skipped("nothing was run: the files are byte-identical")
    merged = e.summaries.get("merged")
    if merged is None:
        return _skipped("no greedy answers were generated (scoring teacher-forced)")
    parsed = merged.metrics["parse_ok"].value or 0.0
    shaped = merged.metrics["shape_ok"].value or 0.0
    if minimum is None:
        return _skipped(
            f"no min_parse_rate configured (merged: parse {parsed:.0%}, shape {shaped:.0%})"
        )
    if parsed < minimum - 1e-12:
        reasons = sorted(
            {
                s.reason
                for s in e.generation_scores("merged")
                if not s.parse_ok and s.reason is not None
            }
        )[:5]
        return _failed(
            f"only {parsed:.0%} of merged answers parse (shape ok {shaped:.0%}); min_parse_rate "
            f"is {minimum:.0%}. Typical reasons: {reasons}"
        )
    return _passed(f"{parsed:.0%} of merged answers parse (min_parse_rate {minimum:.0%})")


def _skill(e: Evaluation) -> tuple[Status, str]:
    c = _primary(e)
    b = c.baseline if c is not None else None
    if e.files_identical or b is None:
        return _skipped("no model answers to compare with the baselines")
    if b.skill_shown:
        return _passed(f"skill beyond the trivial baselines: {b.sentence()}")
    message = f"no demonstrated skill beyond the answer format: {b.sentence()}"
    if not e.settings.require_skill:
        return Status.XFAILED, message + " (set require_skill = true or --require-skill to fail)"
    return _failed(message)


def _chat(e: Evaluation) -> tuple[Status, str]:
    raw, chat = e.comparisons.get("raw"), e.comparisons.get("chat")
    if raw is None or chat is None:
        return _skipped("run with --prompt-mode both to compare the raw and chat formats")
    share = e.settings.min_chat_gain_share
    if raw.verdict is not Verdict.IMPROVED:
        return _skipped(f"no raw-format gain to keep (raw verdict {raw.verdict.word})")
    raw_d, chat_d = raw.delta("cell_accuracy"), chat.delta("cell_accuracy")
    if raw_d is None or chat_d is None:
        return _skipped("cell accuracy was not measured in both formats")
    spec = METRICS["cell_accuracy"]
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


def _merge(e: Evaluation) -> tuple[Status, str]:
    check = e.merge_check
    if check is None:
        return _skipped("the adapter behind the merged file is unknown (pass --merged-from-lora)")
    minimum = e.settings.min_merge_agreement
    numbers = (
        f"the merged file and base + {check.adapter} give the same answer on {check.identical} "
        f"of {check.n} items ({check.agreement:.0%}; min_merge_agreement {minimum:.0%})"
    )
    if check.agreement < minimum - 1e-12:
        return _failed(numbers + ": the merge did not reproduce the adapter")
    return _passed(numbers)


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
        "the merged model's 95% CI of cell accuracy does not lie above the best of all-dead / "
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
)

BY_NAME = {check.name: check for check in CHECKS}


def evaluate_checks(evaluation: Evaluation) -> tuple[CheckOutcome, ...]:
    """Every check's outcome on ``evaluation``, in :data:`CHECKS` order."""
    out = []
    for check in CHECKS:
        status, message = check.evaluate(evaluation)
        shown = tuple((key, _show(getattr(evaluation.settings, key))) for key in check.settings)
        out.append(CheckOutcome(check.name, check.test, status, message, shown))
    return tuple(out)


def _show(value: object) -> str:
    return "off" if value is None else str(value)

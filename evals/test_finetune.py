"""Did the finetune work? Base vs merged on held-out SimonsCA1 puzzles.

Run ``pytest evals/`` (built-in pair) or ``pytest evals/ --base-model A.gguf --merged-model B.gguf``.
The models are evaluated once per session (the ``simonsca_result`` fixture); each test below
checks one claim and its failure message states the numbers.
"""

from __future__ import annotations

import pytest

from simonsca.compare import Verdict
from simonsca.suite import SuiteResult
from simonsca.tasks import PromptMode


def _context(result: SuiteResult) -> str:
    c = result.comparison
    lines = [
        f"verdict {c.verdict.value.upper()}: {c.headline}",
        f"compared: {result.config.describe()}",
    ]
    lines += [f"finding [{f.code}]: {f.title}" for f in result.findings]
    if result.report_dir is not None:
        lines.append(f"report: {result.report_dir / 'report.html'}")
    return "\n".join(lines)


def test_merged_model_differs_from_base(simonsca_result: SuiteResult) -> None:
    """The seed's complaint: "my finetuned model yields the same output as the base model"."""
    assert simonsca_result.comparison.verdict is not Verdict.IDENTICAL, (
        "the finetune changed nothing: every answer (or the model file itself) is byte-identical "
        "to the base model's\n" + _context(simonsca_result)
    )


def test_finetune_has_a_significant_effect(simonsca_result: SuiteResult) -> None:
    verdict = simonsca_result.comparison.verdict
    what = {
        Verdict.IDENTICAL: "the finetune changed nothing at all",
        Verdict.NO_EFFECT: "the merged model answers differently but no better or worse than the "
        "base (the paired-bootstrap CI of the cell-accuracy gain includes 0 and McNemar p >= 0.05)",
    }
    assert verdict not in what, what.get(verdict, "") + "\n" + _context(simonsca_result)


def test_merged_model_did_not_regress(simonsca_result: SuiteResult) -> None:
    assert simonsca_result.comparison.verdict is not Verdict.REGRESSED, _context(simonsca_result)


def _gain_check(result: SuiteResult, metric: str, threshold: float | None, option: str) -> None:
    if threshold is None:
        pytest.skip(f"no {option} configured ([tool.simonsca] or --{option.replace('_', '-')})")
    delta = result.comparison.delta(metric)
    assert delta is not None, f"no {metric} delta was computed\n" + _context(result)
    assert delta.diff >= threshold - 1e-12, (
        f"{metric} gain {delta.diff:+.3f} (base {delta.base:.3f} -> merged {delta.merged:.3f}, "
        f"95% CI {delta.low:+.3f} to {delta.high:+.3f}, n={delta.n}) is below {option} "
        f"{threshold:+.3f}\n" + _context(result)
    )


def test_exact_match_gain_meets_threshold(simonsca_result: SuiteResult) -> None:
    gate = simonsca_result.config.gate
    _gain_check(simonsca_result, "exact", gate.min_exact_gain, "min_exact_gain")


def test_cell_accuracy_gain_meets_threshold(simonsca_result: SuiteResult) -> None:
    gate = simonsca_result.config.gate
    _gain_check(simonsca_result, "cell_accuracy", gate.min_cell_gain, "min_cell_gain")


def test_no_family_regressed(simonsca_result: SuiteResult) -> None:
    c = simonsca_result.comparison
    worst = [
        f"{f.facet}={f.value} (n={f.n}): cell accuracy {f.base_cell:.3f} -> {f.merged_cell:.3f} "
        f"({f.cell_diff:+.3f})"
        for f in c.family_regressions
    ]
    assert not worst, (
        f"families regressed by more than max_family_regression {c.max_family_regression:.3f}:\n  "
        + "\n  ".join(worst)
        + "\n"
        + _context(simonsca_result)
    )


def test_answers_are_well_formed(simonsca_result: SuiteResult) -> None:
    """Parsable answers of the right shape; without them no other metric means much."""
    if simonsca_result.files_identical:
        pytest.skip("nothing was run: the files are byte-identical")
    scores = simonsca_result.scores["merged"]
    n = len(scores)
    parsed = sum(s.parse_ok for s in scores) / n
    shaped = sum(s.shape_ok for s in scores) / n
    minimum = simonsca_result.config.min_parse_rate
    if minimum is None:
        pytest.skip(
            f"no min_parse_rate configured (merged: parse {parsed:.0%}, shape {shaped:.0%})"
        )
    reasons = sorted({s.reason for s in scores if not s.parse_ok and s.reason})[:5]
    assert parsed >= minimum, (
        f"only {parsed:.0%} of merged answers parse (shape ok {shaped:.0%}); min_parse_rate is "
        f"{minimum:.0%}. Typical reasons: {reasons}\n" + _context(simonsca_result)
    )


def test_merged_model_beats_trivial_baselines(simonsca_result: SuiteResult) -> None:
    """Learning the answer format is not learning the rule: beat all-dead / copy-input."""
    c = simonsca_result.comparison
    b = c.baseline
    if b is None or simonsca_result.files_identical:
        pytest.skip("no model answers to compare with the baselines")
    merged = b.merged_cell_accuracy
    skill = b.skill_shown  # the whole 95% CI above the best baseline, not merely "not below it"
    message = (
        f"merged cell accuracy {merged.value:.3f} (95% CI {merged.low:.3f}-{merged.high:.3f}) vs "
        f"best trivial baseline {b.best} {b.best_cell_accuracy:.3f}: "
        + ("skill beyond the baselines" if skill else "no demonstrated skill beyond the format")
    )
    if not skill and not simonsca_result.config.require_skill:
        pytest.xfail(message + " (set require_skill = true or --require-skill to fail on this)")
    assert skill, message + "\n" + _context(simonsca_result)


def test_gain_holds_in_chat_format(simonsca_result: SuiteResult) -> None:
    """Chat apps (LM Studio, ...) wrap prompts in the chat template; training used raw text."""
    modes = simonsca_result.config.prompt_modes
    if PromptMode.CHAT not in modes or PromptMode.RAW not in modes:
        pytest.skip("run with --prompt-mode both to compare raw and chat formats")
    lost = simonsca_result.gain_lost_in_chat
    assert lost is None, (
        f"{lost.title}. A chat app (LM Studio, ...) will not show the finetuned behaviour.\n"
        + _context(simonsca_result)
    )


def test_merged_file_matches_base_plus_adapter(simonsca_result: SuiteResult) -> None:
    """A merge that dropped or mangled the update answers unlike base + adapter at run time."""
    check = simonsca_result.merge_check
    if check is None:
        pytest.skip("the adapter behind the merged file is unknown (pass --merged-from-lora)")
    minimum = simonsca_result.config.min_merge_agreement
    assert check.agreement >= minimum, (
        f"the merged file and base + {check.adapter.name} give the same answer on only "
        f"{check.identical} of {check.n} items ({check.agreement:.0%}; min_merge_agreement "
        f"{minimum:.0%}): the merge did not reproduce the adapter\n" + _context(simonsca_result)
    )

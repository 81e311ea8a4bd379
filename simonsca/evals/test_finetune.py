"""Did the finetune work? Each candidate against the base on held-out SimonsCA1 puzzles.

Run ``pytest evals/`` in a checkout (or ``pytest --pyargs simonsca.evals`` anywhere), with the
built-in pair or ``--base-model A.gguf --merged-model B.gguf``. The models are evaluated once per
session (the ``simonsca_result`` fixture); each test runs once per candidate
(``simonsca_candidate``: ``test_x[merged]``, ``test_x[checkpoint-20]``) and enforces one named check of
:mod:`simonsca.checks` -- the very outcome ``simonsca compare``'s exit status and the reports
show -- and its message states the numbers.
"""

from __future__ import annotations

from typing import Any

from simonsca.pytest_plugin import enforce


def test_merged_model_differs_from_base(simonsca_result: Any, simonsca_candidate: str) -> None:
    """The seed's complaint: "my finetuned model yields the same output as the base model"."""
    enforce(simonsca_result, "differs_from_base", simonsca_candidate)


def test_finetune_has_a_significant_effect(simonsca_result: Any, simonsca_candidate: str) -> None:
    enforce(simonsca_result, "significant_effect", simonsca_candidate)


def test_merged_model_did_not_regress(simonsca_result: Any, simonsca_candidate: str) -> None:
    enforce(simonsca_result, "did_not_regress", simonsca_candidate)


def test_exact_match_gain_meets_threshold(simonsca_result: Any, simonsca_candidate: str) -> None:
    enforce(simonsca_result, "exact_gain", simonsca_candidate)


def test_cell_accuracy_gain_meets_threshold(simonsca_result: Any, simonsca_candidate: str) -> None:
    enforce(simonsca_result, "cell_gain", simonsca_candidate)


def test_no_family_regressed(simonsca_result: Any, simonsca_candidate: str) -> None:
    enforce(simonsca_result, "no_family_regressed", simonsca_candidate)


def test_answers_are_well_formed(simonsca_result: Any, simonsca_candidate: str) -> None:
    """Parsable answers of the right shape; without them no other metric means much."""
    enforce(simonsca_result, "answers_well_formed", simonsca_candidate)


def test_merged_model_beats_trivial_baselines(
    simonsca_result: Any, simonsca_candidate: str
) -> None:
    """Learning the answer format is not learning the rule: beat all-dead / copy-input."""
    enforce(simonsca_result, "beats_trivial_baselines", simonsca_candidate)


def test_gain_holds_in_chat_format(simonsca_result: Any, simonsca_candidate: str) -> None:
    """Chat apps (LM Studio, ...) wrap prompts in the chat template; training used raw text."""
    enforce(simonsca_result, "gain_holds_in_chat_format", simonsca_candidate)


def test_merged_file_matches_base_plus_adapter(
    simonsca_result: Any, simonsca_candidate: str
) -> None:
    """A merge that dropped or mangled the update answers unlike base + adapter at run time."""
    enforce(simonsca_result, "merged_matches_adapter", simonsca_candidate)


def test_no_drop_vs_stored_run(simonsca_result: Any, simonsca_candidate: str) -> None:
    """With --compare-to RUN: this week's finetune is no worse than the stored one."""
    enforce(simonsca_result, "no_drop_vs_stored", simonsca_candidate)

"""A stored run as the reference (``--compare-to RUN[:NAME]``): read and checked before any
model work, refused in one line when its items are not the new run's.

The stored runs are built by hand (``stored_records``) or are real ``simonsca.report/2``
records; the new run's items are the real held-out items its settings choose.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from stored_records import NOISE, Who, build, items_for, settings_for, store, v2_data, v2_text

from simonsca import record as record_module
from simonsca.errors import RunsDiffer, SimonscaError, StoredRunError
from simonsca.runs.reference import StoredReference, load_reference, reference_name
from simonsca.settings import Settings
from simonsca.tasks import Item

BASE = Who("base", "reference", 0, -0.9)
SWEEP = (BASE, Who("ckpt-10", right=0), Who("ckpt-20", right=2, logprob=-0.2))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare-to") / "reports"
    store(out, build("early", (BASE, Who("merged", right=1, logprob=-0.5))))
    store(out, build("sweep", SWEEP))
    store(out, build("single", (Who("model", "model"),)))
    store(out, build("chat", settings=settings_for(prompt_mode="both")))
    store(out, build("same-files", identical=True))
    store(out, v2_text("raw"), "v2-raw")
    store(out, v2_text("both"), "v2-both")
    (out / "latest").symlink_to("early")
    return out


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _new_run(reports: Path, run: str, **given: Any) -> tuple[Settings, tuple[Item, ...]]:
    """A new run's settings (``--compare-to RUN``) and the items they choose."""
    s = settings_for(compare_to=run, reports_dir=str(reports), **given)
    return s, items_for(s.n_items, s.eval_seed, s.eval_family)


def _load(reports: Path, run: str, **given: Any) -> StoredReference:
    return load_reference(*_new_run(reports, run, **given))


def _refusal(reports: Path, run: str, kind: type[SimonscaError], **given: Any) -> str:
    with pytest.raises(kind) as error:
        _load(reports, run, **given)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"--compare-to {run}: "), message
    return message


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    "how", ["id", "folder", "report", "relative folder", "latest"], ids=lambda how: how
)
def test_a_run_folder_its_report_or_its_id(reports: Path, how: str) -> None:
    run = {
        "id": "early",
        "folder": str(reports / "early"),
        "report": str(reports / "early" / "report.json"),
        "relative folder": "early",
        "latest": "latest",
    }[how]
    ref = _load(reports, run)
    assert ref.run_id == "early" and ref.run.path.name == "report.json"
    assert (ref.name, ref.contender, ref.role) == ("stored-early", "merged", "candidate")


def test_the_stored_answers_and_scores_of_the_picked_contender(reports: Path) -> None:
    settings, items = _new_run(reports, "early")
    ref = load_reference(settings, items)
    stored = ref.run.record.evaluation
    for item, kept in zip(items, stored.items):
        assert kept.seed == item.seed
        answer = ref.answer(item.seed)
        if item.seed in [i.seed for i in items[: settings.eval_size]]:
            assert answer is not None and answer.cached
            assert replace(answer, cached=False) == kept.answers["merged"]
        else:
            assert answer is None
        assert ref.forced(item.seed) == kept.forced["merged"]
    assert ref.answer(999) is None and ref.forced(999) is None
    assert list(ref.answers()) == [i.seed for i in items[:2]]
    assert list(ref.forced_scores()) == [i.seed for i in items[:4]]
    assert ref.label() == ref.label("raw") == "stored-early"
    assert ref.stored_label() == "merged"
    assert ref.noise == NOISE == stored.noise
    assert ref.describe() == "early (merged=merged, 2026-12-05 14:00Z)"


def test_its_model_entries_are_the_new_runs_reference(reports: Path) -> None:
    ref = _load(reports, "early")
    (entry,) = ref.model_entries()
    (stored,) = [m for m in ref.run.record.evaluation.models if m.label == "merged"]
    assert (entry.label, entry.contender, entry.role) == (
        "stored-early",
        "stored-early",
        "reference",
    )
    assert entry.info == stored.info and entry.n_answers == stored.n_answers
    assert entry.origin == "stored run early (merged)"
    assert entry.generation_seconds == 0.0 and entry.n_cached == stored.n_answers


def test_the_stored_reference_can_be_picked(reports: Path) -> None:
    ref = _load(reports, "early:base")
    assert (ref.name, ref.contender, ref.role) == ("stored-early.base", "base", "reference")
    assert ref.forced(1_000_000) == ref.run.record.evaluation.items[0].forced["base"]
    assert ref.model_entries()[0].label == "stored-early.base"
    assert _load(reports, str(reports / "early") + ":merged").name == "stored-early"


def test_a_checkpoint_of_a_sweep_must_be_picked(reports: Path) -> None:
    message = _refusal(reports, "sweep", StoredRunError)
    assert "stored run sweep has 2 candidates (ckpt-10, ckpt-20)" in message
    assert "--compare-to sweep:NAME (its own reference: sweep:base)" in message
    ref = _load(reports, "sweep:ckpt-20")
    assert (ref.name, ref.contender) == ("stored-sweep.ckpt-20", "ckpt-20")
    assert ref.answer(1_000_001) == replace(
        ref.run.record.evaluation.items[1].answers["ckpt-20"], cached=True
    )


def test_an_unknown_contender_is_one_line(reports: Path) -> None:
    message = _refusal(reports, "sweep:ckpt-99", StoredRunError)
    assert "stored run sweep has no contender 'ckpt-99'" in message
    assert "it has base (reference), ckpt-10 (candidate), ckpt-20 (candidate)" in message


def test_a_one_model_run_gives_its_model(reports: Path) -> None:
    ref = _load(reports, "single")
    assert (ref.name, ref.contender, ref.role) == ("stored-single", "model", "model")
    assert ref.model_entries()[0].role == "reference"


def test_both_prompt_modes(reports: Path) -> None:
    ref = _load(reports, "chat", prompt_mode="both")
    assert ref.label("chat") == "stored-chat (chat)" and ref.stored_label("chat") == "merged (chat)"
    answer = ref.answer(1_000_000, "chat")
    assert answer is not None and answer.prompt is not None and answer.prompt.startswith("<chat>")
    assert [m.label for m in ref.model_entries()] == ["stored-chat", "stored-chat (chat)"]
    answers, forced = ref.for_item(1_000_001)
    assert answers == {
        "stored-chat": ref.answer(1_000_001, "raw"),
        "stored-chat (chat)": ref.answer(1_000_001, "chat"),
    }
    assert list(forced) == ["stored-chat", "stored-chat (chat)"]
    assert ref.for_item(1_000_003)[0] == {}  # teacher forced only
    assert list(ref.for_item(1_000_003)[1]) == ["stored-chat", "stored-chat (chat)"]


@pytest.mark.parametrize("name", ["raw", "both"])
def test_a_v2_record_is_read_and_upgraded(reports: Path, name: str) -> None:
    """A run stored by the last simonsca that wrote schema /2 pairs with today's items."""
    mode, run_id = ("both", "v2-chat") if name == "both" else ("raw", "v2-early")
    ref = _load(reports, f"v2-{name}", forced_size=3, prompt_mode=mode)
    assert (ref.name, ref.contender, ref.role) == (f"stored-{run_id}", "merged", "candidate")
    assert ref.noise is not None and ref.noise.n_items == 3
    assert len(ref.answers()) == 2 and len(ref.forced_scores()) == 3
    if name == "both":
        assert len(ref.answers("chat")) == 2
        assert ref.answer(1_000_000, "chat").prompt is not None  # type: ignore[union-attr]
    assert {m.info.name for m in ref.model_entries()} == {"tiny-llama-q8_0+tiny-lora"}
    base = _load(reports, f"v2-{name}:base", forced_size=3, prompt_mode=mode)
    assert base.name == f"stored-{run_id}.base" and len(base.forced_scores()) == 3


def test_a_v2_record_of_a_merged_file(tmp_path: Path) -> None:
    data = v2_data("raw")
    data["evaluation"]["settings"].update(merged_model="merged.gguf", lora=None)
    store(tmp_path, json.dumps(data), "v2-merged")
    ref = _load(tmp_path, "v2-merged", forced_size=3)
    assert ref.run.record.evaluation.settings.merged_model == ("merged.gguf",)
    assert ref.contender == "merged"


def test_the_name_is_made_of_name_characters() -> None:
    assert reference_name("20261205-142800-abc123", "merged", True) == (
        "stored-20261205-142800-abc123"
    )
    assert reference_name("my run/1", "ckpt-20", False) == "stored-my-run-1.ckpt-20"


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ({"eval_seed": 1_000_100}, "first seed (--eval-seed) 1000000 vs 1000100"),
        ({"eval_family": "v5"}, "item family (--eval-family) v5-small vs v5"),
        (
            {"eval_size": 3},
            "generated items (--eval-size) 2 (seeds 1000000-1000001) vs 3 (seeds 1000000-1000002)",
        ),
        ({"forced_size": 6}, "teacher-forced items (--forced-size) 4 (seeds 1000000-1000003) vs 6"),
        ({"scoring": "generate"}, "scoring (--scoring) both vs generate"),
        ({"prompt_mode": "chat"}, "prompt mode (--prompt-mode) raw vs chat"),
        ({"prompt_mode": "both"}, "prompt mode (--prompt-mode) raw vs both"),
    ],
    ids=["seed", "family", "eval-size", "forced-size", "scoring", "chat", "both"],
)
def test_other_items_are_refused_naming_what_differs(
    reports: Path, given: dict[str, Any], needle: str
) -> None:
    message = _refusal(reports, "early", RunsDiffer, **given)
    assert "stored run early was not run on the items of this run (stored vs now: " in message
    assert needle in message, message
    assert message.endswith(
        "pass the stored run's --eval-family v5-small --eval-seed 1000000 --eval-size 2 "
        "--forced-size 4 --scoring both --prompt-mode raw"
    )


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ("instruction", "item 1000001: its prompt differs"),
        ("output", "item 1000001: its expected answer differs"),
    ],
)
def test_another_item_generator_is_caught(reports: Path, change: str, needle: str) -> None:
    """The same settings, but the items made today are not the stored ones."""
    settings, items = _new_run(reports, "early")
    changed = list(items)
    changed[1] = replace(items[1], **{change: getattr(items[1], change) + " "})
    with pytest.raises(RunsDiffer, match=needle) as error:
        load_reference(settings, changed)
    assert "\n" not in str(error.value)


def test_the_seeds_a_record_holds_decide(reports: Path, tmp_path: Path) -> None:
    data = json.loads(record_module.to_json(build("edited")))
    data["evaluation"]["items"][1]["seed"] = 1_234_567
    store(tmp_path, json.dumps(data), "edited")
    message = _refusal(tmp_path, "edited", RunsDiffer)
    assert "generated items (--eval-size) 2 (seeds 1000000-1234567) vs 2 (seeds" in message


def test_a_run_that_ran_nothing_is_one_line(reports: Path) -> None:
    message = _refusal(reports, "same-files", StoredRunError)
    assert "stored run same-files holds no answers of merged" in message
    assert "byte-identical" in message


def test_a_missing_stored_answer_is_one_line(tmp_path: Path) -> None:
    data = json.loads(record_module.to_json(build("cut", SWEEP)))
    del data["evaluation"]["items"][2]["forced"]["ckpt-20"]
    store(tmp_path, json.dumps(data), "cut")
    message = _refusal(tmp_path, "cut:ckpt-20", StoredRunError)
    assert "holds no teacher-forced score of ckpt-20 to item 1000002" in message


@pytest.mark.parametrize(
    ("run", "needle"),
    [
        ("nope", "no stored run nope"),
        ("nope:merged", "no stored run nope"),
        ("early:Not A Name", "no stored run early:Not A Name"),
    ],
)
def test_a_missing_run_is_one_line(reports: Path, run: str, needle: str) -> None:
    assert needle in _refusal(reports, run, StoredRunError)


def test_a_path_with_a_colon_stays_a_path(tmp_path: Path) -> None:
    store(tmp_path, build("odd:name"))
    ref = _load(tmp_path, str(tmp_path / "odd:name"))
    assert ref.run_id == "odd:name" and ref.name == "stored-odd-name"
    assert _load(tmp_path, "odd:name:base").contender == "base"


def test_the_stored_answers_pair_with_a_new_candidate(reports: Path) -> None:
    """What the suite does with them: each item's record gets the stored answers under the
    reference's label, and the paired comparison runs as with a reference model -- here a
    candidate that answers exactly as the stored one did: no change at all."""
    from simonsca.record import item_record
    from simonsca.verdict import compare_runs

    settings, items = _new_run(reports, "early")
    ref = load_reference(settings, items)
    stored = {i.seed: i for i in ref.run.record.evaluation.items}
    records = []
    for item in items:
        answers, forced = ref.for_item(item.seed)
        if "merged" in stored[item.seed].answers:
            answers["merged"] = stored[item.seed].answers["merged"]
        forced["merged"] = stored[item.seed].forced["merged"]
        records.append(item_record(item, answers, forced))
    gen = [r for r in records if ref.label() in r.answers]
    comparison = compare_runs(
        base=[r.answers[ref.label()].score for r in gen],
        merged=[r.answers["merged"].score for r in gen],
        base_texts=[r.answers[ref.label()].text for r in gen],
        merged_texts=[r.answers["merged"].text for r in gen],
        base_forced=[r.forced[ref.label()] for r in records],
        merged_forced=[r.forced["merged"] for r in records],
        noise=ref.noise,
        names=(ref.name, "merged"),
    )
    assert comparison.texts_identical is True
    assert comparison.likelihood is not None and comparison.likelihood.delta.diff == 0
    assert comparison.n == settings.eval_size

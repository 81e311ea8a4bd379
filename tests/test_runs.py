"""Stored runs read back and compared with no model: ``simonsca runs list|compare``.

The stored runs are built by hand (``stored_records``: real items, real scoring and statistics,
no model) or are real ``simonsca.report/2`` records (upgraded on read). No model file exists
anywhere here, so nothing can have loaded one. Every bad input is one line and exit status 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_run import cli
from stored_records import Who, build, settings_for, store, v2_data, v2_text

from simonsca import record as record_module
from simonsca.compare import compare_forced
from simonsca.errors import RunsDiffer, StoredRunError
from simonsca.metrics import METRICS
from simonsca.record import SCHEMA, from_json
from simonsca.runs import Listed, compare_stored, load_run, read_run
from simonsca.runs.views import comparison_text, models_text, runs_table, verdict_text

SWEEP = (
    Who("base", "reference", 0, -0.9),
    Who("ckpt-10", right=0, logprob=-0.7),
    Who("ckpt-20", right=1, logprob=-0.5),
    Who("ckpt-30", right=2, logprob=-0.2),
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stored runs: ``early`` (base vs merged), ``late`` (the same items, a better merged
    file), ``other-seeds``, ``smaller`` (fewer generated items), ``forced-only`` (the same
    seeds, teacher forcing only), ``sweep-a``/``sweep-b`` (three checkpoints each, two shared),
    ``single`` (a one-model run)."""
    out = tmp_path_factory.mktemp("runs") / "reports"
    base = Who("base", "reference", 0, -0.9)
    made = [
        build("early", (base, Who("merged", right=1, logprob=-0.5, file="base+adapter.gguf"))),
        build(
            "late",
            (base, Who("merged", right=2, logprob=-0.3)),
            created="2026-12-05T15:00:00Z",
        ),
        build("other-seeds", settings=settings_for(eval_seed=1_000_100)),
        build("smaller", settings=settings_for(eval_size=1)),
        build("forced-only", settings=settings_for(scoring="teacher-forced")),
        build("sweep-a", SWEEP),
        build("sweep-b", (SWEEP[0], *SWEEP[2:], Who("ckpt-40", right=2, logprob=-0.1))),
        build("single", (Who("model", "model"),)),
    ]
    for record in made:
        store(out, record)
    (out / "latest").symlink_to("late")
    return out


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in a folder of its own (no pyproject.toml, no reports/ of ours)."""
    monkeypatch.chdir(tmp_path)


def _stored_run(tmp_path: Path, name: str, text: str) -> Path:
    """A run folder holding ``text`` as its report.json."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "report.json").write_text(text)
    return folder


def _report_data(reports: Path, run_id: str = "early") -> dict[str, object]:
    data: dict[str, object] = json.loads((reports / run_id / "report.json").read_text())
    return data


# --------------------------------------------------------------------------- list


def test_list_shows_every_run_newest_first(
    reports: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "reports"
    shutil.copytree(reports, copy, symlinks=True)
    newest = _report_data(reports)
    newest.update(run_id="copied", created="2099-01-01T00:00:00Z")
    (copy / "copied").mkdir()
    (copy / "copied" / "report.json").write_text(json.dumps(newest))
    (copy / "not-a-run").mkdir()  # a folder of the user's: not listed
    run = cli(capfd, "runs", "list", "--reports-dir", copy)
    assert run.rc == 0 and run.err == "", run.err
    lines = run.out.splitlines()
    assert lines[0].split() == ["run", "created", "models", "items", "verdict", "checks"]
    ids = [line.split()[0] for line in lines[2:]]
    assert ids[0] == "copied" and ids[1] == "late"
    assert sorted(ids) == sorted(
        ["copied", "early", "late", "other-seeds", "smaller", "forced-only"]
        + ["sweep-a", "sweep-b", "single"]
    )
    early = next(line for line in lines if line.startswith("early "))
    assert "base=base vs merged=base+adapter" in early
    assert "v5-small from 1000000: 2 gen, 4 TF; raw" in early
    stored = load_run("early", reports).record
    assert stored.verdict is not None and stored.verdict.word in early
    assert "PASS (1)" in early
    assert "2099-01-01 00:00Z" in lines[2]
    sweep = next(line for line in lines if line.startswith("sweep-a "))
    assert "base=base vs ckpt-10=ckpt-10, ckpt-20=ckpt-20, ckpt-30=ckpt-30" in sweep
    assert "ckpt-10 " in sweep and "ckpt-30 " in sweep and "PASS (3)" in sweep
    single = next(line for line in lines if line.startswith("single "))
    assert "model=model" in single and "- (one model)" in single


def test_list_reads_the_default_reports_folder(
    reports: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(reports, tmp_path / "reports", symlinks=True)
    run = cli(capfd, "runs", "list")
    assert run.rc == 0 and "early" in run.out and "latest" not in run.out


def test_list_of_an_empty_folder_says_so(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "reports").mkdir()
    run = cli(capfd, "runs", "list")
    assert run.rc == 0 and run.out == "no stored runs in reports\n"


def test_list_of_a_missing_folder_is_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    cli(capfd, "runs", "list", "--reports-dir", "nowhere").only_line("nowhere", "--reports-dir")


def test_list_shows_an_unreadable_run_as_such(
    reports: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "reports"
    shutil.copytree(reports, copy, symlinks=True)
    (copy / "early" / "report.json").write_text("{")
    run = cli(capfd, "runs", "list", "--reports-dir", copy)
    assert run.rc == 0
    assert any(
        line.startswith("early") and "not valid JSON" in line for line in run.out.split("\n")
    )


def test_list_shows_a_v2_run_upgraded(tmp_path: Path) -> None:
    store(tmp_path, v2_text("raw"), "v2-early")
    store(tmp_path, v2_text("both"), "v2-chat")
    text = runs_table([*map(_listed, ("v2-early", "v2-chat"))])
    for line in text.splitlines()[2:]:
        assert "base=tiny-llama-q8_0 vs merged=tiny-llama-q8_0+tiny-lora" in line, line
    assert "v5-small from 1000000: 2 gen, 3 TF; raw" in text
    assert "v5-small from 1000000: 2 gen, 3 TF; both" in text


def _listed(run_id: str) -> Listed:
    return Listed(Path(run_id), read_run(Path(run_id)))


# --------------------------------------------------------------------------- compare


def test_compare_pairs_two_runs_from_their_stored_scores(
    reports: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = cli(capfd, "runs", "compare", "early", "late", "--reports-dir", reports)
    assert run.rc == 0 and run.err == "", run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("A: early ") and lines[1].startswith("B: late ")
    assert "2 generated and 4 teacher-forced v5-small items from seed 1000000" in run.out
    assert "merged: A base+adapter vs B merged (other files)" in run.out
    assert "base: A base vs B base (the same files in both runs)" in run.out
    header = next(line for line in lines if line.startswith("contender "))
    at = header.index("metric")
    rows = {
        (line[:at].strip(), line[at : at + 30].strip()): line
        for line in lines
        if line.startswith(("merged ", "base "))
    }
    a, b = load_run("early", reports).record, load_run("late", reports).record
    for side in ("merged", "base"):
        for name in ("forced_cell_accuracy", "nll", "cell_accuracy", "parse_ok"):
            row = rows[(side, METRICS[name].label)]
            summaries = (
                "forced_summaries" if METRICS[name].mode == "teacher-forced" else "summaries"
            )
            for rec in (a, b):  # each run's own stored mean is the A / B column
                value = getattr(rec.evaluation, summaries)[side].metrics[name].value
                assert f"  {METRICS[name].value_text(value)}  " in row, (row, value)
    # the same base file on the same items: nothing moved
    assert "+0.000 nats  +0.000 nats to +0.000 nats" in rows[("base", "answer NLL")]
    assert "signed-rank p=" in rows[("merged", "answer NLL")]
    assert next(iter(rows))[0] == "merged"  # the candidate first, the reference last


def test_compare_measures_the_change_with_the_project_statistics(reports: Path) -> None:
    a, b = load_run("early", reports), load_run(reports / "late" / "report.json", reports)
    side = compare_stored(a, b).sides[0]
    assert (side.label, side.role, side.a_name, side.b_name) == (
        "merged",
        "candidate",
        "merged",
        "merged",
    )
    assert not side.same_files
    _, expected = compare_forced(
        a.record.evaluation.forced_scores("merged"), b.record.evaluation.forced_scores("merged")
    )
    assert side.likelihood == expected
    assert side.likelihood.delta.n == 4


def test_candidates_pair_by_name(reports: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A sweep against a later sweep: the checkpoints both have, and the reference."""
    c = compare_stored(load_run("sweep-a", reports), load_run("sweep-b", reports))
    assert [(s.label, s.role) for s in c.sides] == [
        ("ckpt-20", "candidate"),
        ("ckpt-30", "candidate"),
        ("base", "reference"),
    ]
    assert all(s.same_files for s in c.sides)  # the same files: nothing moved
    assert all(s.likelihood is not None and s.likelihood.delta.diff == 0 for s in c.sides)
    run = cli(capfd, "runs", "compare", "sweep-a", "sweep-b", "--reports-dir", reports)
    assert run.rc == 0 and "ckpt-10" not in run.out.split("items:")[1]
    assert "ckpt-40" not in run.out.split("items:")[1]


def test_two_lone_candidates_pair_whatever_their_names(reports: Path, tmp_path: Path) -> None:
    store(tmp_path, build("v1", (SWEEP[0], Who("v1", right=1))))
    store(tmp_path, build("v2", (SWEEP[0], Who("v2", right=2, logprob=-0.1))))
    c = compare_stored(load_run("v1", tmp_path), load_run("v2", tmp_path))
    assert [(s.label, s.a_name, s.b_name) for s in c.sides] == [
        ("v1/v2", "v1", "v2"),
        ("base", "base", "base"),
    ]
    assert "v1/v2: A v1 vs B v2 (other files)" in comparison_text(c)


def test_runs_with_no_contender_in_common_are_one_line(
    reports: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = cli(capfd, "runs", "compare", "single", "sweep-a", "--reports-dir", reports)
    run.only_line("no contender in common", "A: model", "B: base, ckpt-10, ckpt-20, ckpt-30")


def test_both_prompt_modes_are_paired(tmp_path: Path) -> None:
    both = settings_for(prompt_mode="both")
    store(tmp_path, build("a", settings=both))
    store(tmp_path, build("b", (SWEEP[0], Who("merged", right=2)), settings=both))
    c = compare_stored(load_run("a", tmp_path), load_run("b", tmp_path))
    assert [s.label for s in c.sides] == ["merged", "merged (chat)", "base", "base (chat)"]
    text = comparison_text(c)
    assert "merged (chat)  " in text and "prompt mode both" in text
    assert "merged (chat): A" not in text  # each model named once


def test_compare_takes_a_folder_a_report_and_latest(
    reports: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    by_id = cli(capfd, "runs", "compare", "early", "late", "--reports-dir", reports)
    by_path = cli(capfd, "runs", "compare", reports / "early", reports / "late" / "report.json")
    assert by_id.rc == by_path.rc == 0 and by_id.out == by_path.out
    latest = cli(capfd, "runs", "compare", "latest", "early", "--reports-dir", reports)
    assert latest.rc == 0 and latest.out.startswith("A: late "), latest.err


def test_v2_runs_compare_with_each_other_and_with_v3(tmp_path: Path) -> None:
    """Records of the older schema are upgraded on read and pair like any other."""
    store(tmp_path, v2_text("raw"), "v2-early")
    again = v2_data("raw")
    again["run_id"] = "v2-again"
    store(tmp_path, json.dumps(again), "v2-again")
    c = compare_stored(load_run("v2-early", tmp_path), load_run("v2-again", tmp_path))
    assert [s.label for s in c.sides] == ["merged", "base"]
    assert all(s.same_files for s in c.sides)
    assert "items: 2 generated and 3 teacher-forced v5-small items" in comparison_text(c)
    # a run of today on the same items (2 generated, 3 teacher-forced)
    store(tmp_path, build("v3", settings=settings_for(forced_size=3)))
    c = compare_stored(load_run("v2-early", tmp_path), load_run("v3", tmp_path))
    assert [s.label for s in c.sides] == ["merged", "base"]
    assert not any(s.same_files for s in c.sides)


@pytest.mark.parametrize(
    ("other", "needles"),
    [
        ("other-seeds", ["first seed (--eval-seed) 1000000 vs 1000100"]),
        (
            "smaller",
            ["generated items (--eval-size) 2 (seeds 1000000-1000001) vs 1 (seed 1000000)"],
        ),
        ("forced-only", ["scoring (--scoring) both vs teacher-forced"]),
    ],
)
def test_runs_on_other_items_are_refused(
    reports: Path, other: str, needles: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    run = cli(capfd, "runs", "compare", "early", other, "--reports-dir", reports)
    run.only_line("simonsca runs: error:", "early", other, "not run on the same items", *needles)


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"eval_family": "v5"}, "item family (--eval-family) v5-small vs v5"),
        ({"prompt_mode": "both"}, "prompt mode (--prompt-mode) raw vs both"),
        ({"forced_size": 3}, "teacher-forced items (--forced-size) 4 (seeds"),
    ],
)
def test_other_family_prompt_mode_or_forced_size_are_refused(
    reports: Path, tmp_path: Path, settings: dict[str, object], needle: str
) -> None:
    store(tmp_path, build("other", settings=settings_for(**settings)))
    with pytest.raises(RunsDiffer, match="not run on the same items") as error:
        compare_stored(load_run("early", reports), load_run("other", tmp_path))
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_the_same_settings_but_other_recorded_seeds_are_refused(
    reports: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The seeds each record holds decide, not the settings that chose them."""
    data = _report_data(reports, "late")
    evaluation = data["evaluation"]
    assert isinstance(evaluation, dict)
    evaluation["items"][1]["seed"] = 1234567
    folder = _stored_run(tmp_path, "edited", json.dumps(data))
    run = cli(capfd, "runs", "compare", "early", folder, "--reports-dir", reports)
    run.only_line("not run on the same items", "1234567")


@pytest.mark.parametrize(
    ("field", "needle"),
    [("prompt", "item 1000001: its prompt differs"), ("expected", "its expected answer differs")],
)
def test_other_item_texts_are_refused(
    reports: Path, tmp_path: Path, field: str, needle: str
) -> None:
    """Another item generator under the same settings: the same seeds, other texts."""
    data = _report_data(reports, "late")
    evaluation = data["evaluation"]
    assert isinstance(evaluation, dict)
    evaluation["items"][1][field] += " changed"
    _stored_run(tmp_path, "edited", json.dumps(data))
    with pytest.raises(RunsDiffer, match=needle):
        compare_stored(load_run("early", reports), load_run("edited", tmp_path))


def test_another_chat_template_is_refused(tmp_path: Path) -> None:
    both = settings_for(prompt_mode="both")
    store(tmp_path, build("a", settings=both))
    data = json.loads(record_module.to_json(build("b", settings=both)))
    data["evaluation"]["items"][0]["answers"]["merged (chat)"]["prompt"] = "<other template>"
    _stored_run(tmp_path, "b-edited", json.dumps(data))
    with pytest.raises(RunsDiffer, match="prompt sent to merged \\(chat\\) differs"):
        compare_stored(load_run("a", tmp_path), load_run("b-edited", tmp_path))


def test_runs_that_ran_nothing_are_one_line(reports: Path, tmp_path: Path) -> None:
    store(tmp_path, build("same-files", identical=True))
    with pytest.raises(RunsDiffer, match="not run on the same items") as error:
        compare_stored(load_run("early", reports), load_run("same-files", tmp_path))
    assert "generated items (--eval-size) 2 (seeds 1000000-1000001) vs none" in str(error.value)
    record = load_run("same-files", tmp_path).record
    assert verdict_text(record) == "IDENTICAL" and models_text(record) == "-"


# --------------------------------------------------------------------------- bad input


def test_a_missing_run_is_one_line(reports: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run = cli(capfd, "runs", "compare", "early", "nope", "--reports-dir", reports)
    run.only_line("no stored run nope", str(reports), "simonsca runs list")


def test_a_folder_that_is_not_a_run_is_one_line(
    reports: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    run = cli(capfd, "runs", "compare", "empty", "early", "--reports-dir", reports)
    run.only_line("empty is a folder but not a stored run", "no report.json")


def test_invalid_json_is_one_line(
    reports: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = _stored_run(tmp_path, "broken", '{"schema": "simonsca.report/3",')
    run = cli(capfd, "runs", "compare", "early", folder, "--reports-dir", reports)
    run.only_line(str(folder / "report.json"), "not valid JSON")


@pytest.mark.parametrize(
    ("schema", "needles"),
    [
        ("simonsca.report/4", ["newer simonsca", "simonsca.report/4", SCHEMA, "upgrade"]),
        ("simonsca.report/1", ["older", "simonsca.report/1", SCHEMA, "no upgrade"]),
        ("inspect_ai/1", ["not a simonsca report", "inspect_ai/1"]),
    ],
)
def test_another_schema_is_one_line_naming_both_versions(
    reports: Path,
    tmp_path: Path,
    schema: str,
    needles: list[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    data = _report_data(reports)
    data["schema"] = schema
    folder = _stored_run(tmp_path, "other-schema", json.dumps(data))
    run = cli(capfd, "runs", "compare", folder, "early", "--reports-dir", reports)
    run.only_line(str(folder / "report.json"), *needles)


def test_a_record_missing_a_field_is_one_line(
    reports: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data = _report_data(reports)
    del data["checks"]
    folder = _stored_run(tmp_path, "cut", json.dumps(data))
    run = cli(capfd, "runs", "compare", "early", folder, "--reports-dir", reports)
    run.only_line(str(folder / "report.json"), f"does not match schema {SCHEMA}", "checks")


def test_one_run_is_a_usage_error(capfd: pytest.CaptureFixture[str]) -> None:
    run = cli(capfd, "runs", "compare", "early")
    run.only_line("the following arguments are required: B")


# --------------------------------------------------------------------------- the schema


def test_an_older_schema_is_upgraded_through_the_hook(
    reports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _report_data(reports)
    data["schema"] = "simonsca.report/1"
    data["run_id"] = "old-name"

    def upgrade(old: dict[str, object]) -> dict[str, object]:
        return {**old, "schema": SCHEMA, "run_id": "upgraded"}

    monkeypatch.setitem(record_module.UPGRADES, "simonsca.report/1", upgrade)
    assert from_json(json.dumps(data)).run_id == "upgraded"


def test_the_current_schema_reads_back_unchanged(reports: Path) -> None:
    text = (reports / "early" / "report.json").read_text()
    assert record_module.to_json(from_json(text)) == text
    with pytest.raises(StoredRunError, match="nowhere"):
        load_run(Path("nowhere"), reports)


@pytest.mark.parametrize("name", ["raw", "both"])
def test_a_v2_record_is_upgraded_to_a_reference_and_one_candidate(name: str) -> None:
    record = from_json(v2_text(name))
    e = record.evaluation
    assert record.schema == SCHEMA
    assert e.reference == "base" and [c.name for c in e.candidates] == ["merged"]
    assert e.settings.lora == ("fixtures/tiny/tiny-lora.gguf",) and e.settings.merged_model == ()
    models = {(m.label, m.contender, m.role) for m in e.models if m.kind == "model"}
    modes = ("raw", "chat") if name == "both" else ("raw",)
    assert [(p.reference, p.candidate, p.prompt_mode) for p in e.comparisons] == [
        ("base", "merged", mode) for mode in modes
    ]
    assert ("merged", "merged", "candidate") in models and ("base", "base", "reference") in models
    if name == "both":
        assert ("merged (chat)", "merged", "candidate") in models
    assert all(c.candidate == "merged" for c in record.checks)
    assert record.verdict_of("merged") is not None


def test_a_v2_record_with_a_merged_file_is_upgraded(tmp_path: Path) -> None:
    data = v2_data("raw")
    data["evaluation"]["settings"].update(merged_model="merged.gguf", lora=None)
    record = from_json(json.dumps(data))
    assert record.evaluation.settings.merged_model == ("merged.gguf",)
    assert record.evaluation.settings.lora == ()

"""Stored runs read back and compared with no model: ``simonsca runs list|compare``.

Real records, made cheaply: the real ``simonsca compare`` on the tiny GGUF fixtures (copies, so
they can be deleted), four runs of about a second each. Every model file is deleted before any
run is listed or compared, so nothing here can have loaded a model. Every bad input is one line
and exit status 2.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import cli
from tiny_models import BASE, LORA

from simonsca import record as record_module
from simonsca.cli import main
from simonsca.errors import StoredRunError
from simonsca.metrics import METRICS
from simonsca.record import SCHEMA, from_json
from simonsca.report import load_record
from simonsca.runs import compare_stored, load_run

#: About a second a run on the tiny model (one thread: the machine is shared).
FAST = ["--n-ctx", "512", "--n-threads", "1", "--eval-size", "2", "--forced-size", "4"]
FAST += ["--no-progress", "--no-cache"]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Five stored runs; then the model files are gone.

    ``early``: base + the tiny LoRA at load; ``late``: base vs the LoRA merged into a file (the
    same items: what a later checkpoint looks like); ``other-seeds``: other items;
    ``smaller``: fewer generated items; ``forced-only``: the same seeds, teacher forcing only."""
    work = tmp_path_factory.mktemp("runs")
    models = work / "models"
    models.mkdir()
    base, lora = models / "base.gguf", models / "adapter.gguf"
    shutil.copyfile(BASE, base)
    shutil.copyfile(LORA, lora)
    out = work / "reports"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("SIMONSCA_CACHE", str(work / "cache"))
        assert main(["merge", str(base), str(lora), str(models / "merged.gguf")]) == 0
        common = [*FAST, "--reports-dir", str(out)]
        for run_id, options in (
            ("early", [str(base), "--lora", str(lora)]),
            ("late", [str(base), str(models / "merged.gguf")]),
            ("other-seeds", [str(base), "--lora", str(lora), "--eval-seed", "1000100"]),
            ("smaller", [str(base), "--lora", str(lora), "--eval-size", "1"]),
            ("forced-only", [str(base), "--lora", str(lora), "--scoring", "teacher-forced"]),
        ):
            assert main(["compare", *common, "--run-id", run_id, *options]) in (0, 1), run_id
    shutil.rmtree(models)  # no model file from here on
    yield out


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
    assert ids[0] == "copied"
    assert sorted(ids) == sorted(
        ["copied", "early", "late", "other-seeds", "smaller", "forced-only"]
    )
    early = next(line for line in lines if line.startswith("early "))
    assert "base=base vs merged=base+adapter" in early
    assert "v5-small from 1000000: 2 gen, 4 TF; raw" in early
    stored = load_record(reports / "early")
    assert stored.verdict is not None and stored.verdict.word in early
    assert ("PASS" if stored.passed else f"FAIL {len(stored.failed)}/10") in early
    assert "2099-01-01 00:00Z" in lines[2]


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
    rows = {
        (line[:8].strip(), line[8:38].strip()): line
        for line in lines
        if line.startswith(("merged ", "base "))
    }
    a, b = load_record(reports / "early"), load_record(reports / "late")
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


def test_compare_measures_the_change_with_the_project_statistics(reports: Path) -> None:
    from simonsca.compare import compare_forced

    a, b = load_run("early", reports), load_run(reports / "late" / "report.json", reports)
    side = compare_stored(a, b).sides[0]
    assert side.label == "merged"
    assert not side.same_files
    _, expected = compare_forced(
        a.record.evaluation.forced_scores("merged"), b.record.evaluation.forced_scores("merged")
    )
    assert side.likelihood == expected
    assert side.likelihood.delta.n == 4


def test_compare_takes_a_folder_a_report_and_latest(
    reports: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    by_id = cli(capfd, "runs", "compare", "early", "late", "--reports-dir", reports)
    by_path = cli(capfd, "runs", "compare", reports / "early", reports / "late" / "report.json")
    assert by_id.rc == by_path.rc == 0 and by_id.out == by_path.out
    latest = cli(capfd, "runs", "compare", "latest", "forced-only", "--reports-dir", reports)
    assert latest.rc == 0 and latest.out.startswith("A: forced-only "), latest.err


@pytest.mark.parametrize(
    ("other", "needles"),
    [
        ("other-seeds", ["generated items 2 (seeds 1000000-1000001) vs 2 (seeds 1000100-"]),
        ("smaller", ["generated items 2 (seeds 1000000-1000001) vs 1 (seed 1000000)"]),
        ("forced-only", ["scoring both vs teacher-forced"]),
    ],
)
def test_runs_on_other_items_are_refused(
    reports: Path, other: str, needles: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    run = cli(capfd, "runs", "compare", "early", other, "--reports-dir", reports)
    run.only_line("simonsca runs: error:", "early", other, "not run on the same items", *needles)


def test_the_same_settings_but_other_recorded_seeds_are_refused(
    reports: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The seeds each record holds decide, not the settings that chose them."""
    data = _report_data(reports, "late")
    evaluation = data["evaluation"]
    assert isinstance(evaluation, dict)
    evaluation["items"][0]["seed"] = 1234567
    folder = _stored_run(tmp_path, "edited", json.dumps(data))
    run = cli(capfd, "runs", "compare", "early", folder, "--reports-dir", reports)
    run.only_line("not run on the same items", "1234567")


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
    folder = _stored_run(tmp_path, "broken", '{"schema": "simonsca.report/2",')
    run = cli(capfd, "runs", "compare", "early", folder, "--reports-dir", reports)
    run.only_line(str(folder / "report.json"), "not valid JSON")


@pytest.mark.parametrize(
    ("schema", "needles"),
    [
        ("simonsca.report/3", ["newer simonsca", "simonsca.report/3", SCHEMA, "upgrade"]),
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


# --------------------------------------------------------------------------- the schema hook


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
        load_record(Path("nowhere"))

"""Reports: the data dict, the three files (atomic, never clobbered), latest link, the views."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime

import numpy as np
import pytest

from simonsca import codec
from simonsca.compare import Gate, Verdict
from simonsca.errors import OutputExistsError
from simonsca.models.base import ModelInfo
from simonsca.report import (
    REPORT_FILES,
    build_report,
    load_report,
    make_run_id,
    render_html,
    render_summary_md,
    render_terminal_table,
    write_reports,
)
from simonsca.rules import neighbor_counts, step
from simonsca.runner import ModelRun, Prediction
from simonsca.scoring import score_answer, summarize
from simonsca.tasks import Item, PromptMode, Symbols, Task

CREATED = datetime(2026, 11, 28, 21, 0, 0, tzinfo=UTC)


def make_test_item(seed, task=Task.NEXT, size=5):
    rng = np.random.default_rng(seed)
    grid = rng.random((size, size + 1)) < 0.4
    symbols = Symbols()
    if task == Task.NEXT:
        expected = step(grid, True, True, 1)
        output = codec.render_grid(expected, symbols)
    else:
        expected = neighbor_counts(grid, True, True)
        output = codec.render_counts(expected)
    return Item(
        seed=seed,
        task=task,
        wrap_x=True,
        wrap_y=True,
        generations=1,
        symbols=symbols,
        instruction="SimonsCA1\ndead='0' live='1'",
        input=codec.render_grid(grid, symbols),
        output=output,
        generator="eval",
        grid=grid,
        expected=np.array(expected),
    )


def run_of(name, items, texts):
    preds = tuple(
        Prediction(it.seed, PromptMode.RAW, it.prompt, t, len(t), "stop", False)
        for it, t in zip(items, texts)
    )
    info = ModelInfo(name=name, path=f"/models/{name}.gguf", sha256=name * 8)
    return ModelRun(info, PromptMode.RAW, preds, 2.0, len(items) / 2.0)


def flip_one(item):
    """The expected answer with one cell/number wrong."""
    if item.task == Task.COUNT:
        wrong = item.expected.copy()
        wrong[0, 0] += 1
        return codec.render_counts(wrong)
    wrong = item.expected.copy()
    wrong[0, 0] = not wrong[0, 0]
    return codec.render_grid(wrong, item.symbols)


@pytest.fixture
def items():
    return [make_test_item(i, Task.NEXT if i % 2 else Task.COUNT) for i in range(6)]


@pytest.fixture
def report(items):
    base_texts = [flip_one(it) for it in items[:5]] + ["I do not know."]
    merged_texts = [it.output for it in items[:4]] + [flip_one(items[4]), items[5].output]
    dead = [
        codec.render_counts(np.zeros_like(it.expected))
        if it.task == Task.COUNT
        else codec.render_grid(np.zeros_like(it.expected), it.symbols)
        for it in items
    ]
    return build_report(
        items,
        {
            "base": run_of("base", items, base_texts),
            "merged": run_of("merged", items, merged_texts),
        },
        baselines={"all-dead": run_of("baseline:all-dead", items, dead)},
        gate=Gate(min_exact_gain=0.05, min_cell_gain=0.5, max_family_regression=0.1),
        thresholds={"eval_size": 6},
        created=CREATED,
    )


def test_report_is_json_data_with_everything(report, items):
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    assert report["run_id"].startswith("20261128-210000-")
    assert report["created"] == "2026-11-28T21:00:00Z"
    assert {"python", "numpy", "llama_cpp_python", "platform"} <= set(report["environment"])
    assert [m["label"] for m in report["models"]] == ["base", "merged", "all-dead"]
    assert report["models"][0]["sha256"] == "base" * 8
    assert report["models"][0]["prompt_mode"] == "raw"
    assert report["models"][0]["items_per_second"] == 3.0
    assert len(report["items"]) == 6
    first = report["items"][0]
    assert first["seed"] == 0 and first["expected"] == items[0].output
    assert first["prompt"] == items[0].prompt
    assert set(first["answers"]) == {"base", "merged", "all-dead"}
    assert first["answers"]["merged"]["score"]["exact"] is True
    assert report["items"][5]["answers"]["base"]["value"] is None
    assert report["summaries"]["merged"]["metrics"]["exact"]["value"] == pytest.approx(5 / 6)
    assert report["comparison"]["verdict"] == Verdict.IMPROVED.value
    assert report["comparison"]["mcnemar"] == {"b": 0, "c": 5, "p": pytest.approx(0.0625)}
    assert report["thresholds"]["eval_size"] == 6
    assert report["thresholds"]["min_exact_gain"] == 0.05
    assert report["gate"]["checked"] and not report["gate"]["passed"]
    assert any("min_cell_gain" in f for f in report["gate"]["failures"])


def test_run_id_is_deterministic(items):
    runs = {"base": run_of("base", items, [it.output for it in items])}
    assert make_run_id(runs, items, CREATED) == make_run_id(runs, items, CREATED)
    other = {"base": run_of("other", items, [it.output for it in items])}
    assert make_run_id(runs, items, CREATED) != make_run_id(other, items, CREATED)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", make_run_id(runs, items, CREATED))


def test_missing_answers_are_an_error(items):
    runs = {"base": run_of("base", items[:3], [it.output for it in items[:3]])}
    with pytest.raises(ValueError, match="no answer for 3 of 6 items"):
        build_report(items, runs, created=CREATED)


def test_identical_models_report_identical(items):
    texts = [flip_one(it) for it in items]
    report = build_report(
        items,
        {"base": run_of("base", items, texts), "merged": run_of("merged", items, list(texts))},
        created=CREATED,
    )
    assert report["comparison"]["verdict"] == "identical"
    assert "IDENTICAL" in render_summary_md(report)


def test_write_reports_writes_three_files_and_latest(tmp_path, report):
    run_dir = write_reports(report, tmp_path / "reports")
    assert run_dir == tmp_path / "reports" / report["run_id"]
    assert sorted(os.listdir(run_dir)) == sorted(REPORT_FILES)  # no temporary files left
    assert load_report(run_dir) == report
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and os.readlink(latest) == report["run_id"]
    assert (latest / "summary.md").read_text() == (run_dir / "summary.md").read_text()
    assert [p.name for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")] == []

    second = dict(report, run_id="20261128-220000-deadbeef")
    run2 = write_reports(second, tmp_path / "reports")
    assert os.readlink(latest) == run2.name
    assert (run_dir / "report.json").exists()  # the first run is untouched


def test_write_reports_refuses_to_clobber(tmp_path, report):
    write_reports(report, tmp_path)
    before = (tmp_path / report["run_id"] / "report.json").read_bytes()
    changed = dict(report, n_items=999)
    with pytest.raises(OutputExistsError, match=report["run_id"]):
        write_reports(changed, tmp_path)
    assert (tmp_path / report["run_id"] / "report.json").read_bytes() == before


def test_latest_falls_back_to_a_copy_without_symlinks(tmp_path, report, monkeypatch):
    def no_symlinks(*args, **kwargs):
        raise OSError("symlinks not supported here")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    run_dir = write_reports(report, tmp_path)
    latest = tmp_path / "latest"
    assert latest.is_dir() and not latest.is_symlink()
    assert (latest / "report.json").read_bytes() == (run_dir / "report.json").read_bytes()
    second = write_reports(dict(report, run_id="20261128-220000-deadbeef"), tmp_path)
    assert json.loads((latest / "report.json").read_text())["run_id"] == second.name
    monkeypatch.undo()
    third = write_reports(dict(report, run_id="20261128-230000-deadbeef"), tmp_path)
    assert latest.is_symlink() and os.readlink(latest) == third.name


def test_atomic_write_leaves_old_file_when_rendering_fails(tmp_path, report, monkeypatch):
    import simonsca.report as rep

    def boom(_report):
        raise RuntimeError("render failed")

    monkeypatch.setattr(rep, "render_html", boom)
    with pytest.raises(RuntimeError):
        write_reports(report, tmp_path)
    run_dir = tmp_path / report["run_id"]
    # the files written before the failure are complete, and no temporary file is left
    assert sorted(os.listdir(run_dir)) == ["report.json", "summary.md"]
    assert not (tmp_path / "latest").exists()


def test_html_is_self_contained_with_one_picture_per_answer(report):
    page = render_html(report)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<link" not in page and "src=" not in page
    sections = page.split('<section class="item"')[1:]
    assert len(sections) == 6
    for section in sections:
        assert section.count('<figure class="answer') == 3  # base, merged, all-dead
        assert section.count('<figure class="input"') == 1
        assert section.count('<figure class="expected"') == 1
    # item 5: base did not answer in the format -> its text is shown
    assert '<figure class="answer unparsed" data-model="base"' in sections[5]
    assert "I do not know." in sections[5]
    # item 0 (count task): base has one wrong number, marked in red
    fig = re.search(
        r'<figure class="answer" data-model="base" data-wrong-cells="(\d+)">(.*?)</figure>',
        sections[0],
    )
    assert fig and fig.group(1) == "1"
    assert 'class="wrong"' in fig.group(2) and 'class="wrong-numbers"' in fig.group(2)
    # item 1 (next task): merged is exact -> nothing marked
    fig = re.search(
        r'<figure class="answer" data-model="merged" data-wrong-cells="(\d+)">(.*?)</figure>',
        sections[1],
    )
    assert fig.group(1) == "0" and 'class="wrong"' not in fig.group(2)
    assert 'data-task="count"' in sections[0] and 'select data-facet="wrap"' in page
    assert "<script>" in page


def test_html_marks_missing_and_extra_cells(items):
    item = items[1]
    short = codec.render_grid(item.expected[:-1], item.symbols)
    report = build_report(items[1:2], {"m": run_of("m", items[1:2], [short])}, created=CREATED)
    page = render_html(report)
    assert 'class="missing"' in page and 'data-wrong-cells="6"' in page
    longer = codec.render_grid(np.vstack([item.expected, item.expected[:1]]), item.symbols)
    report = build_report(items[1:2], {"m": run_of("m", items[1:2], [longer])}, created=CREATED)
    assert 'class="extra"' in render_html(report)


def test_summary_md_has_tables_deltas_and_gate(report):
    md = render_summary_md(report)
    assert md.startswith("## simonsca: merged vs base -- IMPROVED")
    assert "| base | model | raw |" in md and "| all-dead | baseline | raw |" in md
    assert (
        "McNemar exact test on exact match: b=0 only base right, c=5 only merged right, p=0.0625"
        in md
    )
    assert "### By family" in md and "| task | count | 3 |" in md
    assert "### Family regressions" in md
    assert "FAILED: cell-accuracy gain" in md
    assert len(md) < 20_000


def test_terminal_table_from_report_and_from_objects(report, items):
    text = render_terminal_table(report)
    assert "verdict: IMPROVED" in text and "all-dead" in text and "McNemar" in text
    assert "FAILED:" in text
    scores = [score_answer(it, it.expected.copy()) for it in items]
    plain = render_terminal_table(
        summaries={"oracle": summarize(scores)}, baseline_labels=["oracle"]
    )
    assert "oracle" in plain and "100.0%" in plain and "verdict" not in plain

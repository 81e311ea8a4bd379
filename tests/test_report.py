"""Reports: the views of one record (HTML page, Markdown summary), escaping, files.

The record is built here the way the suite builds it -- real held-out items, hand-written answer
texts scored by the real parser and scorer, real teacher-forced scores, the real baselines,
comparison and checks -- so the views are tested on what they will really be shown.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest

from simonsca import codec
from simonsca.checks import evaluate_checks
from simonsca.curve import GETTING_WORSE, PLATEAU, STILL_LEARNING, UNCONFIRMED
from simonsca.dataset import eval_items
from simonsca.errors import OutputExistsError
from simonsca.forensics.findings import Finding, Severity
from simonsca.learning_curve import learning_curve
from simonsca.likelihood import forced_score
from simonsca.metrics import FORCED_METRICS, GENERATION_METRICS
from simonsca.models import BASELINES
from simonsca.models.base import AnswerLikelihood, ModelInfo
from simonsca.outcome import Status
from simonsca.record import (
    SCHEMA,
    AnswerRecord,
    Candidate,
    Environment,
    EvalRecord,
    Evaluation,
    MergeCheck,
    ModelEntry,
    Pairing,
    answer_record,
    from_json,
    item_record,
    to_json,
)
from simonsca.report import CURVE_FILE, REPORT_FILES, render_all, write_reports
from simonsca.report.curve_views import CSV_COLUMNS, curve_csv
from simonsca.report.html import environment, render_html
from simonsca.report.markdown import SCORING_DEFINITIONS, md_code, md_text, render_markdown
from simonsca.report.svg import forest_panels, forest_svg, grid_svg, nice_ticks
from simonsca.report.terminal import render_terminal
from simonsca.runner import GenerationRun, answer_baseline
from simonsca.settings import Settings
from simonsca.summary import summarize
from simonsca.tasks import Item, Task
from simonsca.verdict import compare_runs

HOSTILE = "</script><img src=x onerror=alert(1)>"
HOSTILE_FILE = "/models/we`ird <b>bold</b> ``x``.gguf"
HOSTILE_BASELINE = "copy`<b>input</b>"
N_GENERATED, N_FORCED = 8, 12
SVG = "{http://www.w3.org/2000/svg}"


# ------------------------------------------------------------------------------ the record


def _flip_one(item: Item) -> str:
    """The expected answer with its first cell (or count) wrong."""
    wrong = np.array(item.expected).copy()
    if item.task is Task.COUNT:
        wrong[0, 0] += 1
        return codec.render_counts(wrong)
    wrong[0, 0] = not wrong[0, 0]
    return codec.render_grid(wrong, item.symbols)


def _extra_row(item: Item) -> str:
    """The expected answer and one more row: extra cells outside the expected grid."""
    rows = item.output.split(item.symbols.row_sep)
    return item.symbols.row_sep.join([*rows, rows[0]])


def _missing_row(item: Item) -> str:
    return item.symbols.row_sep.join(item.output.split(item.symbols.row_sep)[:-1])


def _all_dead(item: Item) -> str:
    return codec.render_grid(np.zeros_like(item.expected, dtype=bool), item.symbols)


def answer_texts(items: list[Item]) -> dict[str, list[str]]:
    """Hand-written greedy answers: the merged model mostly right, the base mostly not."""
    merged = [
        _flip_one(items[0]),  # a count: one number wrong
        items[1].output,
        _extra_row(items[2]),  # extra cells outside the expected grid
        items[3].output,
        _missing_row(items[4]),  # expected cells missing
        items[5].output,
        items[6].output,
        items[7].output,
    ]
    base = [
        "[[0]]",
        "no grid here, sorry " * 200,  # long and unparsed: cut in the page
        _flip_one(items[2]),
        items[3].output,  # the same answer as merged
        HOSTILE,  # does not parse: shown as (escaped) text
        _flip_one(items[5]),
        items[6].output,  # the same answer as merged
        _all_dead(items[7]),
    ]
    return {"base": base, "merged": merged}


def _likelihood(item: Item, logprob: float, every: int, right: int = 0) -> AnswerLikelihood:
    """One token per byte of the expected answer; every ``every``-th not the top choice. With
    ``right``: the first ``right`` bytes of every ten are the top choice (-0.5), the rest not."""
    n = len(item.output.encode("utf-8"))
    margins = tuple(
        (-0.5 if k % 10 < right else 0.5) if right else (0.0 if k % every else 0.5)
        for k in range(n)
    )
    return AnswerLikelihood(
        token_ends=tuple(range(1, n + 1)),
        logprobs=tuple(logprob - 0.01 * (k % 5) for k in range(n)),
        margins=margins,
        stop_logprob=-0.1,
        stop_greedy=True,
    )


def _answer(item: Item, text: str) -> AnswerRecord:
    return answer_record(item, text, n_tokens=len(text), finish_reason="stop", cached=False)


def _model(label: str, path: str, origin: str = "given", role: str = "candidate") -> ModelEntry:
    info = ModelInfo(name=label, path=path, sha256=hashlib.sha256(label.encode()).hexdigest())
    return ModelEntry(
        label=label,
        contender=label,
        role=role,
        kind="model",
        prompt_mode="raw",
        info=info,
        origin=origin,
        generation_seconds=2.0,
        generation_items_per_second=4.0,
        n_answers=N_GENERATED,
        n_forced=N_FORCED,
        forced_seconds=1.0,
        forced_items_per_second=12.0,
    )


def run_baselines(items: list[Item]) -> dict[str, GenerationRun]:
    """Every trivial baseline (and the oracle) on ``items``, as the suite runs them."""
    return {name: answer_baseline(cls(), items) for name, cls in BASELINES.items()}


#: The two-model run: (name, step, path, origin) of each candidate.
TWO_MODELS = (("merged", None, HOSTILE_FILE, f"made by {HOSTILE}"),)
#: A checkpoint series: three candidates with a training step.
CHECKPOINTS = tuple(
    (f"checkpoint-{k}", k, f"/runs/checkpoint-{k}.gguf", "given") for k in (10, 20, 30)
)
#: Teacher-forced likelihoods of the series: (log-prob, every, right in ten bytes) -- base 30%
#: of the answer bytes the top choice, checkpoint-10 and -20 70% (a plateau: the same cells),
#: checkpoint-30 40% (getting worse).
SERIES_FORCED = {
    "base": (-0.6, 3, 3),
    "checkpoint-10": (-0.4, 3, 7),
    "checkpoint-20": (-0.3, 3, 7),
    "checkpoint-30": (-0.5, 3, 4),
}


def build_record(
    candidates: tuple[tuple[str, int | None, str, str], ...] = TWO_MODELS,
    forced: dict[str, tuple[float, int, int]] | None = None,
    **settings: object,
) -> EvalRecord:
    """A small, real record: 12 held-out items, 8 of them answered greedily, one reference
    (``base``) and ``candidates`` (by default the two-model run's ``merged``)."""
    items = eval_items(N_FORCED)
    texts = answer_texts(items)
    names = [name for name, *_ in candidates]
    # a checkpoint answers as the base (the first) or as the merged model (the others)
    for k, name in enumerate(names):
        texts.setdefault(name, texts["base" if k == 0 else "merged"])
    baselines = {
        (HOSTILE_BASELINE if name == "copy-input" else name): run
        for name, run in run_baselines(items).items()
    }
    forced = forced or {"base": (-0.6, 3, 0), "merged": (-0.2, 7, 0)}
    records = []
    for k, item in enumerate(items):
        answers = {}
        if k < N_GENERATED:
            answers = {label: _answer(item, texts[label][k]) for label in ("base", *names)}
        for label, run in baselines.items():
            answers[label] = _answer(item, run.predictions[k].text)
        scores = {
            label: forced_score(item, _likelihood(item, lp, every, right))
            for label, (lp, every, right) in forced.items()
        }
        records.append(item_record(item, answers, scores))
    answered = records[:N_GENERATED]
    labels = ["base", *names, *baselines]

    def gen(label: str) -> list:
        return [r.answers[label].score for r in records if label in r.answers]

    pairings = tuple(
        Pairing(
            "base",
            name,
            "raw",
            compare_runs(
                base=gen("base"),
                merged=gen(name),
                base_texts=[r.answers["base"].text for r in answered],
                merged_texts=[r.answers[name].text for r in answered],
                baselines={b: gen(b) for b in baselines},
                base_forced=[r.forced["base"] for r in records],
                merged_forced=[r.forced[name] for r in records],
                names=("base", name),
            ),
        )
        for name in names
    )
    models = (
        _model("base", "/models/base.gguf", role="reference"),
        *(_model(name, path, origin=origin) for name, _, path, origin in candidates),
        *(
            ModelEntry(
                label=b,
                contender=b,
                role="baseline",
                kind="baseline",
                prompt_mode="raw",
                info=ModelInfo(name=f"baseline:{b}", path=None, sha256=None),
                n_answers=N_FORCED,
                finish_reasons={"stop": N_FORCED},
            )
            for b in baselines
        ),
    )
    evaluation = Evaluation(
        settings=Settings(eval_size=N_GENERATED, forced_size=N_FORCED, **settings),  # type: ignore[arg-type]
        compared=f"base=base.gguf vs {' '.join(f'{n}={p}' for n, _, p, _ in candidates)}; "
        f"{N_GENERATED} generated and {N_FORCED} teacher-forced v5-small items from seed 1000000",
        items=tuple(records),
        models=models,
        summaries={label: summarize(gen(label), GENERATION_METRICS) for label in labels},
        forced_summaries={
            label: summarize([r.forced[label] for r in records], FORCED_METRICS) for label in forced
        },
        reference="base",
        candidates=tuple(Candidate(name, step) for name, step, *_ in candidates),
        comparisons=pairings,
        merge_checks=(MergeCheck(names[0], adapter="adapter.gguf", identical=8, n=8),),
        findings=(
            Finding("update-below-resolution", Severity.INFO, f"a finding {HOSTILE}", "detail"),
        ),
        warnings=(f"{names[0]}: the server said {HOSTILE}",),
    )
    evaluation = replace(evaluation, curve=learning_curve(evaluation))  # as the suite does
    return EvalRecord(
        schema=SCHEMA,
        run_id="20261128-210000-abc123",
        created="2026-11-28T21:00:00Z",
        environment=Environment("3.11.9", "2.1.0", None, "0.1.0", "Linux-test", "x86_64"),
        evaluation=evaluation,
        checks=evaluate_checks(evaluation),
    )


def build_series() -> EvalRecord:
    """Three checkpoints (steps 10, 20, 30) against the base: a learning curve."""
    return build_record(CHECKPOINTS, SERIES_FORCED)


@pytest.fixture(scope="module")
def record() -> EvalRecord:
    return build_record()


@pytest.fixture(scope="module")
def page(record: EvalRecord) -> str:
    return render_html(record)


def text_of(page: str) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded, spaces collapsed."""
    no_tags = re.sub(r"<[^>]+>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(no_tags))


def svg_elements(page: str, cls: str) -> list[ET.Element]:
    """Every ``<svg class="cls">`` of the page, parsed as XML (so each is well-formed)."""
    found = re.findall(rf'<svg class="{cls}".*?</svg>', page, flags=re.DOTALL)
    return [ET.fromstring(s) for s in found]


# ------------------------------------------------------------------------------- the page


def test_render_is_deterministic_and_survives_json(record: EvalRecord) -> None:
    first = render_all(record)
    assert render_all(record) == first
    again = from_json(to_json(record))
    assert render_html(again) == first["report.html"]
    assert render_markdown(again) == first["summary.md"]


def test_template_escapes_everything_and_refuses_missing_values() -> None:
    env = environment()
    assert env.autoescape is True
    template = env.from_string("{{ a }}")
    assert template.render(a="<b>") == "&lt;b&gt;"
    with pytest.raises(Exception, match="undefined"):
        template.render()


def test_page_has_every_section(record: EvalRecord, page: str) -> None:
    e = record.evaluation
    c = e.comparison
    assert c is not None and c.likelihood is not None
    text = text_of(page)
    assert page.startswith("<!doctype html>")
    assert f"simonsca: merged vs base -- {c.verdict.word}" in text
    assert f"verdict: {c.verdict.word} -- {c.headline}" in text
    assert "likelihood: answer NLL base" in text
    assert record.run_id in text and "2026-11-28T21:00:00Z" in text
    assert "compared: base=base.gguf" in text
    for m in e.models:
        assert f"<td>{html.escape(m.label)}</td>" in page
    assert "35." in text or "%" in text  # the models table has numbers with CIs
    assert re.search(r"\d+\.\d% \(\d+-\d+\)", text)
    assert "cell accuracy" in text and "teacher-forced cell accuracy" in text
    assert c.baseline is not None
    sentence = c.baseline.sentence()
    assert sentence[0].upper() + sentence[1:] + "." in text
    assert "merge check: the merged file answers exactly like base + adapter.gguf on 8 of 8" in text
    assert f"merged: the server said {HOSTILE}" in text  # the note, escaped (see below)
    assert f"info update-below-resolution : a finding {HOSTILE} \u2014 detail" in text
    assert "python 3.11.9" in text and "platform Linux-test" in text
    assert "McNemar exact test on exact match" in text


def test_legend_states_the_scoring_definitions_exactly(page: str, record: EvalRecord) -> None:
    text = text_of(page)
    assert SCORING_DEFINITIONS[0] == (
        "Cell accuracy = right cells \u00f7 the cells of either grid (answer laid on the expected "
        "grid at the top-left; every expected cell the answer lacks and every extra cell it adds "
        "counts wrong)."
    )
    for sentence in SCORING_DEFINITIONS:
        assert sentence in text
        assert md_text(sentence) in render_markdown(record)


def test_checks_section_says_exactly_what_the_checks_decided(record: EvalRecord) -> None:
    page = render_html(record)
    text = text_of(page)
    for c in record.checks:
        row = re.search(
            rf'<tr class="{c.status.value}" data-check="{c.name}">(.*?)</tr>', page, re.DOTALL
        )
        assert row is not None, c.name
        assert f"<td>{html.escape(c.message)}</td>" in row.group(1)
        assert c.status.value.upper() in row.group(1)
    assert not any(c.failed for c in record.checks)
    assert "No check failed" in text and "checks failed" not in text

    strict = build_record(min_cell_gain=0.9, require_skill=True)
    failed = [c.name for c in strict.checks if c.status is Status.FAILED]
    assert "cell_gain" in failed
    strict_text = text_of(render_html(strict))
    assert (
        f"{len(failed)} of {len(strict.checks)} checks failed ({', '.join(failed)})" in strict_text
    )
    assert "No check failed" not in strict_text
    assert 'class="gate bad"' in render_html(strict)
    md = render_markdown(strict)
    assert md_text(f"{len(failed)} of {len(strict.checks)} checks failed") in md


def test_forest_plot_has_a_row_per_delta_and_per_family(record: EvalRecord, page: str) -> None:
    c = record.evaluation.comparison
    assert c is not None and c.generation is not None and c.forced is not None
    (svg,) = svg_elements(page, "forest")
    rows = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "forest-row"]
    deltas = [g.get("data-metric") for g in rows if g.get("data-kind") == "delta"]
    assert deltas == [d.metric for d in c.generation.deltas] + [
        m for m in ("forced_cell_accuracy", "greedy_exact") if c.forced.delta(m)
    ] + ["nll"]
    families = [
        (g.get("data-facet"), g.get("data-value")) for g in rows if g.get("data-kind") == "family"
    ]
    assert families == [(f.facet, f.value) for f in c.generation.families]
    zero_lines = [ln for ln in svg.iter(f"{SVG}line") if ln.get("class") == "zero"]
    assert len(zero_lines) == 2  # one per unit: percentage points and nats
    ticks = [t.text or "" for t in svg.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert "0" in ticks
    assert any(t.startswith("+") and t.endswith(" pp") for t in ticks)
    assert any(t.startswith("\u2212") and t.endswith(" nats") for t in ticks)
    limit = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "family-limit"]
    assert len(limit) == 1
    assert "limit \u221210.0 pp" in "".join(limit[0].itertext())
    assert limit[0].find(f"{SVG}line").get("stroke-dasharray")  # type: ignore[union-attr]


def test_forest_plot_places_points_and_flags_families_beyond_the_limit(record: EvalRecord) -> None:
    c = record.evaluation.comparison
    assert c is not None
    limit = 0.01  # tighter than every family's loss: any family that lost is flagged
    svg = ET.fromstring(str(forest_svg(forest_panels(c, limit), title="t")))
    assert c.primary is not None
    for f, g in zip(
        c.primary.families,
        [g for g in svg.iter(f"{SVG}g") if g.get("data-kind") == "family"],
    ):
        assert g.get("data-flagged") == str(int(f.diff < -limit))
        lines = [ln for ln in g.iter(f"{SVG}line") if ln.get("class") == "ci"]
        point = g.find(f"{SVG}rect")
        assert point is not None and len(lines) == 1
        x_lo, x_hi = float(lines[0].get("x1", 0)), float(lines[0].get("x2", 0))
        x_mid = float(point.get("x", 0)) + 4.5
        assert x_lo - 0.11 <= x_mid <= x_hi + 0.11  # the point lies inside its CI bar


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    ticks, step = nice_ticks(-16, 93)
    assert step == 20 and ticks[0] <= -16 and ticks[-1] >= 80
    ticks, step = nice_ticks(-0.31, 0.02, 6)
    assert step == 0.1 and ticks[0] <= -0.31 and ticks[-1] == 0.0


def test_every_item_is_drawn_with_its_answers(record: EvalRecord, page: str) -> None:
    sections = re.findall(r'<section class="item".*?</section>', page, flags=re.DOTALL)
    assert len(sections) == N_FORCED
    models = ("base", "merged")
    for item, section in zip(record.evaluation.items, sections):
        assert f'id="item-{item.seed}"' in section
        assert section.count('aria-label="input"') == 1
        assert section.count('aria-label="expected"') == 1
        answered = [m for m in models if m in item.answers]
        head = section.split('<details class="baselines">')[0]
        assert head.count('<figure class="answer') == len(answered)
        for label in answered:
            a = item.answers[label]
            if a.value is None:
                assert html.escape(a.text[:50]) in section
            else:
                assert f'aria-label="{label} answer"' in section
        # teacher-forced numbers for every model, answered greedily or not
        forced = re.search(r'<table class="forced">(.*?)</table>', section, re.DOTALL)
        assert forced is not None
        for label in models:
            nll = f"{item.forced[label].nll:.3f}"
            assert f"<td>{label}</td><td>{nll}</td>" in forced.group(1)
        assert ("No greedy answers for this item" in section) == (not answered)
        assert f'data-answered="{int(bool(answered))}"' in section
        wrong = any(not item.answers[m].score.exact for m in answered)
        assert f'data-wrong="{int(wrong)}"' in section
        differs = bool(answered) and item.answers["base"].text != item.answers["merged"].text
        assert f'data-differs="{int(differs)}"' in section
        assert section.count('data-model="') == len(item.answers)  # baselines drawn too


def test_long_unparsed_answers_are_cut(record: EvalRecord, page: str) -> None:
    long_text = record.evaluation.items[1].answers["base"].text
    assert len(long_text) > 2000
    assert long_text not in page
    assert f"{long_text[:2000]}... ({len(long_text) - 2000} more characters)" in page


def test_filters_offer_every_facet_value_and_the_show_options(
    record: EvalRecord, page: str
) -> None:
    for facet in ("task", "wrap", "generations", "size", "symbols"):
        assert f'<select data-facet="{facet}">' in page
    for item in record.evaluation.items:
        for value in item.facets.values():
            assert f'<option value="{html.escape(value)}">' in page
    for option in ("all", "answered", "wrong", "differs"):
        assert f'<option value="{option}">' in page
    assert "base and merged differ" in page
    assert f"{N_FORCED} of {N_FORCED} items shown" in page


def test_grid_pictures_mark_wrong_missing_and_extra_cells() -> None:
    expected = ((1, 0, 0), (0, 1, 0))
    answer = ((1, 1), (0, 1), (1, 0))  # one wrong cell, one missing column, one extra row
    picture = grid_svg(answer, expected, counts=False, label="a <b> answer")
    svg = ET.fromstring(str(picture.svg))
    paths = {p.get("class"): p.get("d", "") for p in svg.iter(f"{SVG}path")}
    assert paths["wrong"].count("M") == 3  # the wrong cell and the two missing ones, outlined
    assert paths["missing"].count("M") == 2
    assert paths["extra"].count("M") == 2  # the extra row's two cells, crossed
    assert picture.wrong_cells == 3
    assert svg.get("aria-label") == "a <b> answer"  # escaped in the markup, read back whole
    assert "<b>" not in str(picture.svg)

    counts = grid_svg(((3, 2),), ((3, 4),), counts=True, label="counts")
    svg = ET.fromstring(str(counts.svg))
    wrong = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "wrong-numbers"]
    assert [t.text for t in wrong[0]] == ["2"]
    assert counts.wrong_cells == 1


def test_the_only_script_is_the_page_script_allowed_by_hash(page: str) -> None:
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    assert len(scripts) == 1 and page.count("<script") == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page
    assert "default-src 'none'" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


# ---------------------------------------------------------------------------- escaping


def test_hostile_texts_appear_only_escaped_in_html(page: str) -> None:
    assert "<img" not in page and "onerror=alert(1)>" not in page
    assert html.escape(HOSTILE) in page  # the answer text, the note, the origin
    assert "<b>bold</b>" not in page and "<b>input</b>" not in page
    assert html.escape(HOSTILE_FILE) in page
    assert html.escape(HOSTILE_BASELINE) in page
    assert text_of(page).count(HOSTILE) >= 3


def test_hostile_texts_appear_only_escaped_in_markdown(record: EvalRecord) -> None:
    md = render_markdown(record)
    tags = set(re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)", md))
    assert tags <= {"details", "summary", "sub", "code"}, tags
    assert "<img" not in md and "<b>" not in md and "</script>" not in md
    # the file name with backticks sits in a <code> element, its backticks and HTML escaped
    assert "<code>/models/we\\`ird &lt;b&gt;bold&lt;/b&gt; \\`\\`x\\`\\`.gguf</code>" in md
    assert "copy\\`&lt;b&gt;input&lt;/b&gt;" in md
    for line in md.splitlines():  # a code span is never opened by a name's own backtick
        assert re.search(r"(?<!\\)`", line) is None, line


def test_markdown_text_helpers() -> None:
    assert md_code("a`b<c>") == "<code>a\\`b&lt;c&gt;</code>"
    assert md_text("x|y\nz") == "x\\|y z"
    assert md_text("- item") == "\\- item"
    assert md_text("1. first") == "1\\. first"
    assert md_text("-0.25") == "-0.25" and md_text("-") == "-"


# -------------------------------------------------------------------- other records, files


def test_records_without_a_comparison_render(record: EvalRecord) -> None:
    e = record.evaluation
    single = replace(e, comparisons=(), merge_checks=(), warnings=())
    identical = replace(
        e,
        comparisons=(),
        items=(),
        summaries={},
        forced_summaries={},
        models=e.models[:2],
        identical_files={"merged": True},
        merge_checks=(),
    )
    for evaluation in (single, identical):
        rec = replace(record, evaluation=evaluation, checks=evaluate_checks(evaluation))
        page = render_html(rec)
        assert 'class="forest"' not in page
        assert render_markdown(rec)
    assert "merged vs base -- IDENTICAL" in render_html(
        replace(record, evaluation=identical, checks=evaluate_checks(identical))
    )


def test_write_reports_writes_every_view_and_refuses_to_clobber(
    tmp_path, record: EvalRecord
) -> None:
    run_dir = write_reports(record, tmp_path)
    assert run_dir == tmp_path / record.run_id
    views = render_all(record)
    assert set(views) == set(REPORT_FILES)  # one candidate: no learning curve, no curve.csv
    for name in REPORT_FILES:
        assert (run_dir / name).read_text(encoding="utf-8") == views[name]
    assert not (run_dir / CURVE_FILE).exists()
    assert (tmp_path / "latest" / "report.html").exists()
    with pytest.raises(OutputExistsError):
        write_reports(record, tmp_path)


# ---------------------------------------------------------------------- one candidate (N = 1)


def test_one_candidate_reads_as_the_two_model_run(record: EvalRecord) -> None:
    """N = 1 says base and merged exactly as before: no candidate prefix, no pytest ids."""
    text = render_terminal(record)
    c = record.evaluation.comparison
    assert c is not None and c.names == ("base", "merged")
    lines = text.splitlines()
    assert lines[1] == f"verdict: {c.verdict.word} -- {c.headline}"
    assert lines[2].startswith("likelihood: answer NLL base 0.620 -> merged 0.220 nats/token")
    assert re.search(r"^metric +base +merged +delta +95% CI$", text, re.MULTILINE)
    assert "(only base right or only merged right)" in text
    assert "merge check: the merged file answers exactly like base + adapter.gguf on 8 of 8" in text
    assert re.search(r"^test_merged_model_differs_from_base +PASSED", text, re.MULTILINE)
    assert "[merged]" not in text
    md = render_markdown(record)
    assert md.startswith(f"## simonsca: merged vs base -- {c.verdict.word}\n")
    assert "### Merged - base (paired)" in md and "### By family (teacher-forced cell" in md
    assert "Learning curve" not in text + md + render_html(record)
    assert learning_curve(record.evaluation) is None


# ------------------------------------------------------------- checkpoints: the learning curve


@pytest.fixture(scope="module")
def series() -> EvalRecord:
    return build_series()


def _item_mean(e: Evaluation, label: str, metric: str) -> float:
    return float(np.mean([getattr(s, metric) for s in e.forced_scores(label)]))


def test_curve_points_deltas_and_best(series: EvalRecord) -> None:
    e = series.evaluation
    curve = learning_curve(e)
    assert curve is not None
    assert [(p.step, p.name, p.role) for p in curve.points] == [
        (0, "base", "reference"),
        (10, "checkpoint-10", "candidate"),
        (20, "checkpoint-20", "candidate"),
        (30, "checkpoint-30", "candidate"),
    ]
    assert curve.metrics == ("forced_cell_accuracy", "nll", "cell_accuracy", "parse_ok")
    assert curve.primary == "forced_cell_accuracy"
    for p in curve.points:  # the record's own summaries, CIs included
        assert (
            p.values["forced_cell_accuracy"]
            == e.forced_summaries[p.name].metrics["forced_cell_accuracy"]
        )
        assert p.values["parse_ok"] == e.summaries[p.name].metrics["parse_ok"]
    acc = {p.name: _item_mean(e, p.name, "forced_cell_accuracy") for p in curve.points}
    assert acc["checkpoint-10"] == acc["checkpoint-20"] > acc["base"] == acc["checkpoint-30"]
    # neighbour deltas: paired on the same items, classified by their CI
    assert [(d.previous, d.name, d.trend) for d in curve.deltas] == [
        ("base", "checkpoint-10", STILL_LEARNING),
        ("checkpoint-10", "checkpoint-20", PLATEAU),
        ("checkpoint-20", "checkpoint-30", GETTING_WORSE),
    ]
    names = [p.name for p in curve.points]
    for d in curve.deltas:
        assert d.diff == pytest.approx(acc[d.name] - acc[d.previous])
        assert d.low <= d.diff <= d.high and d.n == N_FORCED
        assert curve.delta_to(d.name) is d
    assert curve.delta_to(names[0]) is None
    assert curve.deltas[0].low > 0 and curve.deltas[2].high < 0
    assert curve.deltas[1].low <= 0 <= curve.deltas[1].high
    # the best: the highest value, the earliest step on a tie -- and said to be unconfirmed
    assert curve.best is not None
    assert (curve.best.name, curve.best.step) == ("checkpoint-10", 10)
    assert curve.best.caveat == UNCONFIRMED and curve.best.confirmed is None
    # the trivial baselines' bars: their greedy cell accuracy on the same (teacher-forced) items
    tf = {b.name: b.value for b in curve.levels("forced_cell_accuracy")}
    assert "oracle" not in tf and len(tf) == 3
    for name, value in tf.items():
        scores = [i.answers[name].score.cell_accuracy for i in e.items]
        assert value == pytest.approx(float(np.mean(scores)))
    c = e.comparison_of("checkpoint-10")
    assert c is not None and c.baseline is not None
    assert tf == pytest.approx(dict(c.baseline.baselines))  # the verdict's own bar
    assert not curve.levels("nll")


def test_curve_needs_two_checkpoints_and_skips_a_stored_reference(series: EvalRecord) -> None:
    e = series.evaluation
    one = replace(e, candidates=(e.candidates[0], *(Candidate(c.name) for c in e.candidates[1:])))
    assert learning_curve(one) is None
    stored = replace(e, settings=replace(e.settings, compare_to="reports/earlier"))
    curve = learning_curve(stored)
    assert curve is not None
    assert [p.name for p in curve.points] == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    assert [d.name for d in curve.deltas] == ["checkpoint-20", "checkpoint-30"]
    # a checkpoint that was not run (byte-identical to the base) is no point of the curve
    unrun = replace(
        e,
        summaries={k: v for k, v in e.summaries.items() if k != "checkpoint-20"},
        forced_summaries={k: v for k, v in e.forced_summaries.items() if k != "checkpoint-20"},
    )
    curve = learning_curve(unrun)
    assert curve is not None
    assert [p.name for p in curve.points] == ["base", "checkpoint-10", "checkpoint-30"]
    assert [d.previous for d in curve.deltas] == ["base", "checkpoint-10"]
    # without teacher forcing the curve reads greedy cell accuracy
    greedy = replace(e, forced_summaries={}, items=tuple(replace(i, forced={}) for i in e.items))
    curve = learning_curve(greedy)
    assert curve is not None and curve.primary == "cell_accuracy"
    assert curve.metrics == ("cell_accuracy", "parse_ok")


def test_curve_csv(series: EvalRecord, tmp_path) -> None:
    curve = learning_curve(series.evaluation)
    assert curve is not None
    run_dir = write_reports(series, tmp_path)
    text = (run_dir / CURVE_FILE).read_text(encoding="utf-8")
    assert text == curve_csv(curve) == render_all(series)[CURVE_FILE]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    points = [r for r in rows if r["step"]]
    assert len(points) == 4 * len(curve.metrics)
    primary = [r for r in points if r["metric"] == "forced_cell_accuracy"]
    assert [(r["step"], r["name"], r["trend"]) for r in primary] == [
        ("0", "base", ""),
        ("10", "checkpoint-10", STILL_LEARNING),
        ("20", "checkpoint-20", PLATEAU),
        ("30", "checkpoint-30", GETTING_WORSE),
    ]
    for r, p in zip(primary, curve.points):
        e = p.values["forced_cell_accuracy"]
        assert float(r["value"]) == pytest.approx(e.value, abs=1e-6)
        assert float(r["low"]) == pytest.approx(e.low, abs=1e-6)
        assert float(r["high"]) == pytest.approx(e.high, abs=1e-6)
    for r, d in zip(primary[1:], curve.deltas):
        assert float(r["delta_vs_previous"]) == pytest.approx(d.diff, abs=1e-6)
        assert float(r["delta_low"]) == pytest.approx(d.low, abs=1e-6)
        assert float(r["delta_high"]) == pytest.approx(d.high, abs=1e-6)
    assert all(r["trend"] == "" for r in points if r["metric"] != "forced_cell_accuracy")
    bars = [r for r in rows if not r["step"]]
    assert len(bars) == len(curve.baselines) and {r["metric"] for r in bars} == {
        "forced_cell_accuracy",
        "cell_accuracy",
        "parse_ok",
    }


def test_terminal_and_markdown_for_three_checkpoints(series: EvalRecord) -> None:
    e = series.evaluation
    text = render_terminal(series)
    md = render_markdown(series)
    for cand in e.candidates:
        c = e.comparison_of(cand.name)
        assert c is not None
        line = f"verdict {cand.name}: {c.verdict.word} -- {c.headline}"
        assert line in text.splitlines()
        assert f"**{md_text(line)}**" in md
        assert f"answer NLL base 0.620 -> {cand.name} " in text
        assert re.search(rf"^metric +base +{cand.name} +delta +95% CI$", text, re.MULTILINE)
        assert f"### {md_text(cand.name.capitalize())} - base (paired)" in md
        assert f"test_finetune_has_a_significant_effect[{cand.name}]" in text
    words = [e.comparison_of(c.name).verdict.word for c in e.candidates]  # type: ignore[union-attr]
    assert md.startswith("## simonsca: 3 candidates vs base -- ")
    assert all(w in md.splitlines()[0] for w in words)
    # the curve table: a row per point, the change from the previous one and its trend
    table = text[text.index("step  name") :].splitlines()
    assert re.match(r"^0 +base +\d", table[2])
    assert re.match(
        r"^10 +checkpoint-10 \(best\) .* \+\d+\.\d pp \(.*\) +still learning$", table[3]
    )
    assert re.match(r"^20 +checkpoint-20 .* plateau$", table[4])
    assert re.match(r"^30 +checkpoint-30 .* getting worse$", table[5])
    assert re.match(r"^- +most-common-count \(baseline\) +60\.0%", table[8])
    best = (
        "best checkpoint: checkpoint-10 (step 10), teacher-forced cell accuracy 80.5% (95% CI "
        "80.2% to 80.9%) -- best on these items; unconfirmed on fresh held-out seeds"
    )
    assert best in text
    assert "### Learning curve" in md and md_text(best) in md
    assert f"| 20 | checkpoint-20 | {md_text('80.5% (80-81)')} |" in md
    assert "| step | name | TF cell acc. | NLL | cell acc. | parse |" in md


def test_page_for_three_checkpoints_draws_the_curve(series: EvalRecord) -> None:
    page = render_html(series)
    text = text_of(page)
    curve = learning_curve(series.evaluation)
    assert curve is not None
    plots = svg_elements(page, "curve")
    assert [p.get("data-metric") for p in plots] == list(curve.metrics)
    for svg in plots:
        points = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "curve-point"]
        assert [g.get("data-step") for g in points] == ["0", "10", "20", "30"]
        bars = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "baseline"]
        metric = svg.get("data-metric")
        assert bool(bars) == (metric != "nll")
        for g in bars:
            line = g.find(f"{SVG}line")
            assert line is not None and line.get("stroke-dasharray")
    boxed = [r for svg in plots for r in svg.iter(f"{SVG}rect") if r.get("class") == "best"]
    assert len(boxed) == 1  # the best checkpoint, on the primary metric's plot
    assert len(svg_elements(page, "forest")) == 3  # one forest plot per candidate
    assert 'href="#curve"' in page and 'href="#deltas-3">deltas (checkpoint-30)' in page
    assert "unconfirmed on fresh held-out seeds" in text
    for c in series.checks:
        assert f'data-check="{c.name}" data-candidate="{c.candidate}"' in page
    assert "a candidate and base differ" in page


def test_several_candidates_name_themselves_everywhere(series: EvalRecord) -> None:
    """An identical candidate, a second prompt mode and merge checks, each said per candidate."""
    e = series.evaluation
    chat = tuple(replace(p, prompt_mode="chat") for p in e.comparisons)
    evaluation = replace(
        e,
        settings=replace(e.settings, prompt_mode="both"),
        comparisons=e.comparisons + chat,
        identical_files={"checkpoint-20": True},
        merge_checks=(
            MergeCheck("checkpoint-10", "a10.gguf", 8, 8),
            MergeCheck("checkpoint-30", "a30.gguf", 7, 8),
        ),
    )
    assert evaluation.primary_mode == "raw"
    rec = replace(series, evaluation=evaluation)
    text = render_terminal(rec)
    assert (
        "verdict checkpoint-20: IDENTICAL -- identical: the checkpoint-20 model files are "
        "byte-identical to the base (nothing was run; the finetune changed nothing)"
    ) in text
    for p in chat:
        c = p.comparison
        assert f"chat prompts, {p.candidate}: {c.verdict.word} -- {c.headline}" in text
    assert (
        "merge check: the checkpoint-10 file answers exactly like base + a10.gguf on 8 of 8" in text
    )
    assert (
        "merge check: the checkpoint-30 file answers exactly like base + a30.gguf on 7 of 8" in text
    )
    md = render_markdown(rec)
    assert "1 IDENTICAL" in md.splitlines()[0]
    assert (
        md_text(
            "Nothing was run for checkpoint-20: its model files are byte-identical to base's, so "
            "every answer would be."
        )
        in md
    )
    page = render_html(rec)
    assert len(svg_elements(page, "forest")) == 6  # three candidates, two prompt modes
    assert 'href="#deltas-2">deltas (checkpoint-10, chat)' in page
    assert '<h2 id="merge">Merge checks</h2>' in page
    headings = re.findall(r'<h2 id="deltas-\d+">(.*?)</h2>', page)
    assert headings[:2] == [
        "Checkpoint-10 \u2212 base (paired, raw prompts)",
        "Checkpoint-10 \u2212 base (paired, chat prompts)",
    ]


def test_candidates_with_no_step_make_a_curve_in_the_order_given(series: EvalRecord) -> None:
    """``simonsca compare base v1 v2 v3``: versions, not checkpoints -- the curve follows the
    order they were given in, and says so."""
    e = series.evaluation
    versions = replace(e, candidates=tuple(Candidate(c.name) for c in e.candidates))
    curve = learning_curve(versions)
    assert curve is not None and curve.axis == "order"
    assert [(p.step, p.name) for p in curve.points] == [
        (0, "base"),
        (1, "checkpoint-10"),
        (2, "checkpoint-20"),
        (3, "checkpoint-30"),
    ]
    assert curve.axis_title == "candidate, in the order given"
    text = render_terminal(replace(series, evaluation=replace(versions, curve=curve)))
    assert "best candidate: " in text and "best checkpoint" not in text


def test_check_outcomes_carry_the_numbers_their_message_states() -> None:
    """report.json's checks hold the numbers as fields too: tools need not parse sentences."""
    strict = build_record(min_cell_gain=0.9, require_skill=True)
    c = strict.evaluation.comparison
    assert c is not None
    d = c.delta("cell_accuracy")
    assert d is not None
    gain = strict.check("cell_gain")
    assert gain.detail == {
        "metric": "cell_accuracy",
        "diff": d.diff,
        "low": d.low,
        "high": d.high,
        "n": d.n,
        "threshold": 0.9,
    }
    assert strict.check("significant_effect").detail["verdict"] == c.verdict.value
    skill = strict.check("beats_trivial_baselines").detail
    assert c.baseline is not None and skill["baseline"] == c.baseline.best_value
    data = json.loads(to_json(strict))
    assert next(x for x in data["checks"] if x["name"] == "cell_gain")["detail"]["threshold"] == 0.9


def test_a_candidate_judged_at_a_corrected_level_says_that_level(series: EvalRecord) -> None:
    """Under Holm a candidate's intervals are computed at its own level: no line may call them
    95% CIs."""
    e = series.evaluation
    items = e.items
    answered = [i for i in items if "base" in i.answers]
    name = "checkpoint-20"
    bars = [m.label for m in e.models if m.role == "baseline"]
    c = compare_runs(
        base=[i.answers["base"].score for i in answered],
        merged=[i.answers[name].score for i in answered],
        base_texts=[i.answers["base"].text for i in answered],
        merged_texts=[i.answers[name].text for i in answered],
        baselines={b: [i.answers[b].score for i in items] for b in bars},
        base_forced=[i.forced["base"] for i in items if i.forced],
        merged_forced=[i.forced[name] for i in items if i.forced],
        names=("base", name),
        alpha=0.05 / 4,
    )
    pairings = tuple(replace(p, comparison=c) if p.candidate == name else p for p in e.comparisons)
    record = replace(series, evaluation=replace(e, comparisons=pairings))
    text = render_terminal(record)
    lines = [x for x in text.splitlines() if name in x and "CI" in x]
    assert lines and all("98.75% CI" in x and "95% CI" not in x for x in lines if "verdict" in x)
    assert c.baseline is not None and "98.75% CI" in c.baseline.sentence(name)
    assert "98.75% CI" in render_markdown(record)


def test_several_candidates_share_one_noise_floor_line(series: EvalRecord) -> None:
    """The floor is the reference's: said once, not once per candidate."""
    from simonsca.report.tables import likelihood_lines

    lines = likelihood_lines(series.evaluation)
    assert [x for x in lines if "noise floor" in x] == [lines[-1]]
    assert len(lines) == len(series.evaluation.candidates) + 1

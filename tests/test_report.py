"""Reports: the views of one record (HTML page, Markdown summary), escaping, files.

The record is built here the way the suite builds it -- real held-out items, hand-written answer
texts scored by the real parser and scorer, real teacher-forced scores, the real baselines,
comparison and checks -- so the views are tested on what they will really be shown.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest

from simonsca import codec
from simonsca.checks import Status, evaluate_checks
from simonsca.compare import compare_runs
from simonsca.dataset import eval_items
from simonsca.errors import OutputExistsError
from simonsca.forensics.findings import Finding, Severity
from simonsca.likelihood import forced_score
from simonsca.metrics import FORCED_METRICS, GENERATION_METRICS
from simonsca.models.base import AnswerLikelihood, ModelInfo
from simonsca.record import (
    SCHEMA,
    AnswerRecord,
    Environment,
    EvalRecord,
    Evaluation,
    MergeCheck,
    ModelEntry,
    answer_record,
    from_json,
    item_record,
    to_json,
)
from simonsca.report import REPORT_FILES, render_all, write_reports
from simonsca.report.html import environment, render_html
from simonsca.report.markdown import SCORING_DEFINITIONS, md_code, md_text, render_markdown
from simonsca.report.svg import forest_panels, forest_svg, grid_svg, nice_ticks
from simonsca.settings import Settings
from simonsca.suite import run_baselines
from simonsca.summary import summarize
from simonsca.tasks import Item, Task

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


def _likelihood(item: Item, logprob: float, every: int) -> AnswerLikelihood:
    """One token per byte of the expected answer; every ``every``-th not the top choice."""
    n = len(item.output.encode("utf-8"))
    return AnswerLikelihood(
        token_ends=tuple(range(1, n + 1)),
        logprobs=tuple(logprob - 0.01 * (k % 5) for k in range(n)),
        margins=tuple(0.0 if k % every else 0.5 for k in range(n)),
        stop_logprob=-0.1,
        stop_greedy=True,
    )


def _answer(item: Item, text: str) -> AnswerRecord:
    return answer_record(item, text, n_tokens=len(text), finish_reason="stop", cached=False)


def _model(label: str, path: str, origin: str = "given") -> ModelEntry:
    info = ModelInfo(name=label, path=path, sha256=hashlib.sha256(label.encode()).hexdigest())
    return ModelEntry(
        label=label,
        side=label,
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


def build_record(**settings: object) -> EvalRecord:
    """A small, real record: 12 held-out items, 8 of them answered greedily."""
    items = eval_items(N_FORCED)
    texts = answer_texts(items)
    baselines = {
        (HOSTILE_BASELINE if name == "copy-input" else name): run
        for name, run in run_baselines(items).items()
    }
    forced = {"base": (-0.6, 3), "merged": (-0.2, 7)}
    records = []
    for k, item in enumerate(items):
        answers = {}
        if k < N_GENERATED:
            answers = {label: _answer(item, texts[label][k]) for label in ("base", "merged")}
        for label, run in baselines.items():
            answers[label] = _answer(item, run.predictions[k].text)
        scores = {
            label: forced_score(item, _likelihood(item, lp, every))
            for label, (lp, every) in forced.items()
        }
        records.append(item_record(item, answers, scores))
    answered = records[:N_GENERATED]
    labels = ["base", "merged", *baselines]

    def gen(label: str) -> list:
        return [r.answers[label].score for r in records if label in r.answers]

    comparison = compare_runs(
        base=gen("base"),
        merged=gen("merged"),
        base_texts=[r.answers["base"].text for r in answered],
        merged_texts=[r.answers["merged"].text for r in answered],
        baselines={b: gen(b) for b in baselines},
        base_forced=[r.forced["base"] for r in records],
        merged_forced=[r.forced["merged"] for r in records],
    )
    models = (
        _model("base", "/models/base.gguf"),
        _model("merged", HOSTILE_FILE, origin=f"made by {HOSTILE}"),
        *(
            ModelEntry(
                label=b,
                side="baseline",
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
        compared=f"base=base.gguf vs merged={HOSTILE_FILE}; {N_GENERATED} generated and "
        f"{N_FORCED} teacher-forced v5-small items from seed 1000000",
        items=tuple(records),
        models=models,
        summaries={label: summarize(gen(label), GENERATION_METRICS) for label in labels},
        forced_summaries={
            label: summarize([r.forced[label] for r in records], FORCED_METRICS) for label in forced
        },
        comparisons={"raw": comparison},
        merge_check=MergeCheck(adapter="adapter.gguf", identical=8, n=8),
        findings=(
            Finding("update-below-resolution", Severity.INFO, f"a finding {HOSTILE}", "detail"),
        ),
        warnings=(f"merged: the server said {HOSTILE}",),
    )
    return EvalRecord(
        schema=SCHEMA,
        run_id="20261128-210000-abc123",
        created="2026-11-28T21:00:00Z",
        environment=Environment("3.11.9", "2.1.0", None, "0.1.0", "Linux-test", "x86_64"),
        evaluation=evaluation,
        checks=evaluate_checks(evaluation),
    )


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
    single = replace(e, comparisons={}, merge_check=None, warnings=())
    identical = replace(
        e,
        comparisons={},
        items=(),
        summaries={},
        forced_summaries={},
        models=e.models[:2],
        files_identical=True,
        merge_check=None,
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
    for name in REPORT_FILES:
        assert (run_dir / name).read_text(encoding="utf-8") == views[name]
    assert (tmp_path / "latest" / "report.html").exists()
    with pytest.raises(OutputExistsError):
        write_reports(record, tmp_path)

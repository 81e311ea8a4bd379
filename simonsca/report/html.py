"""``report.html``: one self-contained page drawn from ``templates/report.html.j2``.

This module turns the record into plain view data (rows of text, item pictures); the template
lays it out. Jinja2 escapes every value (``autoescape=True``); the only markup passed in as safe
is the SVG from :mod:`simonsca.report.svg`, which escapes each text it is built from. The page
loads nothing (a Content-Security-Policy forbids any fetch), and only its own script -- named by
hash -- may run, so an answer text that slipped through unescaped still could not execute.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from simonsca.metrics import FORCED_METRICS, METRICS
from simonsca.outcome import CheckOutcome
from simonsca.record import AnswerRecord, EvalRecord, Evaluation, ItemRecord, ModelEntry, Pairing
from simonsca.report.curve_views import curve_notes, curve_rows, curve_svgs
from simonsca.report.svg import Grid, forest_panels, forest_svg, grid_svg
from simonsca.report.tables import (
    SCORING_DEFINITIONS,
    Table,
    check_name,
    curve_of,
    delta_rows,
    exact_test_line,
    family_rows,
    gate_line,
    identical_sentence,
    likelihood_lines,
    merge_check_line,
    model_rows,
    several,
    verdict_lines,
    verdict_title,
)
from simonsca.stats import ci_label
from simonsca.summary import FACETS, facet_sort_key

#: An unparsed answer longer than this is cut in the page (report.json keeps it whole).
MAX_ANSWER_CHARS = 2000


@dataclass(frozen=True)
class AnswerView:
    """One greedy answer to one item, as the page shows it."""

    label: str
    baseline: bool
    exact: bool
    picture: Markup | None  # None: the answer did not parse; ``text`` is shown instead
    text: str
    cells: str  # cell accuracy, "26.7%"
    caption: str  # "cells 26.7%, live F1 0.40"
    reason: str
    finish_reason: str
    prompt: str | None


@dataclass(frozen=True)
class ForcedView:
    """One model's teacher-forced numbers on one item."""

    label: str
    cells: tuple[str, ...]  # in FORCED_METRICS order


@dataclass(frozen=True)
class ItemView:
    seed: int
    family: str
    facets: str  # JSON object, for the filters
    wrong: bool  # a model's greedy answer is not exact
    differs: bool  # base and merged wrote different answers
    answered: bool  # any model wrote a greedy answer
    input_picture: Markup
    expected_picture: Markup
    answers: tuple[AnswerView, ...]
    baselines: tuple[AnswerView, ...]
    baseline_summary: str  # "all-dead 40.0%, copy-input 34.5%": their cell accuracy
    forced: tuple[ForcedView, ...]
    prompt: str


@dataclass(frozen=True)
class ModeView:
    """A candidate against the reference in one prompt mode: deltas, forest plot, families, the
    baseline bar."""

    mode: str
    candidate: str
    shown_candidate: str  # the candidate, when the run has several ("" otherwise)
    nav: str  # the link to it: "deltas", "deltas (chat)", "deltas (checkpoint-20)"
    pair: str  # "merged minus base"
    ci: str  # "95% CI", or the candidate's level after --correction
    heading: str
    verdict: str | None  # the verdict line of a mode other than the primary one
    deltas: Table
    tests: tuple[str, ...]
    forest: Markup
    families: Table
    family_limit: str
    baseline: str | None


# ------------------------------------------------------------------------------------ items


def _truncate(text: str, limit: int = MAX_ANSWER_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _answer_view(
    label: str, answer: AnswerRecord, expected: Grid, counts: bool, baseline: bool
) -> AnswerView:
    score = answer.score
    cells = METRICS["cell_accuracy"].value_text(score.cell_accuracy)
    picture = None
    caption = ""
    if answer.value is not None:
        drawn = grid_svg(answer.value, expected, counts=counts, label=f"{label} answer")
        picture = drawn.svg
        caption = f"cells {cells}"
        if score.live_f1 is not None:
            caption += f", live F1 {score.live_f1:.2f}"
    return AnswerView(
        label=label,
        baseline=baseline,
        exact=score.exact,
        picture=picture,
        text=_truncate(answer.text),
        cells=cells,
        caption=caption,
        reason=score.reason or ("" if score.parse_ok else "unparsable"),
        finish_reason=answer.finish_reason,
        prompt=answer.prompt,
    )


def _forced_cell(name: str, value: float | bool | None) -> str:
    """One item's value: a rate is yes or no here (a share only over many items)."""
    spec = METRICS[name]
    if spec.aggregate == "rate" and value is not None:
        return "yes" if value else "no"
    return spec.value_text(None if value is None else float(value))


def _forced_views(item: ItemRecord, labels: Sequence[str]) -> tuple[ForcedView, ...]:
    out = []
    for label in labels:
        score = item.forced.get(label)
        if score is None:
            continue
        cells = tuple(_forced_cell(name, getattr(score, name)) for name in FORCED_METRICS)
        out.append(ForcedView(label, cells))
    return tuple(out)


def _pairs(models: Sequence[ModelEntry]) -> list[tuple[str, str]]:
    """(reference label, candidate label) for each candidate and prompt mode in which both
    ran."""
    out = []
    for ref in models:
        if ref.role != "reference":
            continue
        for cand in models:
            if cand.role == "candidate" and cand.prompt_mode == ref.prompt_mode:
                out.append((ref.label, cand.label))
    return out


def _item_view(item: ItemRecord, e: Evaluation) -> ItemView:
    counts = item.task == "count"
    expected = item.expected_value
    models = [m.label for m in e.models if m.kind == "model"]
    answers = tuple(
        _answer_view(label, item.answers[label], expected, counts, False)
        for label in models
        if label in item.answers
    )
    baselines = tuple(
        _answer_view(m.label, item.answers[m.label], expected, counts, True)
        for m in e.models
        if m.kind == "baseline" and m.label in item.answers
    )
    differs = any(
        b in item.answers and m in item.answers and item.answers[b].text != item.answers[m].text
        for b, m in _pairs(e.models)
    )
    return ItemView(
        seed=item.seed,
        family=item.family,
        facets=json.dumps(dict(item.facets), sort_keys=True),
        wrong=any(not a.exact for a in answers),
        differs=differs,
        answered=bool(answers),
        input_picture=grid_svg(item.input_grid, counts=False, label="input").svg,
        expected_picture=grid_svg(expected, counts=counts, label="expected").svg,
        answers=answers,
        baselines=baselines,
        baseline_summary=", ".join(f"{b.label} {b.cells}" for b in baselines),
        forced=_forced_views(item, models),
        prompt=item.prompt,
    )


def facet_values(items: Sequence[ItemRecord]) -> dict[str, list[str]]:
    """facet -> its values present in the items, facets in display order, values sorted."""
    values: dict[str, set[str]] = {}
    for item in items:
        for facet, value in item.facets.items():
            values.setdefault(facet, set()).add(str(value))
    order = [f for f in FACETS if f in values] + sorted(f for f in values if f not in FACETS)
    return {f: sorted(values[f], key=facet_sort_key) for f in order}


# ------------------------------------------------------------------------------- comparisons


def _mode_view(p: Pairing, e: Evaluation, several_modes: bool) -> ModeView:
    c = p.comparison
    mode = p.prompt_mode
    reference, candidate = c.names
    limit = e.settings.max_family_regression
    primary = c.primary
    spec = METRICS[primary.families[0].metric] if primary and primary.families else None
    suffix = f", {mode} prompts" if several_modes else ""
    heading = f"{candidate[:1].upper()}{candidate[1:]} \u2212 {reference} (paired{suffix})"
    other = mode != e.primary_mode
    nav = [candidate] if several(e) else []
    nav += [mode] if several_modes else []
    return ModeView(
        mode=mode,
        candidate=candidate,
        shown_candidate=candidate if several(e) else "",
        nav=f"deltas ({', '.join(nav)})" if nav else "deltas",
        pair=f"{candidate} minus {reference}",
        ci=ci_label(c.alpha),
        heading=heading,
        verdict=f"{mode} prompts: {c.verdict.word} -- {c.headline}" if other else None,
        deltas=delta_rows(c),
        tests=tuple(exact_test_line(m, c.names) for m in (c.generation, c.forced) if m is not None),
        forest=forest_svg(
            forest_panels(c, limit),
            title=f"paired deltas, {candidate} minus {reference}{suffix}",
            names=c.names,
        ),
        families=(
            family_rows(primary, limit, c.names, c.alpha) if primary is not None else ([], [])
        ),
        family_limit=spec.delta_text(-limit) if spec is not None else "",
        baseline=_sentence(c.baseline.sentence(candidate)) if c.baseline is not None else None,
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


# ------------------------------------------------------------------------------------ checks


def check_table(checks: Sequence[CheckOutcome]) -> list[dict[str, str]]:
    """Every check's outcome as the page shows it (``test``: its pytest id when there are
    several candidates; ``candidate``: empty when there is one)."""
    named = len({c.candidate for c in checks}) > 1
    return [
        {
            "name": c.name,
            "candidate": (c.candidate or "") if named else "",
            "test": check_name(c, checks),
            "status": c.status.value,
            "outcome": c.status.value.upper(),
            "message": c.message,
            "settings": ", ".join(f"{k}={v}" for k, v in c.settings),
        }
        for c in checks
    ]


# -------------------------------------------------------------------------------- the page


def _model_files(e: Evaluation) -> list[dict[str, str]]:
    out = []
    for m in e.models:
        if m.kind != "model":
            continue
        info = m.info
        out.append(
            {
                "label": m.label,
                "origin": m.origin,
                "path": str(info.path or info.name),
                "sha256": (info.sha256 or "")[:12] or "-",
                "adapter": info.adapter_path or "",
                "adapter_sha256": (info.adapter_sha256 or "")[:12] or "-",
            }
        )
    return out


def page_context(record: EvalRecord) -> dict[str, object]:
    """Everything the template shows, as plain values (texts, tables, pictures)."""
    e = record.evaluation
    env = record.environment
    several_modes = len({p.prompt_mode for p in e.comparisons}) > 1
    likelihood = likelihood_lines(e)
    curve = curve_of(e)
    return {
        "title": verdict_title(record),
        "verdicts": verdict_lines(record),
        # one paragraph (one candidate, or one model per prompt mode); one per candidate
        "likelihood": likelihood if several(e) else [" ".join(likelihood)] if likelihood else [],
        "run_id": record.run_id,
        "created": record.created,
        "compared": e.compared,
        "gate": gate_line(record.checks),
        "gate_failed": not record.passed,
        "models": model_rows(e),
        "model_files": _model_files(e),
        "identical": [
            identical_sentence(e, c.name) for c in e.candidates if e.files_identical(c.name)
        ],
        "modes": [_mode_view(p, e, several_modes) for p in _in_order(e)],
        "curve": (
            {
                "plots": curve_svgs(curve),
                "table": curve_rows(curve),
                "notes": curve_notes(curve),
            }
            if curve is not None
            else None
        ),
        "checks": check_table(record.checks),
        "findings": e.findings,
        "merge_checks": [merge_check_line(m, e.reference) for m in e.merge_checks],
        "notes": e.warnings,
        "environment": [
            ("python", env.python),
            ("numpy", env.numpy or "-"),
            ("llama-cpp-python", env.llama_cpp_python or "-"),
            ("simonsca", env.simonsca or "-"),
            ("platform", env.platform),
            ("machine", env.machine),
        ],
        "definitions": SCORING_DEFINITIONS,
        "forced_header": [METRICS[m].column for m in FORCED_METRICS],
        "facets": facet_values(e.items),
        "differs_label": (
            f"a candidate and {e.reference or 'base'} differ"
            if several(e) or not e.candidates
            else f"{e.reference or 'base'} and {e.candidates[0].name} differ"
        ),
        "items": [_item_view(item, e) for item in e.items],
    }


def _in_order(e: Evaluation) -> list[Pairing]:
    """The comparisons by candidate (the run's order), each candidate's prompt modes in the
    run's order."""
    modes = list(e.settings.prompt_modes)
    rank = {c.name: k for k, c in enumerate(e.candidates)}

    def key(p: Pairing) -> tuple[int, int]:
        mode = modes.index(p.prompt_mode) if p.prompt_mode in modes else len(modes)
        return rank.get(p.candidate, len(rank)), mode

    return sorted(e.comparisons, key=key)


def csp_hash(script: str) -> Markup:
    """The Content-Security-Policy source that allows exactly this inline script."""
    digest = hashlib.sha256(str(script).encode("utf-8")).digest()
    return Markup("'sha256-" + base64.b64encode(digest).decode("ascii") + "'")


@cache
def environment() -> Environment:
    """The Jinja2 environment: templates from the package, everything escaped, and a missing
    value an error rather than an empty string."""
    env = Environment(
        loader=PackageLoader("simonsca.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["csp_hash"] = csp_hash
    return env


def render_html(record: EvalRecord) -> str:
    """The page for ``record`` (byte-identical for the same record)."""
    return environment().get_template("report.html.j2").render(page_context(record))

"""``summary.md``: the Markdown view (fits a GitHub job summary or a PR comment).

Everything that comes from a model or a file name is escaped: table cells (``|``, newlines),
Markdown syntax (backslash escapes), HTML (``<``, ``>``, ``&`` as entities) and code font (a
``<code>`` element around escaped text, never a backtick span a name's own backticks could end),
so no model output or file name can break out of its place.
"""

from __future__ import annotations

import re

from simonsca.metrics import METRICS
from simonsca.record import EvalRecord, Evaluation
from simonsca.report.curve_views import curve_notes, curve_rows
from simonsca.report.tables import (
    SCORING_DEFINITIONS,
    check_rows,
    curve_of,
    delta_rows,
    exact_test_line,
    family_rows,
    gate_line,
    identical_sentence,
    likelihood_lines,
    merge_check_line,
    model_rows,
    primary_comparisons,
    verdict_lines,
    verdict_title,
)
from simonsca.verdict import Comparison

_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x85\x0b\x0c]")


def md_text(text: str) -> str:
    """Plain text safe in Markdown: HTML and Markdown syntax characters escaped, one line."""
    text = _LINE_BREAKS.sub(" ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*_{}\[\]()#+!|~])", r"\\\1", text)
    # At the start of a line, "- x", "==" or "1. x" would become a list item, a heading
    # underline or a numbered list: escape the punctuation.
    text = re.sub(r"^(\s*)([-=])(?=[\s=-])", r"\1\\\2", text)
    return re.sub(r"^(\s*\d+)([.)])(?=\s|$)", r"\1\\\2", text)


def md_code(text: str) -> str:
    """``text`` in code font, escaped like :func:`md_text`.

    A ``<code>`` element rather than a backtick span: a span's fence has to outnumber the text's
    own backticks, and a renderer that miscounts would let the rest out as raw HTML; inside
    ``<code>``, ``<`` is ``&lt;`` and a backtick is ``\\```, whatever the renderer.
    """
    return f"<code>{md_text(text)}</code>"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(record: EvalRecord) -> str:
    e = record.evaluation
    out = [f"## {md_text(verdict_title(record))}", ""]
    for verdict in verdict_lines(record):
        out += [f"**{md_text(verdict)}**", ""]
    out += [line for text in likelihood_lines(e) for line in (md_text(text), "")]
    out += [
        f"Run {md_code(record.run_id)} - {md_text(e.compared)} - {md_text(record.created)}",
        "",
        "### Models and baselines",
        "",
        md_table(*model_rows(e)),
        "",
        (
            "Values with 95% CIs: Wilson score interval for rates (parse, shape, exact, "
            "greedy-consistent exact); percentile bootstrap (2000 resamples, fixed seed) for "
            "means. items/s: generation / teacher-forced, over answers computed in this run."
        ),
        "",
        *(f"- {md_text(sentence)}" for sentence in SCORING_DEFINITIONS),
        "",
    ]
    models = [m for m in e.models if m.kind == "model"]
    if models:
        out += ["<details><summary>model files</summary>", ""]
        for m in models:
            info = m.info
            sha = (info.sha256 or "")[:12] or "-"
            line = f"- **{md_text(m.label)}**: {md_code(str(info.path or info.name))} sha256 {md_code(sha)}"
            if info.adapter_path:
                line += (
                    f" + adapter {md_code(info.adapter_path)} sha256 "
                    f"{md_code((info.adapter_sha256 or '')[:12] or '-')}"
                )
            out.append(line)
        out += ["", "</details>", ""]
    for candidate in e.candidates:
        if e.files_identical(candidate.name):
            out += [md_text(identical_sentence(e, candidate.name)), ""]
    for check in e.merge_checks:
        out += [md_text(merge_check_line(check, e.reference)), ""]
    if e.findings:
        out += ["### Findings: why", ""]
        for f in e.findings:
            line = f"- **{f.severity}** {md_code(f.code)}: {md_text(f.title)}"
            if f.detail:
                line += f" -- {md_text(f.detail)}"
            out.append(line)
        out.append("")
    for _, c in primary_comparisons(e):
        out += _comparison(c, e)
    curve = curve_of(e)
    if curve is not None:
        out += ["### Learning curve", "", md_table(*curve_rows(curve)), ""]
        out += [line for note in curve_notes(curve) for line in (md_text(note), "")]
    if record.checks:
        out += ["### Checks", "", md_text(gate_line(record.checks)), ""]
        out += [md_table(*check_rows(record)), ""]
    if e.warnings:
        out += ["### Notes", ""] + [f"- {md_text(w)}" for w in e.warnings] + [""]
    env = record.environment
    out.append(
        f"<sub>python {md_text(env.python)}, numpy {md_text(str(env.numpy))}, llama-cpp-python "
        f"{md_text(str(env.llama_cpp_python))}, {md_text(env.platform)}</sub>"
    )
    return "\n".join(out) + "\n"


def _comparison(c: Comparison, e: Evaluation) -> list[str]:
    """One candidate against the reference: its deltas, tests, baseline bar and families."""
    out: list[str] = []
    reference, candidate = c.names
    header, rows = delta_rows(c)
    if rows:
        who = candidate[:1].upper() + candidate[1:]
        out += [f"### {md_text(who)} - {md_text(reference)} (paired)", "", md_table(header, rows)]
        out.append("")
        for mode in (c.generation, c.forced):
            if mode is not None:
                out += [md_text(exact_test_line(mode, c.names)) + ".", ""]
    if c.baseline is not None:
        sentence = c.baseline.sentence(candidate)
        out += [md_text(sentence[0].upper() + sentence[1:]) + ".", ""]
    primary = c.primary
    if primary is not None and primary.families:
        limit = e.settings.max_family_regression
        spec = METRICS[primary.families[0].metric]
        who = f"{candidate}, " if len(e.candidates) > 1 else ""
        out += [
            (
                f"### By family ({md_text(who)}{md_text(spec.label)}; (!) = a delta below "
                f"{md_text(spec.delta_text(-limit))})"
            ),
            "",
            md_table(*family_rows(primary, limit, c.names, c.alpha)),
            "",
        ]
    return out

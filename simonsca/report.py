"""Reports: data first (``report.json``), views second (``summary.md``, ``report.html``).

:func:`build_report` turns items, model runs and baseline runs into one JSON-serialisable dict:
every item with its prompt, expected answer and each model's/baseline's answer, parsed value and
:class:`~simonsca.scoring.ItemScore`; the aggregates; the paired comparison; the gate. Every view
(:func:`render_summary_md`, :func:`render_html`, :func:`render_terminal_table`) is drawn from
that dict only, so a saved ``report.json`` can be re-rendered later.

:func:`write_reports` writes ``<reports_dir>/<run-id>/{report.json,summary.md,report.html}``,
each file atomically (temporary file in the same folder, then ``os.replace``), refuses to reuse
an existing run folder, and points ``<reports_dir>/latest`` at the new run (a symlink replaced
atomically; a copy where symlinks are not available).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import html
import json
import math
import os
import platform
import shutil
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from simonsca import codec
from simonsca.atomic import atomic_text_writer
from simonsca.compare import Comparison, Gate, compare_scores
from simonsca.errors import OutputExistsError
from simonsca.scoring import (
    DEFAULT_BOOTSTRAP_SEED,
    DEFAULT_RESAMPLES,
    FACETS,
    ItemScore,
    Summary,
    score_answer,
    summarize,
)
from simonsca.tasks import Item, Task

SCHEMA = "simonsca.report/1"
REPORT_FILES = ("report.json", "summary.md", "report.html")
LATEST = "latest"

_METRIC_LABELS = {
    "parse_ok": "parse",
    "shape_ok": "shape",
    "exact": "exact",
    "cell_accuracy": "cell acc.",
    "live_f1": "live F1",
}
_DELTA_LABELS = {
    "exact": "exact match",
    "cell_accuracy": "cell accuracy",
    "live_f1": "live-cell F1",
    "parse_ok": "parse rate",
    "shape_ok": "shape rate",
}


# --------------------------------------------------------------------------- building the data


def environment() -> dict[str, Any]:
    """Versions that can change results: Python, numpy, llama-cpp-python, simonsca, platform."""

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "llama_cpp_python": version("llama-cpp-python"),
        "simonsca": version("simonsca"),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def make_run_id(
    runs: Mapping[str, Any], items: Sequence[Item], created: datetime | None = None
) -> str:
    """``YYYYmmdd-HHMMSS-<8 hex>``: the UTC time and a hash of the models and the item seeds."""
    created = created or datetime.now(UTC)
    ident = {
        "models": [
            [
                label,
                getattr(run.info, "name", None),
                getattr(run.info, "sha256", None),
                getattr(run.info, "adapter_sha256", None),
                str(run.prompt_mode),
            ]
            for label, run in runs.items()
        ],
        "items": [[item.seed, item.generator, item.family] for item in items],
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:8]
    return f"{created.astimezone(UTC):%Y%m%d-%H%M%S}-{digest}"


def _grid_list(array: np.ndarray | None) -> list[list[int]] | None:
    if array is None:
        return None
    a = np.asarray(array)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        return None
    return a.astype(np.int64).tolist()


def _model_entry(label: str, kind: str, run: Any) -> dict[str, Any]:
    info = run.info
    info_dict = (
        dataclasses.asdict(info)
        if dataclasses.is_dataclass(info) and not isinstance(info, type)
        else {k: getattr(info, k, None) for k in ("name", "path", "sha256")}
    )
    finish: dict[str, int] = {}
    for p in run.predictions:
        finish[str(p.finish_reason)] = finish.get(str(p.finish_reason), 0) + 1
    return {
        "label": label,
        "kind": kind,
        **info_dict,
        "prompt_mode": str(getattr(run.prompt_mode, "value", run.prompt_mode)),
        "seconds": float(run.seconds),
        "items_per_second": None if run.items_per_second is None else float(run.items_per_second),
        "n_predictions": len(run.predictions),
        "n_cached": sum(1 for p in run.predictions if p.cached),
        "finish_reasons": finish,
    }


def build_report(
    items: Sequence[Item],
    runs: Mapping[str, Any],
    *,
    baselines: Mapping[str, Any] | None = None,
    comparison: Comparison | None = None,
    gate: Gate | None = None,
    thresholds: Mapping[str, Any] | None = None,
    base: str = "base",
    merged: str = "merged",
    files_identical: bool = False,
    created: datetime | None = None,
    run_id: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Everything about one evaluation as a JSON-serialisable dict (the ``report.json`` data).

    ``runs`` and ``baselines`` map a label (``"base"``, ``"merged"``, ``"all-dead"``, ...) to a
    :class:`~simonsca.runner.ModelRun` over ``items``. When ``comparison`` is not given and the
    ``base`` and ``merged`` labels are both in ``runs``, it is computed here (with the trivial
    baselines as the bar). ``gate`` failures are recorded under ``"gate"``.
    """
    baselines = dict(baselines or {})
    overlap = set(runs) & set(baselines)
    if overlap:
        raise ValueError(f"labels used for both a model and a baseline: {sorted(overlap)}")
    everyone: dict[str, Any] = {**runs, **baselines}
    created = (created or datetime.now(UTC)).astimezone(UTC)
    run_id = run_id or make_run_id(everyone, items, created)

    by_label: dict[str, dict[int, Any]] = {}
    for label, run in everyone.items():
        preds = {p.seed: p for p in run.predictions}
        missing = [item.seed for item in items if item.seed not in preds]
        if missing:
            raise ValueError(
                f"{label!r} has no answer for {len(missing)} of {len(items)} items "
                f"(e.g. seed {missing[0]}); evaluate every model on the same items"
            )
        by_label[label] = preds

    scores: dict[str, list[ItemScore]] = {label: [] for label in everyone}
    texts: dict[str, list[str]] = {label: [] for label in everyone}
    item_rows: list[dict[str, Any]] = []
    for item in items:
        answers: dict[str, Any] = {}
        for label in everyone:
            pred = by_label[label][item.seed]
            parsed = codec.parse_answer(pred.text, item)
            s = score_answer(item, parsed.value, parsed.reason)
            scores[label].append(s)
            texts[label].append(pred.text)
            answers[label] = {
                "text": pred.text,
                # the prompt as sent, when it is not the item's raw prompt (chat mode)
                "prompt": None if pred.prompt == item.prompt else pred.prompt,
                "n_tokens": int(pred.n_tokens),
                "finish_reason": str(pred.finish_reason),
                "cached": bool(pred.cached),
                "value": _grid_list(parsed.value),
                "notes": list(getattr(parsed, "notes", ()) or ()),
                "score": s.to_dict(),
            }
        item_rows.append(
            {
                "seed": item.seed,
                "generator": item.generator,
                "family": item.family,
                "facets": item.family_facets,
                "task": item.task.value,
                "wrap_x": item.wrap_x,
                "wrap_y": item.wrap_y,
                "generations": item.generations,
                "symbols": dataclasses.asdict(item.symbols),
                "prompt": item.prompt,
                "input_grid": _grid_list(item.grid),
                "expected": item.output,
                "expected_value": _grid_list(item.expected),
                "answers": answers,
            }
        )

    stats = {"resamples": resamples, "seed": bootstrap_seed}
    summaries = {
        label: summarize(s, resamples=resamples, seed=bootstrap_seed).to_dict()
        for label, s in scores.items()
    }

    limits: dict[str, Any] = dict(thresholds or {})
    if gate is not None:
        limits.update({k: v for k, v in gate.to_dict().items()})
    if comparison is None and base in runs and merged in runs:
        max_reg = limits.get("max_family_regression")
        comparison = compare_scores(
            scores[base],
            scores[merged],
            base_texts=texts[base],
            merged_texts=texts[merged],
            files_identical=files_identical,
            baselines={label: scores[label] for label in baselines},
            resamples=resamples,
            seed=bootstrap_seed,
            **({"max_family_regression": float(max_reg)} if max_reg is not None else {}),
        )
    failures = gate.check(comparison) if gate is not None and comparison is not None else []

    report = {
        "schema": SCHEMA,
        "run_id": run_id,
        "created": created.isoformat().replace("+00:00", "Z"),
        "environment": environment(),
        "models": [_model_entry(label, "model", run) for label, run in runs.items()]
        + [_model_entry(label, "baseline", run) for label, run in baselines.items()],
        "base": base if base in runs else None,
        "merged": merged if merged in runs else None,
        "thresholds": limits,
        "statistics": {
            "confidence": 0.95,
            "rates": "Wilson score interval",
            "means": "percentile bootstrap over items",
            **stats,
        },
        "n_items": len(items),
        "items": item_rows,
        "summaries": summaries,
        "comparison": None if comparison is None else comparison.to_dict(),
        "gate": {"checked": gate is not None, "passed": not failures, "failures": failures},
    }
    return _jsonable(report)


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, enums to their value, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``report.json`` (or the run folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    return json.loads(p.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- shared table data


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _metric_cell(m: Mapping[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "-"
    return f"{100 * m['value']:.1f}% ({100 * m['low']:.0f}-{100 * m['high']:.0f})"


def _signed_pp(x: float) -> str:
    return f"{100 * x:+.1f} pp"


def _labels(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(m["label"], m["kind"]) for m in report["models"]]


def model_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the models-and-baselines table (values with 95% CIs)."""
    header = ["", "kind", "mode"] + [_METRIC_LABELS[k] for k in _METRIC_LABELS] + ["items/s"]
    rows = []
    for m in report["models"]:
        metrics = report["summaries"][m["label"]]["metrics"]
        ips = m.get("items_per_second")
        rows.append(
            [m["label"], m["kind"], m.get("prompt_mode") or "-"]
            + [_metric_cell(metrics.get(k)) for k in _METRIC_LABELS]
            + ["-" if m["kind"] == "baseline" else ("cached" if ips is None else f"{ips:.2f}")]
        )
    return header, rows


def delta_rows(comparison: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "base", "merged", "delta", "95% CI"]
    rows = [
        [
            _DELTA_LABELS.get(d["metric"], d["metric"]),
            _pct(d["base"]),
            _pct(d["merged"]),
            _signed_pp(d["diff"]),
            f"{_signed_pp(d['low'])} to {_signed_pp(d['high'])}",
        ]
        for d in comparison["deltas"]
    ]
    return header, rows


def family_rows(comparison: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = [
        "facet",
        "value",
        "n",
        "base cell",
        "merged cell",
        "delta",
        "base exact",
        "merged exact",
    ]
    limit = comparison.get("max_family_regression", 0.0)
    rows = []
    for f in comparison["family_deltas"]:
        flag = " (!)" if f["cell_diff"] < -limit else ""
        rows.append(
            [
                f["facet"],
                f["value"],
                str(f["n"]),
                _pct(f["base_cell"]),
                _pct(f["merged_cell"]),
                _signed_pp(f["cell_diff"]) + flag,
                _pct(f["base_exact"]),
                _pct(f["merged_exact"]),
            ]
        )
    return header, rows


def _mcnemar_line(comparison: Mapping[str, Any]) -> str:
    m = comparison["mcnemar"]
    return (
        f"McNemar exact test on exact match: b={m['b']} only base right, "
        f"c={m['c']} only merged right, p={m['p']:.4g}"
    )


def _regression_lines(comparison: Mapping[str, Any]) -> list[str]:
    return [
        f"{f['facet']}={f['value']} (n={f['n']}): cell accuracy {_pct(f['base_cell'])} -> "
        f"{_pct(f['merged_cell'])} ({_signed_pp(f['cell_diff'])})"
        for f in comparison["family_regressions"]
    ]


def _verdict_title(report: Mapping[str, Any]) -> str:
    comparison = report.get("comparison")
    if not comparison:
        return "simonsca evaluation"
    return f"simonsca: merged vs base -- {comparison['verdict'].upper().replace('_', ' ')}"


# --------------------------------------------------------------------------- markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _merge_check_line(check: Mapping[str, Any]) -> str:
    name = Path(check["adapter"]).name
    return (
        f"merge check: the merged file answers exactly like base + {name} on "
        f"{check['identical']} of {check['n']} items"
    )


def render_summary_md(report: Mapping[str, Any]) -> str:
    """The Markdown summary: fits a GitHub job summary or a PR comment."""
    out = [f"## {_verdict_title(report)}", ""]
    comparison = report.get("comparison")
    if comparison:
        out += [f"**{_md_escape(comparison['headline'])}**", ""]
    out += [
        f"Run `{report['run_id']}` - {report['n_items']} items - {report['created']}",
        "",
        "### Models and baselines",
        "",
        _md_table(*model_rows(report)),
        "",
        (
            "Values with 95% CIs: Wilson score interval for rates (parse, shape, exact); "
            f"percentile bootstrap ({report['statistics']['resamples']} resamples, fixed seed) "
            "for means (cell accuracy, live F1; next-generation items only)."
        ),
        "",
    ]
    models = [m for m in report["models"] if m["kind"] == "model"]
    if models:
        out += ["<details><summary>model files</summary>", ""]
        for m in models:
            sha = (m.get("sha256") or "")[:12] or "-"
            line = f"- **{m['label']}**: `{m.get('name')}` `{m.get('path')}` sha256 `{sha}`"
            if m.get("adapter_path"):
                adapter_sha = (m.get("adapter_sha256") or "")[:12] or "-"
                line += f" + adapter `{m['adapter_path']}` sha256 `{adapter_sha}`"
            out.append(line)
        out += ["", "</details>", ""]
    if comparison and not comparison["deltas"]:
        out += [
            "Nothing was run: the model files are byte-identical, so every answer would be.",
            "",
        ]
    if report.get("merge_check"):
        out += [_merge_check_line(report["merge_check"]), ""]
    if report.get("findings"):
        out += ["### Findings: why", ""]
        out += [
            f"- **{f['severity']}** `{f['code']}`: {_md_escape(f['title'])}"
            + (f" -- {_md_escape(f['detail'])}" if f.get("detail") else "")
            for f in report["findings"]
        ]
        out.append("")
    if comparison and comparison["deltas"]:
        out += [
            "### Merged - base (paired)",
            "",
            _md_table(*delta_rows(comparison)),
            "",
            _mcnemar_line(comparison) + ".",
            "",
        ]
        if comparison.get("baseline"):
            b = comparison["baseline"]
            mc = b["merged_cell_accuracy"]
            word = "beats" if b["beats_baseline"] else "does not beat"
            out += [
                (
                    f"Best trivial baseline: **{b['best']}** at {_pct(b['best_cell_accuracy'])} "
                    f"cell accuracy; merged ({_pct(mc['value'])}, CI up to {_pct(mc['high'])}) "
                    f"{word} it."
                ),
                "",
            ]
        out += ["### By family", "", _md_table(*family_rows(comparison)), ""]
        limit = comparison["max_family_regression"]
        out += [
            f"### Family regressions (cell accuracy down by more than {100 * limit:.1f} pp)",
            "",
        ]
        lines = _regression_lines(comparison)
        out += [f"- {line}" for line in lines] if lines else ["None."]
        out.append("")
    gate = report.get("gate") or {}
    if gate.get("checked") and not (comparison and not comparison["deltas"]):
        out += ["### Gate", ""]
        if gate["failures"]:
            out += [f"- FAILED: {_md_escape(f)}" for f in gate["failures"]]
        else:
            out.append("All thresholds met.")
        out.append("")
        if report.get("thresholds"):
            out += [
                "Thresholds: " + ", ".join(f"`{k}={v}`" for k, v in report["thresholds"].items()),
                "",
            ]
    env = report["environment"]
    out.append(
        f"<sub>python {env['python']}, numpy {env['numpy']}, llama-cpp-python "
        f"{env['llama_cpp_python']}, {env['platform']}</sub>"
    )
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- terminal


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def render_terminal_table(
    report: Mapping[str, Any] | None = None,
    *,
    summaries: Mapping[str, Summary] | None = None,
    comparison: Comparison | None = None,
    gate_failures: Sequence[str] = (),
    baseline_labels: Sequence[str] = (),
) -> str:
    """Plain-text summary for the CLI / pytest terminal: from a report dict, or from objects."""
    if report is None:
        if summaries is None:
            raise ValueError("render_terminal_table needs a report or summaries")
        report = {
            "models": [
                {
                    "label": label,
                    "kind": "baseline" if label in baseline_labels else "model",
                    "prompt_mode": None,
                    "items_per_second": None,
                }
                for label in summaries
            ],
            "summaries": {label: s.to_dict() for label, s in summaries.items()},
            "comparison": None if comparison is None else comparison.to_dict(),
            "gate": {"checked": bool(gate_failures), "failures": list(gate_failures)},
        }
    out = []
    comp = report.get("comparison")
    if comp:
        out += [f"verdict: {comp['verdict'].upper()} -- {comp['headline']}", ""]
    out += [_text_table(*model_rows(report)), ""]
    if comp and comp["deltas"]:
        out += [_text_table(*delta_rows(comp)), _mcnemar_line(comp)]
        regs = _regression_lines(comp)
        if regs:
            out += ["family regressions:"] + [f"  {r}" for r in regs]
        out.append("")
    if report.get("merge_check"):
        out.append(_merge_check_line(report["merge_check"]))
    for f in report.get("findings") or ():
        out.append(f"finding ({f['severity']}) {f['code']}: {f['title']}")
    gate = report.get("gate") or {}
    for failure in gate.get("failures", []):
        out.append(f"FAILED: {failure}")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- html


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}.verdict{font-size:1.2em;font-weight:600}
.filters{position:sticky;top:0;background:#fff;padding:.4em 0;border-bottom:1px solid #ccc}
.filters label{margin-right:1em}.item{border-top:1px solid #ddd;padding:.5em 0}
.item h3{font-size:1em;margin:.2em 0}
.pics{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0}figcaption{font-size:12px;color:#555;max-width:220px}
.ok{color:#070}.bad{color:#c00}pre{white-space:pre-wrap;max-width:420px;margin:0;font-size:12px}
.unparsed pre{border:1px dashed #c00;padding:4px;background:#fff5f5;max-height:220px;overflow:auto}
svg.grid{background:#fff;border:1px solid #999}
"""

_JS = """(()=>{
const sels=[...document.querySelectorAll('select[data-facet]')];
const show=document.getElementById('show');
function apply(){let n=0;for(const it of document.querySelectorAll('.item')){
 let ok=sels.every(s=>!s.value||it.dataset[s.dataset.facet]===s.value);
 if(show.value==='wrong')ok=ok&&it.dataset.wrong!=='';
 if(show.value==='differs')ok=ok&&it.dataset.differs==='1';
 it.hidden=!ok;n+=ok}document.getElementById('count').textContent=n+' shown'}
[...sels,show].forEach(s=>s.addEventListener('change',apply));apply();
})();
"""


def _cell_px(rows: int, cols: int) -> int:
    side = max(rows, cols, 1)
    return max(6, min(18, 180 // side))


def _square(r: int, c: int) -> str:
    return f"M{c} {r}h1v1h-1z"


def _svg_grid(
    value: list[list[int]] | None,
    expected: list[list[int]] | None,
    *,
    counts: bool,
    label: str,
) -> tuple[str, int]:
    """An inline SVG of a grid (live cells dark) or a count matrix (numbers).

    With ``expected`` given, wrong cells get a red outline (count: red number), expected cells the
    answer does not cover are grey with a red outline, and answer cells outside the expected
    area get a red cross. Returns the SVG and the number of wrong expected cells.
    """
    val = value or [[]]
    rows = len(val)
    cols = max((len(r) for r in val), default=0)
    erows = len(expected) if expected else 0
    ecols = len(expected[0]) if expected and expected[0] else 0
    height, width = max(rows, erows, 1), max(cols, ecols, 1)
    px = _cell_px(height, width)
    live, wrong, missing, extra, numbers, bad_numbers = [], [], [], [], [], []
    n_wrong = 0
    for r in range(height):
        for c in range(width):
            have = r < rows and c < len(val[r])
            want = expected is not None and r < erows and c < ecols
            if have:
                v = val[r][c]
                if counts:
                    text = f'<text x="{c + 0.5}" y="{r + 0.75}">{int(v)}</text>'
                    if want and v != expected[r][c]:  # type: ignore[index]
                        bad_numbers.append(text)
                    else:
                        numbers.append(text)
                elif v:
                    live.append(_square(r, c))
                if want and v != expected[r][c]:  # type: ignore[index]
                    wrong.append(_square(r, c))
                    n_wrong += 1
                elif expected is not None and not want:
                    extra.append(f"M{c + 0.2} {r + 0.2}l.6 .6m0 -.6l-.6 .6")
            elif want:
                missing.append(_square(r, c))
                n_wrong += 1
    lines = "".join(f"M0 {r}H{cols}" for r in range(rows + 1)) + "".join(
        f"M{c} 0V{rows}" for c in range(cols + 1)
    )
    parts = [
        (
            f'<svg class="grid" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="-0.1 -0.1 {width + 0.2} {height + 0.2}" width="{width * px}" '
            f'height="{height * px}" role="img" aria-label="{html.escape(label)}">'
        ),
    ]
    if missing:
        parts.append(f'<path class="missing" d="{"".join(missing)}" fill="#ddd"/>')
    if live:
        parts.append(f'<path class="live" d="{"".join(live)}" fill="#222"/>')
    parts.append(f'<path d="{lines}" stroke="#bbb" stroke-width="0.04" fill="none"/>')
    if numbers or bad_numbers:
        parts.append(
            f'<g font-size="0.62" text-anchor="middle" font-family="monospace">{"".join(numbers)}'
        )
        if bad_numbers:
            parts.append(
                '<g class="wrong-numbers" fill="#d00" font-weight="bold">'
                f"{''.join(bad_numbers)}</g>"
            )
        parts.append("</g>")
    if wrong or missing:
        parts.append(
            f'<path class="wrong" d="{"".join(wrong + missing)}" fill="none" stroke="#e00" '
            'stroke-width="0.14"/>'
        )
    if extra:
        parts.append(
            f'<path class="extra" d="{"".join(extra)}" stroke="#e00" stroke-width="0.12"/>'
        )
    parts.append("</svg>")
    return "".join(parts), n_wrong


def _figure(kind: str, caption: str, body: str, **data: str) -> str:
    attrs = "".join(f' data-{k.replace("_", "-")}="{html.escape(v)}"' for k, v in data.items())
    return f'<figure class="{kind}"{attrs}>{body}<figcaption>{caption}</figcaption></figure>'


def _item_html(
    item: Mapping[str, Any], labels: list[tuple[str, str]], base: str | None, merged: str | None
) -> str:
    counts = item["task"] == Task.COUNT.value
    expected = item["expected_value"]
    figures = [
        _figure(
            "input", "input", _svg_grid(item["input_grid"], None, counts=False, label="input")[0]
        ),
        _figure(
            "expected",
            "expected",
            _svg_grid(expected, None, counts=counts, label="expected")[0],
        ),
    ]
    wrong_labels = []
    for label, kind in labels:
        ans = item["answers"][label]
        score = ans["score"]
        mark = (
            '<span class="ok">exact</span>' if score["exact"] else '<span class="bad">wrong</span>'
        )
        cap = f"<b>{html.escape(label)}</b>{' (baseline)' if kind == 'baseline' else ''}: {mark}"
        if not score["exact"] and kind == "model":
            wrong_labels.append(label)
        if ans["value"] is None:
            text = ans["text"]
            shown = text if len(text) <= 2000 else text[:2000] + "..."
            body = f"<pre>{html.escape(shown) or '(empty answer)'}</pre>"
            cap += f"<br>{html.escape(score['reason'] or 'unparsable')}"
            figures.append(_figure("answer unparsed", cap, body, model=label, wrong_cells="all"))
            continue
        svg, n_wrong = _svg_grid(ans["value"], expected, counts=counts, label=f"{label} answer")
        cap += f", cells {100 * score['cell_accuracy']:.0f}%"
        if score["live_f1"] is not None:
            cap += f", F1 {score['live_f1']:.2f}"
        if score["reason"]:
            cap += f"<br>{html.escape(score['reason'])}"
        figures.append(_figure("answer", cap, svg, model=label, wrong_cells=str(n_wrong)))
    differs = (
        base is not None
        and merged is not None
        and item["answers"][base]["text"] != item["answers"][merged]["text"]
    )
    facets = "".join(
        f' data-{html.escape(k)}="{html.escape(str(v))}"' for k, v in item["facets"].items()
    )
    return (
        f'<section class="item"{facets} data-wrong="{html.escape(" ".join(wrong_labels))}" '
        f'data-differs="{int(differs)}"><h3>seed {item["seed"]} &middot; '
        f'{html.escape(item["family"])}</h3><div class="pics">{"".join(figures)}</div>'
        f"<details><summary>prompt</summary><pre>{html.escape(item['prompt'])}</pre></details>"
        "</section>"
    )


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained page (no external assets): tables, then every item drawn as pictures."""
    comparison = report.get("comparison")
    labels = _labels(report)
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(_verdict_title(report))} ({html.escape(report['run_id'])})</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(_verdict_title(report))}</h1>",
    ]
    if comparison:
        parts.append(f'<p class="verdict">{html.escape(comparison["headline"])}</p>')
    parts.append(
        f"<p>Run <code>{html.escape(report['run_id'])}</code> &middot; {report['n_items']} items "
        f"&middot; {html.escape(report['created'])}</p>"
    )
    parts += ["<h2>Models and baselines</h2>", _html_table(*model_rows(report))]
    if comparison:
        parts += ["<h2>Merged &minus; base (paired)</h2>", _html_table(*delta_rows(comparison))]
        parts.append(f"<p>{html.escape(_mcnemar_line(comparison))}</p>")
        parts += ["<h2>By family</h2>", _html_table(*family_rows(comparison))]
        regs = _regression_lines(comparison)
        parts.append("<h3>Family regressions</h3>")
        parts.append(
            "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in regs) + "</ul>"
            if regs
            else "<p>None.</p>"
        )
    gate = report.get("gate") or {}
    if gate.get("checked"):
        parts.append("<h2>Gate</h2>")
        if gate["failures"]:
            parts.append(
                "<ul>"
                + "".join(f'<li class="bad">{html.escape(f)}</li>' for f in gate["failures"])
                + "</ul>"
            )
        else:
            parts.append('<p class="ok">All thresholds met.</p>')

    # Filters: one select per facet, with the values present.
    values: dict[str, list[str]] = {}
    for item in report["items"]:
        for k, v in item["facets"].items():
            if str(v) not in values.setdefault(k, []):
                values[k].append(str(v))
    selects = []
    for facet in [f for f in FACETS if f in values] + [f for f in values if f not in FACETS]:
        opts = "".join(
            f'<option value="{html.escape(v)}">{html.escape(v)}</option>'
            for v in sorted(values[facet])
        )
        selects.append(
            f'<label>{html.escape(facet)} <select data-facet="{html.escape(facet)}">'
            f'<option value="">all</option>{opts}</select></label>'
        )
    selects.append(
        '<label>show <select id="show"><option value="all">all items</option>'
        '<option value="wrong">a model answered wrong</option>'
        '<option value="differs">base and merged differ</option></select></label>'
        '<span id="count"></span>'
    )
    parts += [
        "<h2>Items</h2>",
        (
            "<p>Live cells dark; wrong cells outlined red; expected cells an answer lacks grey; "
            "answer cells outside the expected grid crossed red; unparsable answers shown as "
            "text.</p>"
        ),
        f'<div class="filters">{"".join(selects)}</div>',
    ]
    parts += [
        _item_html(item, labels, report.get("base"), report.get("merged"))
        for item in report["items"]
    ]
    parts += [f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- files


def _write_atomic(path: Path, text: str) -> None:
    with atomic_text_writer(path, newline="\n") as out:
        out.write(text)


def _point_latest(reports_dir: Path, run_dir: Path) -> None:
    """Make ``reports_dir/latest`` name ``run_dir``: a relative symlink, else a copy."""
    latest = reports_dir / LATEST
    tmp = reports_dir / f".{LATEST}-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(run_dir.name, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        _copy_latest(reports_dir, run_dir)
        return
    try:
        if latest.is_dir() and not latest.is_symlink():
            # An earlier copy fallback left a real folder: move it away, then swap the link in.
            old = reports_dir / f".{LATEST}-old-{uuid.uuid4().hex[:8]}"
            os.replace(latest, old)
            os.replace(tmp, latest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, latest)
    except OSError:
        tmp.unlink(missing_ok=True)
        _copy_latest(reports_dir, run_dir)


def _copy_latest(reports_dir: Path, run_dir: Path) -> None:
    latest = reports_dir / LATEST
    tmp = reports_dir / f".{LATEST}-copy-{uuid.uuid4().hex[:8]}"
    shutil.copytree(run_dir, tmp)
    old = None
    if latest.is_symlink() or latest.is_file():
        latest.unlink()
    elif latest.exists():
        old = reports_dir / f".{LATEST}-old-{uuid.uuid4().hex[:8]}"
        os.replace(latest, old)
    os.replace(tmp, latest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_reports(
    report: Mapping[str, Any], reports_dir: str | os.PathLike[str] = "reports"
) -> Path:
    """Write ``<reports_dir>/<run-id>/{report.json,summary.md,report.html}``; return the folder.

    Each file is written atomically. An existing run folder is never reused
    (:class:`~simonsca.errors.OutputExistsError`). ``<reports_dir>/latest`` then points at the
    run (a symlink swapped atomically; a copy where symlinks fail).
    """
    root = Path(reports_dir)
    run_id = str(report["run_id"])
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", "..", LATEST):
        raise ValueError(f"not a usable run id: {run_id!r}")
    root.mkdir(parents=True, exist_ok=True)
    run_dir = root / run_id
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise OutputExistsError(
            f"{run_dir}: a report for run {run_id} already exists; "
            "not overwriting another run's results (use a new run id)"
        ) from None
    data = json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False)
    _write_atomic(run_dir / "report.json", data + "\n")
    _write_atomic(run_dir / "summary.md", render_summary_md(report))
    _write_atomic(run_dir / "report.html", render_html(report))
    _point_latest(root, run_dir)
    return run_dir

#!/usr/bin/env python3
"""The learning curve of a from-scratch run, judged only by simonsca.

For every ``step-*.gguf`` in a run folder but the base, runs ``simonsca compare BASE STEP`` (the same
evaluation as ``pytest evals/``) and prints one markdown row per checkpoint from the run's
``report.json``: teacher-forced cell accuracy and answer NLL (with 95% CIs), greedy parse /
cell accuracy, the best trivial baseline, simonsca's verdict and whether
``test_merged_model_beats_trivial_baselines`` passed. Nothing is scored here.

    python recipes/scratch_curve.py RUN_DIR --base RUN_DIR/step-000250.gguf \
        --forced-size 512 --scoring teacher-forced [--simonsca .venv/bin/simonsca] [more compare options]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path


def pct(m: dict) -> str:
    return f"{100 * m['value']:.1f}% ({100 * m['low']:.1f}-{100 * m['high']:.1f})"


def row(step: str, report: dict) -> str:
    e = report["evaluation"]
    forced = e["forced_summaries"]["merged"]
    fm = forced["metrics"]
    by_task = forced["by_facet"]["task"]
    greedy = e["summaries"].get("merged")  # absent under --scoring teacher-forced
    comp = e["comparisons"]
    if isinstance(comp, list):  # report schema 3: one entry per (reference, candidate, mode)
        comp = next(c["comparison"] for c in comp if c["prompt_mode"] == "raw")
    else:
        comp = comp["raw"]
    skill = next(c for c in report["checks"] if c["name"] == "beats_trivial_baselines")
    found = re.search(r"best trivial baseline, (\S+) at ([\d.]+%)", skill["message"])
    best = f"{found.group(1)} {found.group(2)}" if found else "?"
    nll = fm["nll"]
    parse = cells = "-"
    if greedy is not None:
        parse = f"{100 * greedy['metrics']['parse_ok']['value']:.0f}%"
        cells = f"{100 * greedy['metrics']['cell_accuracy']['value']:.1f}%"
    tasks = " / ".join(
        f"{100 * by_task[t]['forced_cell_accuracy']['value']:.1f}%" for t in ("next", "count")
    )
    return (
        f"| {step} | {pct(fm['forced_cell_accuracy'])} | {tasks} | {nll['value']:.3f} "
        f"({nll['low']:.3f}-{nll['high']:.3f}) | {parse} | {cells} | {best} | {comp['verdict']} | "
        f"{skill['status']} |"
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("run", type=Path)
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--eval-size", default="32")
    p.add_argument("--forced-size", default="128")
    p.add_argument("--simonsca", default=str(Path(sys.executable).with_name("simonsca")))
    p.add_argument("--reports-dir", type=Path, default=Path("/tmp/scratch-curve-reports"))
    args, extra = p.parse_known_args()  # the rest goes to simonsca compare
    print(
        "| step | TF cell acc. (95% CI) | next / count | answer NLL (95% CI) | parse | "
        "greedy cell acc. | best trivial baseline | verdict vs base | beats baselines |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for ckpt in sorted(args.run.glob("step-*.gguf")):
        if ckpt.resolve() == args.base.resolve():
            continue
        run_id = f"{args.run.name}-{ckpt.stem}-vs-{args.base.stem}"
        cmd = [
            args.simonsca,
            "compare",
            str(args.base),
            str(ckpt),
            "--eval-size",
            args.eval_size,
            "--forced-size",
            args.forced_size,
            "--reports-dir",
            str(args.reports_dir),
            "--run-id",
            run_id,
            "--no-progress",
            *extra,
        ]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
        report = json.loads((args.reports_dir / run_id / "report.json").read_text())
        print(row(str(int(ckpt.stem.split("-")[1])), report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

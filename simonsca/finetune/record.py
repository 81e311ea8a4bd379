"""``training_record.json``: what was trained, how, on what, and how long it took -- no torch.

The record is data first: a flat JSON object whose required keys are listed in
:data:`RECORD_KEYS`. :func:`validate_record` checks a loaded record, so a fixture that lost a
field fails a test instead of misleading a reader.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

SCHEMA = "simonsca.finetune.training_record/1"

# key -> the JSON type(s) its value must have
RECORD_KEYS: dict[str, tuple[type, ...]] = {
    "schema": (str,),
    "command": (str,),  # the exact command line that produced this adapter
    "argv": (list,),
    "base_model": (dict,),  # {"path", "file", "sha256", "size_bytes"}
    "adapter": (dict,),  # {"file", "sha256", "size_bytes", "outtype", "rank", "alpha", "targets"}
    "data": (dict,),  # generator, seed range, filter, seeds summary and list
    "training": (dict,),  # steps, batch size, lr, schedule, device, threads, torch seed
    "loss_curve": (list,),  # one float per optimiser step (mean over the batch's answer tokens)
    "final_loss": (float, int),  # mean of the last 10 steps
    "wall_time_s": (dict,),  # {"load", "train", "export", "total"}
    "versions": (dict,),  # python, torch, transformers, peft, gguf, numpy, simonsca, converter
    "started_utc": (str,),
}


def library_versions(
    names: tuple[str, ...] = (
        "torch",
        "transformers",
        "peft",
        "gguf",
        "numpy",
        "matplotlib",
        "simonsca",
    ),
) -> dict[str, str]:
    """Installed versions of the libraries that shaped the adapter (``"absent"`` if missing)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def validate_record(record: dict[str, Any]) -> list[str]:
    """Problems with a loaded record; an empty list means it is well-formed."""
    problems = []
    for key, types in RECORD_KEYS.items():
        if key not in record:
            problems.append(f"missing key {key!r}")
        elif not isinstance(record[key], types) or isinstance(record[key], bool):
            problems.append(f"{key!r} should be {'/'.join(t.__name__ for t in types)}")
    if problems:
        return problems
    if record["schema"] != SCHEMA:
        problems.append(f"schema is {record['schema']!r}, expected {SCHEMA!r}")
    curve = record["loss_curve"]
    if len(curve) != record["training"].get("steps_done"):
        problems.append("loss_curve length differs from training.steps_done")
    if not all(isinstance(x, (int, float)) for x in curve):
        problems.append("loss_curve holds non-numbers")
    seeds = record["data"].get("seeds", [])
    start, stop = record["data"].get("seed_range", [None, None])
    if start is None or any(not start <= s < stop for s in seeds):
        problems.append("a training seed lies outside data.seed_range")
    if stop is not None and stop > 1_000_000:
        problems.append("data.seed_range reaches the evaluation seeds (>= 1000000)")
    for key in ("file", "sha256", "size_bytes"):
        if key not in record["adapter"]:
            problems.append(f"adapter.{key} missing")
    return problems


def write_record(record: dict[str, Any], path: str | Path) -> None:
    problems = validate_record(record)
    if problems:
        raise ValueError("training record is malformed: " + "; ".join(problems))
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def plot_loss(curve: list[float], path: str | Path, title: str) -> None:
    """Loss per step and a 10-step moving average, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = list(range(1, len(curve) + 1))
    ax.plot(steps, curve, lw=0.8, alpha=0.5, label="loss per step")
    if len(curve) >= 10:
        avg = [sum(curve[i - 9 : i + 1]) / 10 for i in range(9, len(curve))]
        ax.plot(steps[9:], avg, lw=2, label="10-step mean")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy on answer tokens (nats)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

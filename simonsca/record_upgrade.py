"""How a stored ``report.json`` of an older schema is brought up to the current one.

Each function takes the parsed JSON of one version and returns it one version newer (its
``schema`` set), so :func:`simonsca.record.from_json` can read every record simonsca ever
wrote. ``simonsca.report/2`` is the first schema that was read back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simonsca.compare import family_regressed

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]

#: The two-model run's fixed names, before a run had a reference and N candidates.
_REFERENCE, _CANDIDATE = "base", "merged"


def _contender(label: str) -> str:
    """``merged (chat)`` -> ``merged``: a label without its prompt mode."""
    return label.rsplit(" (", 1)[0] if label.endswith(")") and " (" in label else label


def _two_to_three(data: dict[str, Any]) -> dict[str, Any]:
    """``report/2`` -> ``report/3``: base/merged become a reference and one candidate."""
    out = dict(data)
    e = dict(data["evaluation"])
    s = dict(e["settings"])
    for key in ("merged_model", "lora"):
        value = s.get(key)
        s[key] = [] if value is None else [value]
    s.setdefault("compare_to", None)
    s.setdefault("max_drop_vs_stored", None)
    s.setdefault("correction", "holm")
    e["settings"] = s
    limit = float(s.get("max_family_regression", 0.10))
    for comparison in e["comparisons"].values():
        for mode in (comparison.get("generation"), comparison.get("forced")):
            for f in (mode or {}).get("families", []):
                f.setdefault("regressed", family_regressed(f["metric"], f["diff"], limit))
            if (mode or {}).get("baseline"):
                mode["baseline"].setdefault("confidence", 1 - float(comparison["alpha"]))
    roles = {"base": "reference", "merged": "candidate"}
    models = []
    for m in e["models"]:
        m = dict(m)
        side = m.pop("side")
        m["role"] = roles.get(side, side)
        m["contender"] = _contender(m["label"]) if m["kind"] == "model" else m["label"]
        models.append(m)
    e["models"] = models
    two = any(m["role"] == "candidate" for m in models) or bool(e["comparisons"])
    e["reference"] = _REFERENCE if two else None
    e["candidates"] = [{"name": _CANDIDATE, "step": None}] if two else []
    e["comparisons"] = [
        {
            "reference": _REFERENCE,
            "candidate": _CANDIDATE,
            "prompt_mode": mode,
            "comparison": comparison,
        }
        for mode, comparison in e["comparisons"].items()
    ]
    e["identical_files"] = {_CANDIDATE: True} if e.pop("files_identical", False) else {}
    check = e.pop("merge_check", None)
    e["merge_checks"] = [{"candidate": _CANDIDATE, **check}] if check else []
    out["evaluation"] = e
    out["checks"] = [
        {**c, "candidate": _CANDIDATE if two else None} for c in data.get("checks", [])
    ]
    out["schema"] = "simonsca.report/3"
    return out


UPGRADES: dict[str, Upgrade] = {"simonsca.report/2": _two_to_three}

"""Named findings: what forensics says about a finetune, each with its numbers.

Every analysis (weight diff, adapter inspection, logit effect, training-data doctor) returns a
tuple of :class:`Finding`. A healthy input yields no finding at all, so "no findings" means
"nothing wrong that these checks can see".
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class Severity(str, enum.Enum):
    """How much a finding explains a failed finetune."""

    INFO = "info"  # worth knowing; not by itself a reason for failure
    WARNING = "warning"  # weakens training or evaluation
    ERROR = "error"  # on its own enough to explain "the finetune changed nothing"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    """One named diagnosis with the numbers behind it.

    ``code`` is stable (for scripts and tests), ``title`` is one line for people, ``detail`` says
    why it matters and what to do, ``numbers`` holds the measured values.
    """

    code: str
    severity: Severity
    title: str
    detail: str = ""
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:  # numbers is a dict; hash on the identifying fields only
        return hash((self.code, self.severity, self.title))

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "title": self.title,
            "detail": self.detail,
            "numbers": _jsonable(dict(self.numbers)),
        }


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Errors first, then warnings, then info; stable within a severity."""
    return tuple(sorted(findings, key=lambda f: f.severity.rank))


def format_findings_table(findings: Iterable[Finding], *, width: int = 100) -> str:
    """A plain-text table: one line per finding (severity, code, title), detail indented below."""
    rows = sort_findings(findings)
    if not rows:
        return "no findings: nothing wrong that these checks can see"
    code_w = max(len("code"), *(len(f.code) for f in rows))
    lines = [f"{'severity':<8}  {'code':<{code_w}}  title", f"{'-' * 8}  {'-' * code_w}  {'-' * 5}"]
    for f in rows:
        lines.append(f"{f.severity.value:<8}  {f.code:<{code_w}}  {f.title}")
        if f.detail:
            indent = " " * (8 + 2 + code_w + 2)
            lines.extend(indent + part for part in _wrap(f.detail, max(40, width - len(indent))))
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def _jsonable(obj: Any) -> Any:
    """Plain JSON values from dataclasses, enums, paths, numpy scalars/arrays, tuples."""
    if isinstance(obj, Finding):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # as in report.json: JSON has no infinity or NaN

    return obj


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """JSON text for any forensics result (a report, a finding, a list of findings)."""
    return json.dumps(_jsonable(obj), indent=indent, ensure_ascii=False)

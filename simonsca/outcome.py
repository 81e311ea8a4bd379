"""What a check decided: the status and its message (kept apart from the rules in
:mod:`simonsca.checks` so that the record can hold outcomes without importing the rules)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Status(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"  # the check does not apply to this run (message says why)
    XFAILED = "xfailed"  # failed, but only required on request (e.g. --require-skill)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CheckOutcome:
    """What one check decided for one candidate, and why, in one message."""

    name: str
    test: str  # the evals/ test that enforces it
    status: Status
    message: str
    settings: tuple[tuple[str, str], ...] = ()  # the settings it read, as shown to users
    candidate: str | None = None  # the candidate it judged (None: the run has no candidate)
    # the numbers the message states, by name (a metric's value, delta and CI, the threshold,
    # the verdict ...): for tools that read report.json instead of the sentence
    detail: Mapping[str, int | float | str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status is Status.FAILED

    @property
    def test_id(self) -> str:
        """The pytest id of the test that enforces it: ``test_x[candidate]``."""
        return f"{self.test}[{self.candidate}]" if self.candidate is not None else self.test

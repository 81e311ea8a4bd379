"""The evaluation record: everything one run measured and decided, built once, serialised once.

The suite builds an :class:`Evaluation` from the scores it computed (nothing is parsed or scored
a second time); :mod:`simonsca.checks` judges it; :class:`EvalRecord` holds both with the run's
identity. ``report.json`` is this record through one converter (:func:`to_json`, a pydantic
``TypeAdapter`` over these dataclasses -- :func:`json_schema` gives its schema, :func:`from_json`
reads it back); the Markdown, terminal and HTML views only read it.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from typing import Any

from simonsca.compare import NoiseFloor
from simonsca.curve import Curve
from simonsca.errors import StoredRunError
from simonsca.forensics.findings import Finding
from simonsca.likelihood import ForcedScore
from simonsca.models.base import ModelInfo
from simonsca.outcome import CheckOutcome, Status
from simonsca.record_upgrade import UPGRADES
from simonsca.scoring import ItemScore, score_text
from simonsca.settings import Settings
from simonsca.summary import Summary
from simonsca.tasks import Item
from simonsca.verdict import Comparison, Verdict

SCHEMA = "simonsca.report/3"

Grid = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Environment:
    """Versions that can change results."""

    python: str
    numpy: str | None
    llama_cpp_python: str | None
    simonsca: str | None
    platform: str
    machine: str

    @classmethod
    def current(cls) -> Environment:
        def version(dist: str) -> str | None:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                return None

        return cls(
            python=platform.python_version(),
            numpy=version("numpy"),
            llama_cpp_python=version("llama-cpp-python"),
            simonsca=version("simonsca"),
            platform=platform.platform(),
            machine=platform.machine(),
        )


@dataclass(frozen=True)
class ModelEntry:
    """One model (or baseline) run in one prompt mode: who it is and how the run went."""

    label: str  # "base", "merged", "base (chat)", "checkpoint-20", "all-dead", ...
    contender: str  # the reference's or candidate's name (the label without its prompt mode)
    role: str  # "reference", "candidate", "model" (a one-model run) or "baseline"
    kind: str  # "model" or "baseline"
    prompt_mode: str
    info: ModelInfo
    origin: str = "given"
    generation_seconds: float = 0.0
    generation_items_per_second: float | None = None  # over fresh answers; None: all cached
    n_answers: int = 0
    n_cached: int = 0
    n_generated_tokens: int = 0
    finish_reasons: Mapping[str, int] = field(default_factory=dict)
    forced_seconds: float = 0.0
    forced_items_per_second: float | None = None
    n_forced: int = 0


@dataclass(frozen=True)
class AnswerRecord:
    """One model's greedy answer to one item: the text, what the parser read, its score."""

    text: str
    n_tokens: int
    finish_reason: str
    cached: bool
    value: Grid | None  # the parsed grid or counts; None when it did not parse
    notes: tuple[str, ...]
    score: ItemScore
    prompt: str | None = None  # the prompt as sent, when it is not the item's raw prompt


@dataclass(frozen=True)
class ItemRecord:
    """One held-out puzzle and every answer to it."""

    seed: int
    generator: str
    family: str
    facets: Mapping[str, str]
    task: str
    wrap_x: bool
    wrap_y: bool
    generations: int
    symbols: Mapping[str, str]
    prompt: str
    input_grid: Grid
    expected: str
    expected_value: Grid
    answers: Mapping[str, AnswerRecord]  # label -> greedy answer (generation items only)
    forced: Mapping[str, ForcedScore]  # label -> teacher-forced score


def as_grid(array: object) -> Grid:
    """A grid or count matrix as rows of ints (a one-dimensional array is one row)."""
    import numpy as np

    return tuple(tuple(int(v) for v in row) for row in np.atleast_2d(np.asarray(array)).tolist())


def answer_record(
    item: Item,
    text: str,
    *,
    n_tokens: int,
    finish_reason: str,
    cached: bool,
    prompt: str | None = None,
) -> AnswerRecord:
    """An answer parsed and scored once, as the record keeps it."""
    parsed, score = score_text(item, text)
    value = None if parsed.value is None else as_grid(parsed.value)
    return AnswerRecord(
        text, n_tokens, finish_reason, cached, value, tuple(parsed.notes), score, prompt
    )


def item_record(
    item: Item, answers: Mapping[str, AnswerRecord], forced: Mapping[str, ForcedScore]
) -> ItemRecord:
    """One item with every answer to it and every teacher-forced score of it."""
    return ItemRecord(
        seed=item.seed,
        generator=item.generator,
        family=item.family,
        facets=item.family_facets,
        task=item.task.value,
        wrap_x=item.wrap_x,
        wrap_y=item.wrap_y,
        generations=item.generations,
        symbols={
            "live": item.symbols.live,
            "dead": item.symbols.dead,
            "row_sep": item.symbols.row_sep,
            "cell_sep": item.symbols.cell_sep,
        },
        prompt=item.prompt,
        input_grid=as_grid(item.grid),
        expected=item.output,
        expected_value=as_grid(item.expected),
        answers=answers,
        forced=forced,
    )


@dataclass(frozen=True)
class MergeCheck:
    """Does a candidate's merged file answer like base + the adapter it was built from?"""

    candidate: str
    adapter: str
    identical: int  # items whose answer texts are byte-identical
    n: int

    @property
    def agreement(self) -> float:
        return self.identical / self.n if self.n else 0.0


@dataclass(frozen=True)
class Candidate:
    """One candidate of a run: its name and, for a checkpoint, its training step."""

    name: str
    step: int | None = None


@dataclass(frozen=True)
class Pairing:
    """One comparison of a run: a candidate against the reference in one prompt mode."""

    reference: str
    candidate: str
    prompt_mode: str
    comparison: Comparison


def label_of(contender: str, mode: str, primary: str) -> str:
    """A contender's label in one prompt mode: its name in the primary mode, ``name (chat)``
    etc. in the other."""
    return contender if mode == primary else f"{contender} ({mode})"


@dataclass(frozen=True)
class Evaluation:
    """Everything measured: items, answers, scores, aggregates, comparisons, findings."""

    settings: Settings
    compared: str  # one line: what was compared on which items
    items: tuple[ItemRecord, ...]
    models: tuple[ModelEntry, ...]
    summaries: Mapping[str, Summary]  # label -> generation metrics
    forced_summaries: Mapping[str, Summary]  # label -> teacher-forced metrics
    reference: str | None  # the reference's name (None: one model, nothing to compare with)
    candidates: tuple[Candidate, ...]  # in the order given (checkpoints: by step)
    comparisons: tuple[Pairing, ...]  # each candidate against the reference, per prompt mode
    # candidate -> its model files are byte-identical to the reference's (nothing was run)
    identical_files: Mapping[str, bool] = field(default_factory=dict)
    merge_checks: tuple[MergeCheck, ...] = ()
    noise: NoiseFloor | None = None
    findings: tuple[Finding, ...] = ()
    warnings: tuple[str, ...] = ()  # caveats for the reader (e.g. a server's weaker cache key)
    curve: Curve | None = None  # the learning curve, when two or more candidates have a step

    @property
    def primary_mode(self) -> str:
        return self.settings.prompt_modes[0]

    @property
    def comparison(self) -> Comparison | None:
        """The first candidate's comparison in the primary prompt mode (the only one, N = 1)."""
        first = self.candidates[0].name if self.candidates else None
        return self.comparison_of(first) if first is not None else None

    def comparison_of(self, candidate: str, mode: str | None = None) -> Comparison | None:
        """``candidate`` against the reference in ``mode`` (default: the primary prompt mode)."""
        wanted = mode or self.primary_mode
        for p in self.comparisons:
            if p.candidate == candidate and p.prompt_mode == wanted:
                return p.comparison
        return None

    def files_identical(self, candidate: str) -> bool:
        return self.identical_files.get(candidate, False)

    def merge_check(self, candidate: str) -> MergeCheck | None:
        return next((m for m in self.merge_checks if m.candidate == candidate), None)

    def label(self, contender: str, mode: str | None = None) -> str:
        return label_of(contender, mode or self.primary_mode, self.primary_mode)

    def labels(self, kind: str | None = None) -> tuple[str, ...]:
        return tuple(m.label for m in self.models if kind is None or m.kind == kind)

    def generation_scores(self, label: str) -> tuple[ItemScore, ...]:
        return tuple(i.answers[label].score for i in self.items if label in i.answers)

    def forced_scores(self, label: str) -> tuple[ForcedScore, ...]:
        return tuple(i.forced[label] for i in self.items if label in i.forced)


@dataclass(frozen=True)
class EvalRecord:
    """One run: its identity, what it measured, and what the checks decided."""

    schema: str
    run_id: str
    created: str  # ISO 8601, UTC
    environment: Environment
    evaluation: Evaluation
    checks: tuple[CheckOutcome, ...]

    @property
    def verdict(self) -> Verdict | None:
        """The first candidate's verdict (the only one, N = 1); see :meth:`verdict_of`."""
        comparison = self.evaluation.comparison
        return comparison.verdict if comparison is not None else None

    def verdict_of(self, candidate: str) -> Verdict | None:
        comparison = self.evaluation.comparison_of(candidate)
        return comparison.verdict if comparison is not None else None

    @property
    def failed(self) -> tuple[CheckOutcome, ...]:
        return tuple(c for c in self.checks if c.status is Status.FAILED)

    @property
    def passed(self) -> bool:
        """What ``pytest evals/`` and ``simonsca compare``'s exit status both say."""
        return not self.failed

    def check(self, name: str, candidate: str | None = None) -> CheckOutcome:
        """Check ``name``'s outcome for ``candidate`` (default: the first candidate)."""
        for outcome in self.checks:
            if outcome.name == name and (candidate is None or outcome.candidate == candidate):
                return outcome
        raise KeyError(name if candidate is None else f"{name}[{candidate}]")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@cache
def _adapter() -> Any:
    from pydantic import ConfigDict, TypeAdapter

    # Non-finite numbers (an empty mean, an infinite ratio) are written as null, everywhere.
    EvalRecord.__pydantic_config__ = ConfigDict(ser_json_inf_nan="null")  # type: ignore[attr-defined]
    return TypeAdapter(EvalRecord)


def to_json(record: EvalRecord) -> str:
    """``report.json``: the record as JSON (non-finite numbers as null), keys in field order."""
    data: bytes = _adapter().dump_json(record, indent=1)
    return data.decode("utf-8") + "\n"


def _schema_number(schema: str) -> int | None:
    prefix, _, number = schema.rpartition("/")
    return int(number) if prefix == "simonsca.report" and number.isdigit() else None


def _upgraded(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` at :data:`SCHEMA`: older versions through :data:`UPGRADES`, newer refused."""
    seen = set()
    while (schema := data.get("schema")) != SCHEMA:
        number = _schema_number(schema) if isinstance(schema, str) else None
        if number is None or not isinstance(schema, str):
            raise StoredRunError(
                f"{source}: not a simonsca report (schema {schema!r}; expected {SCHEMA!r})"
            )
        if number > (_schema_number(SCHEMA) or 0):
            raise StoredRunError(
                f"{source}: written by a newer simonsca (schema {schema}); this simonsca reads "
                f"{SCHEMA} and older: upgrade simonsca to read it"
            )
        upgrade = UPGRADES.get(schema)
        if upgrade is None or schema in seen:
            raise StoredRunError(
                f"{source}: schema {schema} is older than this simonsca reads ({SCHEMA}) and has "
                "no upgrade; run the evaluation again to store it anew"
            )
        seen.add(schema)
        data = upgrade(data)
    return data


def from_json(text: str | bytes, source: str = "report.json") -> EvalRecord:
    """Read a ``report.json`` back into the record (to re-render its views, or to compare runs).

    The schema version is checked first: an older one is upgraded (:data:`UPGRADES`), a newer or
    unknown one refused. Anything unreadable is a :class:`StoredRunError` naming ``source``."""
    from pydantic import ValidationError

    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoredRunError(f"{source}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise StoredRunError(f"{source}: not a simonsca report (a JSON {type(data).__name__})")
    upgraded = _upgraded(data, source)
    try:
        record: EvalRecord = (
            _adapter().validate_json(text)
            if upgraded is data
            else _adapter().validate_python(upgraded)
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise StoredRunError(
            f"{source}: does not match schema {SCHEMA} ({error.error_count()} problem(s), the "
            f"first at {where}: {first['msg']})"
        ) from None
    return record


def json_schema() -> dict[str, Any]:
    """The JSON schema of ``report.json``."""
    schema: dict[str, Any] = _adapter().json_schema(mode="serialization")
    return schema

"""A stored run as a new run's reference (``--compare-to RUN``): no model is run for it.

``RUN`` is what ``simonsca runs`` takes -- a run folder, its ``report.json``, or a run id under
the reports folder (``latest``: the newest) -- optionally followed by ``:NAME``, the stored
contender to take as the reference: one of the stored run's candidates, or its reference (e.g.
``early:base``). Without ``:NAME`` the stored run's only candidate is taken (a one-model run: its
model); a run with several candidates needs one picked. ``RUN:NAME`` is only read so when ``RUN``
itself names no stored run (a path with a ``:`` in it stays a path).

:func:`load_reference` reads and checks it before any model work: the stored run must hold the
very items the new run will answer -- the same item family, first seed, ``--eval-size`` and
``--forced-size``, scoring and prompt mode(s), and item for item the same seed, prompt and
expected answer (so a changed item generator is caught too) -- or it refuses in one line naming
what differs (:class:`~simonsca.errors.RunsDiffer`); any other problem is a
:class:`~simonsca.errors.StoredRunError`. The suite then puts the stored answers and
teacher-forced scores into the new run's items under :meth:`StoredReference.label`, so every
paired comparison runs as with a reference model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from simonsca.compare import NoiseFloor
from simonsca.errors import RunsDiffer, StoredRunError
from simonsca.likelihood import ForcedScore
from simonsca.record import AnswerRecord, ItemRecord, ModelEntry, label_of
from simonsca.runs.pairing import contenders, item_set_difference, planned_items, record_items
from simonsca.runs.store import StoredRun, load_run, reports_folder, resolve_run
from simonsca.settings import Settings
from simonsca.tasks import Item

#: What a contender name may hold (as ``NAME=PATH`` takes it).
_NAME = re.compile(r"[A-Za-z0-9._-]+")
#: The reference's name in the new run: ``stored-<run id>`` (``stored-<run id>.<contender>``
#: when the stored contender is not the stored run's only candidate).
PREFIX = "stored-"


@dataclass(frozen=True)
class StoredReference:
    """One contender of a stored run, as the reference of a new run.

    ``name`` is the reference's name in the new run: ``stored-<run id>`` for the stored run's
    only candidate (or a one-model run's model), ``stored-<run id>.<contender>`` for any other
    pick (e.g. ``stored-early.base``), with any character outside letters, digits, ``-``, ``_``
    and ``.`` of the run id made ``-``. ``noise`` is the stored run's noise floor: measured on
    *that run's reference model* (so for a picked candidate, a floor of the same architecture and
    backend, not of that candidate's own weights), or None when the stored run measured none.
    """

    name: str
    run: StoredRun
    contender: str  # the stored contender's name in the stored run
    role: str  # its role there: "reference", "candidate" or "model"
    noise: NoiseFloor | None
    # the stored run's items by seed
    stored_items: Mapping[int, ItemRecord] = field(repr=False, compare=False, default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def primary_mode(self) -> str:
        return self.run.record.evaluation.primary_mode

    @property
    def prompt_modes(self) -> tuple[str, ...]:
        return self.run.record.evaluation.settings.prompt_modes

    def stored_label(self, mode: str | None = None) -> str:
        """The contender's label in the stored run (default: the primary prompt mode)."""
        return label_of(self.contender, mode or self.primary_mode, self.primary_mode)

    def label(self, mode: str | None = None) -> str:
        """The reference's label in the new run: the key its answers go under in each item."""
        return label_of(self.name, mode or self.primary_mode, self.primary_mode)

    def answer(self, seed: int, mode: str | None = None) -> AnswerRecord | None:
        """The stored greedy answer to item ``seed`` in ``mode`` (None: not a generated item),
        marked cached: it was not generated in the new run."""
        item = self.stored_items.get(seed)
        found = item.answers.get(self.stored_label(mode)) if item is not None else None
        return replace(found, cached=True) if found is not None else None

    def forced(self, seed: int, mode: str | None = None) -> ForcedScore | None:
        """The stored teacher-forced score of item ``seed`` in ``mode`` (None: not scored)."""
        item = self.stored_items.get(seed)
        return item.forced.get(self.stored_label(mode)) if item is not None else None

    def answers(self, mode: str | None = None) -> dict[int, AnswerRecord]:
        """Every stored greedy answer in ``mode``, by seed."""
        found = {seed: self.answer(seed, mode) for seed in self.stored_items}
        return {seed: a for seed, a in found.items() if a is not None}

    def forced_scores(self, mode: str | None = None) -> dict[int, ForcedScore]:
        """Every stored teacher-forced score in ``mode``, by seed."""
        found = {seed: self.forced(seed, mode) for seed in self.stored_items}
        return {seed: f for seed, f in found.items() if f is not None}

    def for_item(self, seed: int) -> tuple[dict[str, AnswerRecord], dict[str, ForcedScore]]:
        """Item ``seed``'s stored greedy answers and teacher-forced scores in every prompt mode,
        keyed by the new run's labels (:meth:`label`): what the suite adds to that item's
        ``answers`` and ``forced``."""
        answers = {self.label(m): self.answer(seed, m) for m in self.prompt_modes}
        forced = {self.label(m): self.forced(seed, m) for m in self.prompt_modes}
        return (
            {label: a for label, a in answers.items() if a is not None},
            {label: f for label, f in forced.items() if f is not None},
        )

    def model_entries(self) -> tuple[ModelEntry, ...]:
        """The stored contender's entries (one per prompt mode), as the new run's reference:
        its label and name in the new run, role ``reference``, origin naming the stored run; no
        time spent and every answer counted as cached (nothing was run for it)."""
        out = []
        for m in self.run.record.evaluation.models:
            if m.kind != "model" or m.contender != self.contender or m.role != self.role:
                continue
            out.append(
                replace(
                    m,
                    label=self.label(m.prompt_mode),
                    contender=self.name,
                    role="reference",
                    origin=f"stored run {self.run_id} ({self.contender})",
                    generation_seconds=0.0,
                    generation_items_per_second=None,
                    n_cached=m.n_answers,
                    forced_seconds=0.0,
                    forced_items_per_second=None,
                )
            )
        return tuple(out)

    def describe(self) -> str:
        """``20261205-142800-abc123 (merged=base+adapter, 2026-12-05 14:28Z)``."""
        model = next(iter(self.model_entries()), None)
        who = f"{self.contender}={model.info.name}" if model is not None else self.contender
        created = self.run.record.created
        date = created.replace("T", " ")[:16] + ("Z" if created.endswith("Z") else "")
        return f"{self.run_id} ({who}, {date})"


def split_run(text: str, reports: Path) -> tuple[str, str | None]:
    """``RUN:NAME`` -> (RUN, NAME); ``RUN`` -> (RUN, None). Only split when the whole text
    names no stored run and NAME looks like a contender name."""
    run, sep, name = text.rpartition(":")
    if not sep or not run or not _NAME.fullmatch(name):
        return text, None
    try:
        resolve_run(text, reports)
    except StoredRunError:
        return run, name
    return text, None


def reference_name(run_id: str, contender: str, only: bool) -> str:
    """The reference's name in the new run (see :class:`StoredReference`)."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", run_id)
    return f"{PREFIX}{clean}" if only else f"{PREFIX}{clean}.{contender}"


def _pick(stored: StoredRun, name: str | None, given: str, run: str) -> tuple[str, str, bool]:
    """The stored contender to take: (name, role, is it the run's only candidate)."""
    found = contenders(stored.record)
    listed = ", ".join(f"{n} ({role})" for n, role in found) or "none"
    others = [(n, role) for n, role in found if role != "reference"]
    if name is not None:
        role = dict(found).get(name)
        if role is None:
            raise StoredRunError(
                f"--compare-to {given}: stored run {stored.run_id} has no contender {name!r}; "
                f"it has {listed}"
            )
        return name, role, len(others) == 1 and others[0][0] == name
    if len(others) == 1:
        return others[0][0], others[0][1], True
    if not others:
        raise StoredRunError(
            f"--compare-to {given}: stored run {stored.run_id} has no candidate to take as the "
            f"reference (it has {listed}); pick one with --compare-to {run}:NAME"
        )
    raise StoredRunError(
        f"--compare-to {given}: stored run {stored.run_id} has {len(others)} candidates "
        f"({', '.join(n for n, _ in others)}); pick the reference with --compare-to "
        f"{run}:NAME (its own reference: {run}:{found[0][0]})"
    )


def _stored_flags(stored: StoredRun) -> str:
    s = stored.record.evaluation.settings
    flags = [f"--eval-family {s.eval_family}", f"--eval-seed {s.eval_seed}"]
    flags += [f"--eval-size {s.eval_size}"] if "generate" in s.scoring_modes else []
    flags += [f"--forced-size {s.forced_size}"] if "teacher-forced" in s.scoring_modes else []
    flags += [f"--scoring {s.scoring}", f"--prompt-mode {s.prompt_mode}"]
    return " ".join(flags)


def _check_complete(
    ref: StoredReference, settings: Settings, items: Sequence[Item], given: str
) -> None:
    """Every item the new run scores has the stored contender's score, in every prompt mode."""
    s = settings
    wanted = [
        (
            "greedy answer",
            ref.answer,
            items[: s.eval_size] if "generate" in s.scoring_modes else (),
        ),
        (
            "teacher-forced score",
            ref.forced,
            items[: s.forced_size] if "teacher-forced" in s.scoring_modes else (),
        ),
    ]
    for mode in s.prompt_modes:
        for what, get, needed in wanted:
            missing = [item.seed for item in needed if get(item.seed, mode) is None]
            if missing:
                raise StoredRunError(
                    f"--compare-to {given}: stored run {ref.run_id} holds no {what} of "
                    f"{ref.stored_label(mode)} to item {missing[0]}"
                    + (f" (nor to {len(missing) - 1} more)" if len(missing) > 1 else "")
                    + "; take another contender with RUN:NAME or another run"
                )


def load_reference(settings: Settings, items: Sequence[Item]) -> StoredReference:
    """``settings.compare_to`` read and checked against the new run's ``items`` (before any
    model work): the stored contender to pair the candidates with. One line
    (:class:`StoredRunError`, or :class:`RunsDiffer` when the items differ) if it cannot be."""
    given = settings.compare_to
    if given is None:
        raise StoredRunError("no stored run to compare to (--compare-to RUN)")
    reports = reports_folder(settings.reports_dir)
    run_text, name = split_run(given, reports)
    try:
        stored = load_run(run_text, reports)
    except StoredRunError as error:
        raise StoredRunError(f"--compare-to {given}: {error}") from None
    contender, role, only = _pick(stored, name, given, run_text)
    e = stored.record.evaluation
    ref = StoredReference(
        reference_name(stored.run_id, contender, only),
        stored,
        contender,
        role,
        e.noise,
        {item.seed: item for item in e.items},
    )
    if not ref.model_entries():
        why = (
            " (its files were byte-identical to its reference's: nothing was run)"
            if e.identical_files
            else ""
        )
        raise StoredRunError(
            f"--compare-to {given}: stored run {stored.run_id} holds no answers of "
            f"{contender}{why}; compare to another run"
        )
    problem = item_set_difference(record_items(stored.record), planned_items(settings, items))
    if problem is not None:
        raise RunsDiffer(
            f"--compare-to {given}: stored run {stored.run_id} was not run on the items of this "
            f"run (stored vs now: {problem}); pass the stored run's {_stored_flags(stored)}"
        )
    _check_complete(ref, settings, items, given)
    return ref

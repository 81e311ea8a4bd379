"""Two stored runs compared item by item, from their stored scores alone (no model is opened).

Run B against run A, one contender at a time: A's reference with B's reference, each candidate of
A with B's candidate of the same name (two runs of one candidate each: those two, whatever their
names), in every prompt mode -- the very paired comparisons :mod:`simonsca.compare` makes between
a reference and a candidate within a run (paired bootstrap CIs, McNemar, signed-rank), with A in
the place of the reference. Pairing is only honest on the same items, so first the two records'
items are checked -- the seeds each record holds, not just the settings that chose them -- and any
difference refuses in one line (:class:`~simonsca.errors.RunsDiffer`). The same check tells
whether a stored run can be a new run's reference (:mod:`.reference`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from simonsca.compare import (
    LikelihoodComparison,
    ModeComparison,
    compare_forced,
    compare_generation,
)
from simonsca.errors import RunsDiffer
from simonsca.models.base import ModelInfo
from simonsca.record import EvalRecord, Evaluation, label_of
from simonsca.runs.store import StoredRun
from simonsca.settings import Settings
from simonsca.tasks import Item

#: The roles of the models a run answered with (baselines and merge checks are not contenders).
CONTENDER_ROLES = ("reference", "candidate", "model")


@dataclass(frozen=True)
class SideComparison:
    """One contender in one prompt mode: run B minus run A."""

    label: str  # as shown: ``merged``, ``base (chat)``; ``A-name/B-name`` when the names differ
    role: str  # "reference", "candidate" or "model"
    prompt_mode: str
    a_name: str  # the contender's name in run A
    b_name: str  # ... and in run B
    a: ModelInfo
    b: ModelInfo
    generation: ModeComparison | None
    forced: ModeComparison | None
    likelihood: LikelihoodComparison | None

    @property
    def same_files(self) -> bool | None:
        """Both runs ran the very same files for this contender (the deltas then measure nothing
        but how repeatable the run is); None when one was not hashed (a served model)."""
        a, b = self.a, self.b
        if a.sha256 is None or b.sha256 is None:
            return None
        return (a.sha256, a.adapter_sha256) == (b.sha256, b.adapter_sha256)


@dataclass(frozen=True)
class RunComparison:
    """Run B against run A on the same items, contender by contender."""

    a: StoredRun
    b: StoredRun
    items: str  # the shared items, in one line
    alpha: float
    sides: tuple[SideComparison, ...]


# --------------------------------------------------------------------------- the items


@dataclass(frozen=True)
class ItemSet:
    """What a run's items are -- enough to tell whether two runs can be paired item by item.

    ``items`` holds, per item in order, (seed, family, generator, task, prompt, expected answer):
    the same settings with another item generator give other prompts or answers, and are caught.
    """

    family: str
    scoring: str
    prompt_mode: str
    generated: tuple[int, ...]  # the seeds answered greedily
    forced: tuple[int, ...]  # the seeds scored by teacher forcing
    items: tuple[tuple[int, str, str, str, str, str], ...]


#: The fields of :attr:`ItemSet.items` after the seed, as a difference names them.
_ITEM_FIELDS = ("family", "generator", "task", "prompt", "expected answer")


def scored_seeds(evaluation: Evaluation, forced: bool) -> tuple[int, ...]:
    """The items a model (not a baseline: those answer every item) answered greedily, or scored
    by teacher forcing."""
    models = {m.label for m in evaluation.models if m.kind == "model"}
    return tuple(
        i.seed for i in evaluation.items if models & set(i.forced if forced else i.answers)
    )


def record_items(record: EvalRecord) -> ItemSet:
    """The items a stored run holds (the seeds its models were scored on, not its settings)."""
    e = record.evaluation
    s = e.settings
    return ItemSet(
        s.eval_family,
        s.scoring,
        s.prompt_mode,
        scored_seeds(e, forced=False),
        scored_seeds(e, forced=True),
        tuple((i.seed, i.family, i.generator, i.task, i.prompt, i.expected) for i in e.items),
    )


def planned_items(settings: Settings, items: Sequence[Item]) -> ItemSet:
    """The items a new run will answer: its first ``eval_size`` greedily, its first
    ``forced_size`` by teacher forcing (as the suite does)."""
    s = settings
    seeds = tuple(item.seed for item in items)
    return ItemSet(
        s.eval_family,
        s.scoring,
        s.prompt_mode,
        seeds[: s.eval_size] if "generate" in s.scoring_modes else (),
        seeds[: s.forced_size] if "teacher-forced" in s.scoring_modes else (),
        tuple((i.seed, i.family, i.generator, i.task.value, i.prompt, i.output) for i in items),
    )


def _span(seeds: tuple[int, ...]) -> str:
    if len(seeds) < 2:
        return f"{len(seeds)} (seed {seeds[0]})" if seeds else "none"
    return f"{len(seeds)} (seeds {min(seeds)}-{max(seeds)})"


def item_set_difference(a: ItemSet, b: ItemSet) -> str | None:
    """What differs between two runs' items, as ``what A vs B`` (None: the same items, scored
    the same way): the family, scoring, prompt mode, first seed, the generated and the
    teacher-forced seeds (``--eval-size``, ``--forced-size``), then each item's content."""
    for what, in_a, in_b in (
        ("item family (--eval-family)", a.family, b.family),
        ("scoring (--scoring)", a.scoring, b.scoring),
        ("prompt mode (--prompt-mode)", a.prompt_mode, b.prompt_mode),
    ):
        if in_a != in_b:
            return f"{what} {in_a} vs {in_b}"
    first_a = a.items[0][0] if a.items else None
    first_b = b.items[0][0] if b.items else None
    if first_a != first_b:
        return f"first seed (--eval-seed) {first_a} vs {first_b}"
    for what, seeds_a, seeds_b in (
        ("generated items (--eval-size)", a.generated, b.generated),
        ("teacher-forced items (--forced-size)", a.forced, b.forced),
    ):
        if seeds_a != seeds_b:
            return f"{what} {_span(seeds_a)} vs {_span(seeds_b)}"
    # Only the items something was scored on must agree (a run builds max(sizes) items).
    used = set(a.generated) | set(a.forced)
    ours = [x for x in a.items if x[0] in used]
    theirs = [y for y in b.items if y[0] in used]
    used_a, used_b = tuple(x[0] for x in ours), tuple(y[0] for y in theirs)
    if used_a != used_b:
        return f"items {_span(used_a)} vs {_span(used_b)}"
    for x, y in zip(ours, theirs):
        for what, in_x, in_y in zip(_ITEM_FIELDS, x[1:], y[1:]):
            if in_x != in_y:
                return f"item {x[0]}: its {what} differs"
    return None


def items_difference(a: EvalRecord, b: EvalRecord) -> str | None:
    """What differs between the items of two stored runs (None: the same items, scored the same
    way); also the prompt each contender was sent, where both runs have it."""
    problem = item_set_difference(record_items(a), record_items(b))
    if problem is not None:
        return problem
    for x, y in zip(a.evaluation.items, b.evaluation.items):
        for label in sorted(set(x.answers) & set(y.answers)):
            if x.answers[label].prompt != y.answers[label].prompt:
                return f"item {x.seed}: the prompt sent to {label} differs (another chat template?)"
    return None


def shared_items(record: EvalRecord) -> str:
    """The items of a run in one line: ``2 generated and 4 teacher-forced v5-small items from
    seed 1000000, prompt mode raw``."""
    e = record.evaluation
    s = e.settings
    gen, forced = scored_seeds(e, False), scored_seeds(e, True)
    parts = [f"{len(gen)} generated"] if gen else []
    parts += [f"{len(forced)} teacher-forced"] if forced else []
    first = min(i.seed for i in e.items) if e.items else s.eval_seed
    return (
        f"{' and '.join(parts) or 'no'} {s.eval_family} items from seed {first}, "
        f"prompt mode {s.prompt_mode}"
    )


# --------------------------------------------------------------------------- the contenders


def contenders(record: EvalRecord) -> tuple[tuple[str, str], ...]:
    """A run's contenders as (name, role): its reference, then its candidates in order (a
    one-model run: its one model, role ``model``)."""
    e = record.evaluation
    out: list[tuple[str, str]] = []
    if e.reference is not None:
        out.append((e.reference, "reference"))
    out += [(c.name, "candidate") for c in e.candidates]
    for m in e.models:  # a one-model run, and any contender the lists above miss
        if m.kind == "model" and m.role in CONTENDER_ROLES and m.contender not in dict(out):
            out.append((m.contender, m.role))
    return tuple(out)


def _pairs(a: EvalRecord, b: EvalRecord) -> list[tuple[str, str, str]]:
    """(name in A, name in B, role): candidates first (in A's order), the reference last."""
    in_a, in_b = contenders(a), contenders(b)
    cands_a = [n for n, role in in_a if role != "reference"]
    cands_b = [n for n, role in in_b if role != "reference"]
    pairs = [(n, n, dict(in_a)[n]) for n in cands_a if n in cands_b]
    if not pairs and len(cands_a) == len(cands_b) == 1:  # one candidate each: those two
        pairs = [(cands_a[0], cands_b[0], dict(in_a)[cands_a[0]])]
    refs_a = [n for n, role in in_a if role == "reference"]
    refs_b = [n for n, role in in_b if role == "reference"]
    if refs_a and refs_b:
        pairs.append((refs_a[0], refs_b[0], "reference"))
    return pairs


def _names(record: EvalRecord) -> str:
    return ", ".join(n for n, _ in contenders(record)) or "none"


def compare_stored(a: StoredRun, b: StoredRun) -> RunComparison:
    """Run B minus run A for every contender both have; :class:`RunsDiffer` if the items
    differ or no contender pairs."""
    ra, rb = a.record, b.record
    problem = items_difference(ra, rb)
    if problem is not None:
        raise RunsDiffer(
            f"runs {ra.run_id} and {rb.run_id} were not run on the same items ({problem}); "
            "compare runs made with the same --eval-family, --eval-seed, --eval-size, "
            "--forced-size, --scoring and --prompt-mode"
        )
    pairs = _pairs(ra, rb)
    if not pairs:
        raise RunsDiffer(
            f"runs {ra.run_id} and {rb.run_id} have no contender in common (A: {_names(ra)}; "
            f"B: {_names(rb)}); candidates are paired by name"
        )
    alpha = min(ra.evaluation.settings.alpha, rb.evaluation.settings.alpha)
    infos_a = {m.label: m.info for m in ra.evaluation.models}
    infos_b = {m.label: m.info for m in rb.evaluation.models}
    primary = ra.evaluation.primary_mode
    sides = []
    for name_a, name_b, role in pairs:
        for mode in ra.evaluation.settings.prompt_modes:
            la, lb = label_of(name_a, mode, primary), label_of(name_b, mode, primary)
            if la not in infos_a or lb not in infos_b:
                continue
            gen_a, gen_b = ra.evaluation.generation_scores(la), rb.evaluation.generation_scores(lb)
            tf_a, tf_b = ra.evaluation.forced_scores(la), rb.evaluation.forced_scores(lb)
            shown = la if name_a == name_b else label_of(f"{name_a}/{name_b}", mode, primary)
            try:
                generation = (
                    compare_generation(gen_a, gen_b, alpha=alpha) if gen_a and gen_b else None
                )
                forced, likelihood = (
                    compare_forced(tf_a, tf_b, alpha=alpha) if tf_a and tf_b else (None, None)
                )
            except ValueError as error:  # scores of one run on other items than the other's
                raise RunsDiffer(f"runs {ra.run_id} and {rb.run_id}, {shown}: {error}") from None
            if generation is None and forced is None:
                continue  # nothing stored for it (its files were identical: nothing was run)
            sides.append(
                SideComparison(
                    shown,
                    role,
                    mode,
                    name_a,
                    name_b,
                    infos_a[la],
                    infos_b[lb],
                    generation,
                    forced,
                    likelihood,
                )
            )
    if not sides:
        raise RunsDiffer(
            f"runs {ra.run_id} and {rb.run_id} have no stored scores to pair (a run whose files "
            "were byte-identical stores none)"
        )
    return RunComparison(a, b, shared_items(ra), alpha, tuple(sides))

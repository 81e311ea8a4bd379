"""Two stored runs compared item by item, from their stored scores alone (no model is opened).

Run B against run A, one model side at a time (A's merged vs B's merged, A's base vs B's base):
the very paired comparisons :mod:`simonsca.compare` makes between base and merged within a run
(paired bootstrap CIs, McNemar, signed-rank), with A in the place of the base. Pairing is only
honest on the same items, so first the two records' items are checked -- the seeds each record
holds, not just the settings that chose them -- and any difference refuses in one line
(:class:`~simonsca.errors.RunsDiffer`).
"""

from __future__ import annotations

from dataclasses import dataclass

from simonsca.compare import (
    LikelihoodComparison,
    ModeComparison,
    compare_forced,
    compare_generation,
)
from simonsca.errors import RunsDiffer
from simonsca.models.base import ModelInfo
from simonsca.record import EvalRecord, Evaluation
from simonsca.runs.store import StoredRun


@dataclass(frozen=True)
class SideComparison:
    """One model side (``merged``, ``base``, ``merged (chat)``, ...): run B minus run A."""

    label: str
    a: ModelInfo
    b: ModelInfo
    generation: ModeComparison | None
    forced: ModeComparison | None
    likelihood: LikelihoodComparison | None

    @property
    def same_files(self) -> bool | None:
        """Both runs ran the very same files on this side (the deltas then measure nothing but
        how repeatable the run is); None when a side was not hashed (a served model)."""
        a, b = self.a, self.b
        if a.sha256 is None or b.sha256 is None:
            return None
        return (a.sha256, a.adapter_sha256) == (b.sha256, b.adapter_sha256)


@dataclass(frozen=True)
class RunComparison:
    """Run B against run A on the same items, side by side."""

    a: StoredRun
    b: StoredRun
    items: str  # the shared items, in one line
    alpha: float
    sides: tuple[SideComparison, ...]


def scored_seeds(evaluation: Evaluation, forced: bool) -> tuple[int, ...]:
    """The items a model (not a baseline: those answer every item) answered greedily, or scored
    by teacher forcing."""
    models = set(evaluation.labels("model"))
    return tuple(
        i.seed for i in evaluation.items if models & set(i.forced if forced else i.answers)
    )


def _span(seeds: tuple[int, ...]) -> str:
    if len(seeds) < 2:
        return f"{len(seeds)} (seed {seeds[0]})" if seeds else "none"
    return f"{len(seeds)} (seeds {min(seeds)}-{max(seeds)})"


def items_difference(a: EvalRecord, b: EvalRecord) -> str | None:
    """What differs between the items of two runs (None: the same items, scored the same way)."""
    sa, sb = a.evaluation.settings, b.evaluation.settings
    for what, in_a, in_b in (
        ("item family", sa.eval_family, sb.eval_family),
        ("scoring", sa.scoring, sb.scoring),
        ("prompt mode", sa.prompt_mode, sb.prompt_mode),
    ):
        if in_a != in_b:
            return f"{what} {in_a} vs {in_b}"
    for forced, what in ((False, "generated items"), (True, "teacher-forced items")):
        ga, gb = scored_seeds(a.evaluation, forced), scored_seeds(b.evaluation, forced)
        if ga != gb:
            return f"{what} {_span(ga)} vs {_span(gb)}"
    all_a = tuple(i.seed for i in a.evaluation.items)
    all_b = tuple(i.seed for i in b.evaluation.items)
    if all_a != all_b:
        return f"items {_span(all_a)} vs {_span(all_b)}"
    for x, y in zip(a.evaluation.items, b.evaluation.items):
        for what in ("family", "generator", "task", "prompt", "expected"):
            if getattr(x, what) != getattr(y, what):
                return f"item {x.seed}: its {what} differs"
        for label in set(x.answers) & set(y.answers):
            if x.answers[label].prompt != y.answers[label].prompt:
                return f"item {x.seed}: the prompt sent to {label} differs (another chat template?)"
    return None


def _shared_items(a: EvalRecord) -> str:
    s = a.evaluation.settings
    gen, forced = scored_seeds(a.evaluation, False), scored_seeds(a.evaluation, True)
    parts = [f"{len(gen)} generated"] if gen else []
    parts += [f"{len(forced)} teacher-forced"] if forced else []
    first = min(i.seed for i in a.evaluation.items) if a.evaluation.items else s.eval_seed
    return (
        f"{' and '.join(parts) or 'no'} {s.eval_family} items from seed {first}, "
        f"prompt mode {s.prompt_mode}"
    )


def compare_stored(a: StoredRun, b: StoredRun) -> RunComparison:
    """Run B minus run A on every model side both have; :class:`RunsDiffer` if the items differ."""
    ra, rb = a.record, b.record
    problem = items_difference(ra, rb)
    if problem is not None:
        raise RunsDiffer(
            f"runs {ra.run_id} and {rb.run_id} were not run on the same items ({problem}); "
            "compare runs made with the same --eval-family, --eval-seed, --eval-size, "
            "--forced-size, --scoring and --prompt-mode"
        )
    infos_b = {m.label: m.info for m in rb.evaluation.models if m.kind == "model"}
    labels = [m.label for m in ra.evaluation.models if m.kind == "model" and m.label in infos_b]
    labels.sort(key=lambda label: label.startswith("base"))  # the finetune's side first
    if not labels:
        raise RunsDiffer(f"runs {ra.run_id} and {rb.run_id} have no model side in common")
    alpha = min(ra.evaluation.settings.alpha, rb.evaluation.settings.alpha)
    infos_a = {m.label: m.info for m in ra.evaluation.models}
    sides = []
    for label in labels:
        gen_a, gen_b = (
            ra.evaluation.generation_scores(label),
            rb.evaluation.generation_scores(label),
        )
        tf_a, tf_b = ra.evaluation.forced_scores(label), rb.evaluation.forced_scores(label)
        try:
            generation = compare_generation(gen_a, gen_b, alpha=alpha) if gen_a and gen_b else None
            forced, likelihood = (
                compare_forced(tf_a, tf_b, alpha=alpha) if tf_a and tf_b else (None, None)
            )
        except ValueError as error:  # scores of one side on other items than the other's
            raise RunsDiffer(f"runs {ra.run_id} and {rb.run_id}, {label}: {error}") from None
        sides.append(
            SideComparison(label, infos_a[label], infos_b[label], generation, forced, likelihood)
        )
    return RunComparison(a, b, _shared_items(ra), alpha, tuple(sides))

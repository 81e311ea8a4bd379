"""The verdict for one prompt mode, read from the paired statistics of :mod:`simonsca.compare`.

The verdict, at ``alpha`` (0.05 unless configured):

1. ``IDENTICAL`` -- the model files are byte-identical (decided by the suite; nothing is run).
2. ``INERT`` -- the files differ but every answer is the base's, and (when teacher-forced scoring
   ran) the answer NLL is shown to have moved no more than numerical noise does: the CI of its
   mean change lies inside +- the noise floor (the largest per-item change that changes
   which mean nothing produce: scoring the base again with another grouping of tokens into decode
   calls, or with a random update of 1e-6 of its weights; see :mod:`simonsca.noise`). Where
   answers differ, they count as the base's when the two models find the base's answers equally
   likely: the CI of the mean change of those answers' NLL lies inside +- the noise floor too
   (a near-tie flipped). The update is too small to matter.
3. A *significant gain* in generation: the cell-accuracy CI lies entirely above 0, or McNemar
   ``p < alpha`` with more merged-only exact answers. A *significant loss* is the mirror image.
   In teacher-forced scoring: the teacher-forced cell-accuracy CI above 0, or the NLL CI below 0
   with signed-rank ``p < alpha`` (losses mirrored).
4. ``REGRESSED`` on any significant loss (the headline says "mixed" when there is a gain too: a
   gate must not let a trade-off through silently); ``IMPROVED`` on a gain and no loss;
   ``NO_EFFECT`` otherwise. The verdict is decided by generation when it ran, else by teacher
   forcing.
5. When the answers show no effect (``INERT`` excluded) but the right answers became
   significantly more (or less) likely beyond the noise floor, the headline says so: "learning
   under the surface".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from simonsca.compare import (
    DEFAULT_FAMILY_LIMIT,
    BaselineStanding,
    Delta,
    LikelihoodComparison,
    ModeComparison,
    NoiseFloor,
    Standing,
    compare_forced,
    compare_generation,
)
from simonsca.likelihood import ForcedScore
from simonsca.metrics import METRICS, PRIMARY
from simonsca.scoring import ItemScore
from simonsca.stats import DEFAULT_ALPHA, ci_label


class Verdict(str, enum.Enum):
    IDENTICAL = "identical"  # the model files are byte-identical: nothing was run
    INERT = "inert"  # files differ; answers (and log-probs, within noise) do not
    NO_EFFECT = "no_effect"  # answers differ, but no significant gain and no significant loss
    IMPROVED = "improved"
    REGRESSED = "regressed"

    def __str__(self) -> str:
        return self.value

    @property
    def word(self) -> str:
        """The verdict as shown to users: ``NO EFFECT``, ``IMPROVED``, ..."""
        return self.value.upper().replace("_", " ")


@dataclass(frozen=True)
class Comparison:
    """The verdict for one prompt mode, and the comparisons it was read from."""

    verdict: Verdict
    headline: str
    n: int
    alpha: float
    texts_identical: bool | None  # None: no generation ran
    generation: ModeComparison | None
    forced: ModeComparison | None
    likelihood: LikelihoodComparison | None
    under_surface: str | None = None
    # where answers differ: the larger end (absolute) of the CI of the mean NLL change of the
    # base's answers, base vs merged (None: not measured)
    flip_margin: float | None = None
    names: tuple[str, str] = ("base", "merged")  # the reference's and the candidate's

    @property
    def primary(self) -> ModeComparison:
        """The comparison the headline and the skill check read first (see :func:`_primary_of`)."""
        return _primary_of(self.generation, self.forced)[0]

    def delta(self, metric: str) -> Delta | None:
        for mode in (self.generation, self.forced):
            found = mode.delta(metric) if mode is not None else None
            if found is not None:
                return found
        if self.likelihood is not None and metric == "nll":
            return self.likelihood.delta
        return None

    @property
    def baseline(self) -> BaselineStanding | None:
        primary = self.primary
        return primary.baseline if primary is not None else None


def _primary_of(
    generation: ModeComparison | None, forced: ModeComparison | None
) -> tuple[ModeComparison, ModeComparison | None]:
    """The primary comparison and the other one. Teacher forcing is primary when it measured
    cells (it scores many more items for the time, so its interval is the narrowest, and it
    reads the rule without the answer format in the way); else generation."""
    if forced is not None and forced.delta(PRIMARY["teacher-forced"]) is not None:
        return forced, generation
    if generation is not None:
        return generation, forced
    if forced is not None:
        return forced, None
    raise ValueError("decide needs a generation or a teacher-forced comparison")


def _numbers(mode: ModeComparison, alpha: float) -> str:
    metric = PRIMARY[mode.scoring]
    d = mode.delta(metric) or mode.delta("nll")
    assert d is not None
    spec = METRICS[d.metric]
    exact = "exact" if mode.scoring == "generate" else "greedy-consistent exact"
    t = mode.exact_test
    return (
        f"{spec.label} {spec.value_text(d.base)} -> {spec.value_text(d.merged)} "
        f"(delta {spec.delta_text(d.diff)}, {ci_label(alpha)} {spec.delta_text(d.low)} to "
        f"{spec.delta_text(d.high)}); {exact} changed on {t.n} of {mode.n} items "
        f"(McNemar p={t.p:.3g})"
    )


def likelihood_line(
    lik: LikelihoodComparison,
    names: tuple[str, str] = ("base", "merged"),
    alpha: float = DEFAULT_ALPHA,
    *,
    with_noise: bool = True,
) -> str:
    """``likelihood: ...`` -- both answer NLLs, the paired delta with its CI, the test, and (with
    ``with_noise``) the reference's noise floor (:func:`noise_text`)."""
    d = lik.delta
    line = (
        f"answer NLL {names[0]} {d.base:.3f} -> {names[1]} {d.merged:.3f} nats/token (delta "
        f"{d.diff:+.3f}, {ci_label(alpha)} {d.low:+.3f} to {d.high:+.3f}, signed-rank p="
        f"{lik.signed_rank.p:.3g}, n={d.n})"
    )
    return f"{line}; {noise_text(lik.noise)}" if with_noise else line


def noise_text(noise: NoiseFloor | None) -> str:
    """The reference's noise floor in words (one per run: every candidate shares it)."""
    if noise is None:
        return "noise floor not measured"
    return f"noise floor {noise.item_nll:.4f} nats/token ({noise.method})"


def decide(
    *,
    n: int,
    texts_identical: bool | None,
    answers_within_noise: bool = False,
    flip_margin: float | None = None,
    generation: ModeComparison | None,
    forced: ModeComparison | None,
    likelihood: LikelihoodComparison | None,
    alpha: float = DEFAULT_ALPHA,
    names: tuple[str, str] = ("base", "merged"),
) -> Comparison:
    """The verdict and its headline from whatever ran (see the module doc for the rule);
    ``names``: the reference's and the candidate's, as the headline says them."""
    primary, secondary = _primary_of(generation, forced)
    under: str | None = None
    same_answers = texts_identical is True or answers_within_noise
    if generation is not None:
        inert = same_answers and (likelihood is None or likelihood.within_noise)
        inert = inert and (texts_identical is True or likelihood is not None)
    else:
        inert = likelihood is not None and likelihood.within_noise
    if inert:
        verdict = Verdict.INERT
        if likelihood is not None:
            answers = (
                "every answer is the base's"
                if texts_identical is not False
                else (
                    "the answers differ only at near-ties within the noise floor (the base's "
                    "answers are as likely to the merged model: their NLL moved by at most "
                    f"{flip_margin or 0.0:.2g} nats/token, 95% CI)"
                )
            )
            d = likelihood.delta
            headline = (
                f"inert: {answers}, and the answer NLL moved by {d.diff:+.4f} nats/token "
                f"({ci_label(alpha)} "
                f"{d.low:+.4f} to {d.high:+.4f}), inside the noise floor of "
                f"+-{likelihood.noise.item_nll if likelihood.noise else 0.0:.4f}: the finetune's "
                "update is too small to matter"
            )
        else:
            headline = (
                f"inert: all {n} answers are byte-identical to the base's (log-probabilities "
                "not measured: --scoring both tells an inert finetune from learning under the "
                "surface)"
            )
        return Comparison(
            verdict,
            headline,
            n,
            alpha,
            texts_identical,
            generation,
            forced,
            likelihood,
            flip_margin=flip_margin,
            names=names,
        )
    modes = [m for m in (primary, secondary) if m is not None]
    numbers = "; ".join(_numbers(m, alpha) for m in modes)
    gain = any(m.significant_gain for m in modes)
    loss = any(m.significant_loss for m in modes)
    if generation is not None and same_answers:
        # The answers did not change (or only at near-ties): whatever moved underneath is not
        # an effect on what the model writes.
        verdict = Verdict.NO_EFFECT
        what = "the answers are the base's"
        headline = f"no effect ({what}): " + numbers
    elif loss:
        verdict = Verdict.REGRESSED
        mixed = "regressed (mixed: a significant gain elsewhere): "
        headline = (mixed if gain else "regressed: ") + numbers
    elif gain:
        verdict = Verdict.IMPROVED
        headline = "improved: " + numbers
        if primary.baseline is not None and not primary.baseline.skill_shown:
            rule = "not the rule" if primary.baseline.standing is Standing.BELOW else "not shown"
            headline = (
                f"improved over base, but no skill beyond the trivial baselines ({rule}): "
                f"{primary.baseline.sentence(names[1])}; " + numbers
            )
    else:
        verdict = Verdict.NO_EFFECT
        headline = "no effect (answers differ): " + numbers
    if verdict is Verdict.NO_EFFECT and likelihood is not None and likelihood.significant:
        under = (
            f"learning under the surface: the right answers became significantly "
            f"{likelihood.direction} likely ({likelihood_line(likelihood, names, alpha)})"
            + ("; train longer" if likelihood.delta.diff < 0 else "")
        )
        headline = f"no effect on the answers -- {under}; " + numbers
    return Comparison(
        verdict,
        headline,
        n,
        alpha,
        texts_identical,
        generation,
        forced,
        likelihood,
        under,
        flip_margin,
        names,
    )


def compare_runs(
    *,
    base: Sequence[ItemScore] = (),
    merged: Sequence[ItemScore] = (),
    base_texts: Sequence[str] | None = None,
    merged_texts: Sequence[str] | None = None,
    baselines: Mapping[str, Sequence[ItemScore]] | None = None,
    base_forced: Sequence[ForcedScore] = (),
    merged_forced: Sequence[ForcedScore] = (),
    noise: NoiseFloor | None = None,
    flip_margin: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    names: tuple[str, str] = ("base", "merged"),
    family_limit: float = DEFAULT_FAMILY_LIMIT,
) -> Comparison:
    """Base vs merged from whatever was scored: greedy answers (``base``/``merged`` with their
    texts, in the same item order) and/or teacher-forced scores; ``baselines`` are the trivial
    baselines' greedy scores on at least the same items. ``flip_margin``: where the answers
    differ, how far the base's answers' NLL moved between the two models (the larger end of its
    CI; teacher forced, see the suite) -- within the noise floor, the answers count as equal."""
    bar = dict(baselines or {})
    generation: ModeComparison | None = None
    identical: bool | None = None
    if base:
        generation = compare_generation(
            base, merged, baselines=bar, alpha=alpha, family_limit=family_limit
        )
        if base_texts is not None and merged_texts is not None:
            if len(base_texts) != len(base) or len(merged_texts) != len(merged):
                raise ValueError("answer texts must be given in the same order as their scores")
            by_seed = {s.seed: t for s, t in zip(merged, merged_texts)}
            identical = all(by_seed[s.seed] == t for s, t in zip(base, base_texts))
    forced: ModeComparison | None = None
    likelihood: LikelihoodComparison | None = None
    if base_forced:
        seeds = {s.seed for s in base_forced}
        forced_bar = {name: [s for s in scores if s.seed in seeds] for name, scores in bar.items()}
        forced, likelihood = compare_forced(
            base_forced,
            merged_forced,
            baselines=forced_bar,
            noise=noise,
            alpha=alpha,
            family_limit=family_limit,
        )
    within = identical is True or (
        identical is False
        and flip_margin is not None
        and noise is not None
        and flip_margin <= noise.item_nll
    )
    return decide(
        n=len(base) or len(base_forced),
        texts_identical=identical,
        answers_within_noise=within,
        flip_margin=flip_margin,
        generation=generation,
        forced=forced,
        likelihood=likelihood,
        alpha=alpha,
        names=names,
    )

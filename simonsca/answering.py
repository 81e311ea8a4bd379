"""Every contender answers the items: greedy and teacher-forced, per prompt mode.

Models are loaded one at a time (an 8B user cannot hold two). Contenders that share one base
file -- the base itself and base + adapter for each checkpoint of a sweep -- share one load: the
adapters are swapped on the loaded model, so the base is loaded and answered once. The
reference's noise floor is measured while the reference is loaded (and cached with its answers).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from simonsca.cache import AnswerCache
from simonsca.compare import NoiseFloor
from simonsca.contenders import Contender
from simonsca.errors import ConfigError
from simonsca.models.base import AdapterSwapping, AnswerLikelihood, LikelihoodRequest, Model
from simonsca.models.open import open_model, opened
from simonsca.noise import noise_floor
from simonsca.plan import Plan
from simonsca.record import MergeCheck, label_of
from simonsca.runner import STOP, ForcedRun, GenerationRun, generate, teacher_force
from simonsca.settings import Settings
from simonsca.stats import paired_bootstrap

Say = Callable[[str], None]


def stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class Answers:
    """What the contenders answered, by label (a contender's name, ``name (chat)``)."""

    generation: dict[str, GenerationRun] = field(default_factory=dict)
    forced: dict[str, ForcedRun] = field(default_factory=dict)
    # label -> (role, contender): role "reference", "candidate" or "model"
    contenders: dict[str, tuple[str, Contender]] = field(default_factory=dict)
    # candidate label -> how far the NLL of the reference's answers moved, reference vs
    # candidate, where the two models' answers differ (see :func:`_largest_shift`)
    flips: dict[str, float] = field(default_factory=dict)
    noise: NoiseFloor | None = None
    merge_checks: list[MergeCheck] = field(default_factory=list)


def _groups(order: Sequence[tuple[str, Contender]]) -> list[list[tuple[str, Contender]]]:
    """Neighbours that run on the same base file (with or without an adapter) share one load."""
    groups: list[list[tuple[str, Contender]]] = []
    for role, c in order:
        last = groups[-1][-1][1].spec if groups else None
        shares = (
            last is not None and not c.spec.is_url and not last.is_url and c.spec.path == last.path
        )
        if shares:
            groups[-1].append((role, c))
        else:
            groups.append([(role, c)])
    return groups


def _say_loading(role: str, c: Contender, n: int, say: Say, *, swapped: bool) -> None:
    if swapped:
        say(
            f"simonsca: applying {c.spec.lora.name if c.spec.lora else 'no adapter'} to the "
            f"loaded model ({role} {c.name})"
        )
    elif role == "model":
        say(f"simonsca: loading the model {c.spec.label}")
    elif role == "reference" and c.name == "base":
        say(f"simonsca: loading base model {c.spec.label}")
    elif n == 1 and c.name == "merged":
        say(f"simonsca: loading merged model {c.spec.label}")
    else:
        say(f"simonsca: loading {role} {c.name}: {c.spec.label}")


def _swapped(model: Model, c: Contender) -> bool:
    """``model`` switched to ``c``'s adapter in place; False when its backend cannot (then it
    is loaded again)."""
    if not isinstance(model, AdapterSwapping):
        return False
    model.use_adapter(c.spec.lora)
    return True


def answer_all(p: Plan, cache: AnswerCache | None, say: Say = stderr) -> Answers:
    """Every contender's answers (reference first), the noise floor, the flips, merge checks."""
    s = p.settings
    out = Answers()
    primary = s.prompt_modes[0]
    roles = "model" if p.single else "candidate"
    order = ([("reference", p.reference)] if p.reference is not None else []) + [
        (roles, c) for c in p.candidates
    ]
    # candidate label -> the reference's differing answers, and the candidate's view of them
    shifts: dict[str, tuple[list[LikelihoodRequest], list[AnswerLikelihood]]] = {}
    n = len(p.candidates)
    for group in _groups(order):
        model: Model | None = None
        try:
            for role, c in group:
                if model is not None and _swapped(model, c):
                    _say_loading(role, c, n, say, swapped=True)
                else:
                    if model is not None:
                        model.close()
                    _say_loading(role, c, n, say, swapped=False)
                    model = open_model(c.spec, s)
                    _refuse_unsupported(model, s)
                _answer(model, role, c, p, cache, out)
                if role in ("reference", "model") and "teacher-forced" in s.scoring_modes:
                    out.noise = noise_floor(
                        model, p.items[: s.forced_size], out.forced[c.name], cache
                    )
                if role == "candidate" and "teacher-forced" in model.capabilities:
                    for mode in s.prompt_modes:
                        _flip_requests(out, p, c.name, mode, primary, model, shifts)
        finally:
            if model is not None:
                model.close()
    if shifts and p.reference is not None:
        # The reference's own view of the same answers: loaded once more, only in this
        # near-INERT case.
        with opened(p.reference.spec, s) as model:
            for label, (requests, view) in shifts.items():
                out.flips[label] = _largest_shift(_force(model, requests), view, s.alpha)
    out.merge_checks = _merge_checks(p, cache, out, say)
    return out


def _answer(
    model: Model, role: str, c: Contender, p: Plan, cache: AnswerCache | None, out: Answers
) -> None:
    s = p.settings
    primary = s.prompt_modes[0]
    for mode in s.prompt_modes:
        label = label_of(c.name, mode, primary)
        out.contenders[label] = (role, c)
        if "generate" in s.scoring_modes:
            out.generation[label] = _greedy(model, p, cache, mode, label)
        if "teacher-forced" in s.scoring_modes:
            out.forced[label] = teacher_force(
                model,
                p.items[: s.forced_size],
                prompt_mode=mode,
                cache=cache,
                progress=s.progress,
                label=label,
            )


def _greedy(
    model: Model, p: Plan, cache: AnswerCache | None, mode: str, label: str
) -> GenerationRun:
    """``model``'s greedy answers to the run's generated items, as the settings say."""
    s = p.settings
    return generate(
        model,
        p.items[: s.eval_size],
        prompt_mode=mode,
        cache=cache,
        progress=s.progress,
        early_stop=s.early_stop,
        label=label,
    )


def _flip_requests(
    out: Answers,
    p: Plan,
    name: str,
    mode: str,
    primary: str,
    model: Model,
    shifts: dict[str, tuple[list[LikelihoodRequest], list[AnswerLikelihood]]],
) -> None:
    if p.reference is None:
        return
    ref, cand = label_of(p.reference.name, mode, primary), label_of(name, mode, primary)
    if (
        ref in out.generation
        and cand in out.generation
        and _likelihood_within_noise(out, ref, cand, p.settings.alpha)
    ):
        requests = _differing_answers(out.generation[ref], out.generation[cand])
        shifts[cand] = (requests, _force(model, requests))


def _likelihood_within_noise(out: Answers, ref: str, cand: str, alpha: float) -> bool:
    """Whether the answer NLL moved no more than the noise floor: only then can the answers'
    flips decide between INERT and not (otherwise measuring them is wasted work)."""
    if out.noise is None or ref not in out.forced or cand not in out.forced:
        return False
    d = paired_bootstrap(
        [lik.nll for lik in out.forced[ref].likelihoods],
        [lik.nll for lik in out.forced[cand].likelihoods],
        confidence=1 - alpha,
    )
    return -out.noise.item_nll <= d.low and d.high <= out.noise.item_nll


def _differing_answers(ref: GenerationRun, cand: GenerationRun) -> list[LikelihoodRequest]:
    """The reference's greedy answers where the candidate answered otherwise, as
    teacher-forcing requests (with the stop when the answer ended on it)."""
    return [
        LikelihoodRequest(b.prompt, b.text, STOP[0] if b.finish_reason == "stop" else "")
        for b, m in zip(ref.predictions, cand.predictions)
        if b.text != m.text
    ]


def _force(model: Model, requests: Sequence[LikelihoodRequest]) -> list[AnswerLikelihood]:
    return [lik for _, lik in sorted(model.likelihood_many(requests), key=lambda x: x[0])]


def _largest_shift(
    ref: Sequence[AnswerLikelihood], cand: Sequence[AnswerLikelihood], alpha: float
) -> float:
    """Where the answers differ: how far the reference's own answers' NLL moved from the
    reference model to the candidate -- the larger end, in absolute value, of the (1 - alpha) CI
    of the mean change (0 when no answer differs). Inside the noise floor the two models find
    those answers equally likely, so they differ only where a near-tie flipped: the equivalence
    test the answer NLL gets, on the answers the models wrote. (A max over tokens would be
    compared with a max over other tokens: two extremes of one distribution, either larger half
    the time.)

    Both models score the same text with the same tokenizer; the tokens greedy decoding wrote can
    be others (a byte token for a character), so the reference's answers are scored again rather
    than compared with the candidate's top choices."""
    if not ref:
        return 0.0
    if any(b.token_ends != m.token_ends for b, m in zip(ref, cand)):
        return math.inf  # another tokenizer: the answers cannot be matched token by token
    d = paired_bootstrap([b.nll for b in ref], [m.nll for m in cand], confidence=1 - alpha)
    return max(abs(d.low), abs(d.high))


def _refuse_unsupported(model: Model, settings: Settings) -> None:
    missing = [m for m in settings.scoring_modes if m not in model.capabilities]
    if missing:
        raise ConfigError(
            f"{model.name} ({model.info.backend}) cannot do {' or '.join(missing)} scoring; "
            f"pass --scoring {'generate' if 'generate' in model.capabilities else 'teacher-forced'}"
        )


def _merge_checks(p: Plan, cache: AnswerCache | None, out: Answers, say: Say) -> list[MergeCheck]:
    """For each candidate merged from a known adapter: does the merged file answer like
    reference + that adapter applied at run time?"""
    s = p.settings
    checks = []
    for c in p.candidates:
        adapter = c.spec.built_from
        merged_run = out.generation.get(c.name)
        if adapter is None or p.reference is None or merged_run is None:
            continue
        say(f"simonsca: checking the merge -- base + {adapter.name} applied at run time")
        with opened(p.reference.spec, s, lora=adapter) as model:
            run = _greedy(model, p, cache, s.prompt_modes[0], "base + adapter")
        same = sum(a.text == b.text for a, b in zip(run.predictions, merged_run.predictions))
        checks.append(MergeCheck(c.name, adapter.name, same, len(run.predictions)))
    return checks

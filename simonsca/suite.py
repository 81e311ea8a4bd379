"""The evaluation ``pytest evals/``, ``simonsca compare`` and ``simonsca eval`` all run.

settings -> preflight (every file and folder checked before any model work) -> items -> answers
(greedy and teacher-forced, per model and prompt mode; baselines) -> scores (once) -> summaries
and comparisons -> findings -> checks -> one :class:`~simonsca.record.EvalRecord` -> reports.
Byte-identical model files are reported as ``IDENTICAL`` at once, without loading anything.
"""

from __future__ import annotations

import math
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from simonsca import dataset
from simonsca.cache import AnswerCache, open_cache
from simonsca.checks import evaluate_checks
from simonsca.compare import Comparison, NoiseFloor, compare_runs
from simonsca.errors import ConfigError, ContextTooSmall
from simonsca.forensics.findings import Finding, Severity
from simonsca.gguf_file import adapter_fit_problem, identical_files, open_gguf
from simonsca.likelihood import forced_score
from simonsca.metrics import FORCED_METRICS, GENERATION_METRICS
from simonsca.models import BASELINES
from simonsca.models.base import AnswerLikelihood, LikelihoodRequest, Model, ModelSpec
from simonsca.noise import noise_floor
from simonsca.record import (
    SCHEMA,
    Environment,
    EvalRecord,
    Evaluation,
    ItemRecord,
    MergeCheck,
    ModelEntry,
    answer_record,
    item_record,
    now_iso,
)
from simonsca.runner import (
    STOP,
    ForcedRun,
    GenerationRun,
    answer_baseline,
    generate,
    teacher_force,
)
from simonsca.settings import Settings
from simonsca.summary import summarize
from simonsca.tasks import Item

#: Finding code: the raw-format gain is not (or hardly) reachable through the chat template.
GAIN_LOST_IN_CHAT = "gain-only-in-raw-format"
Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class SuiteResult:
    """The record of one run, and where its reports were written."""

    record: EvalRecord
    report_dir: Path | None


@dataclass(frozen=True)
class Plan:
    """What a run will do, fixed (and checked) before any model work."""

    settings: Settings
    base: ModelSpec | None  # None for ``simonsca eval`` (one model)
    merged: ModelSpec
    items: tuple[Item, ...]
    run_id: str
    reports_dir: Path | None

    def describe(self) -> str:
        modes = "+".join(self.settings.prompt_modes)
        s = self.settings
        sizes = []
        if "generate" in s.scoring_modes:
            sizes.append(f"{s.eval_size} generated")
        if "teacher-forced" in s.scoring_modes:
            sizes.append(f"{s.forced_size} teacher-forced")
        who = (
            f"base={self.base.label} vs merged={self.merged.label}"
            if self.base is not None
            else f"model={self.merged.label}"
        )
        return (
            f"{who}; {' and '.join(sizes)} {s.eval_family} items from seed {s.eval_seed}; "
            f"prompt mode {modes}"
        )


# --------------------------------------------------------------------------- planning


def resolve_models(settings: Settings) -> tuple[ModelSpec, ModelSpec]:
    """Which two models to compare.

    * ``--base-model A --merged-model B``: A vs B (``--lora`` then applies to B at load);
    * ``--base-model A --lora L``: A vs A + L;
    * nothing: the built-in pair -- Gemma 3 270M base vs the merged positive control.
    """
    base, merged, lora = settings.base_model, settings.merged_model, settings.lora
    if base is None and merged is None and lora is None:
        from simonsca.default_models import default_pair

        return default_pair()
    if base is None:
        from simonsca.default_models import gemma_base_path

        base_spec = ModelSpec(gemma_base_path(), origin="built-in Gemma 3 270M base")
    else:
        base_spec = ModelSpec(_location(base))
    if merged is None:
        if lora is None:
            raise ConfigError("--base-model needs --merged-model or --lora to compare against")
        return base_spec, ModelSpec(base_spec.path, Path(lora), origin=base_spec.origin)
    built_from = Path(settings.merged_from_lora) if settings.merged_from_lora else None
    return base_spec, ModelSpec(
        _location(merged), Path(lora) if lora else None, built_from=built_from
    )


def _location(text: str) -> Path | str:
    """A served model's URL stays text; anything else is a file path."""
    return text if text.startswith(("http://", "https://")) else Path(text)


def make_run_id(created: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-<6 random hex>``: sortable by time, never the same twice."""
    created = created or datetime.now(UTC)
    return f"{created.astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def plan(settings: Settings, *, single: str | None = None) -> Plan:
    """Check everything the run will need, before any model work: model and adapter files (and
    that adapters fit their base, from the GGUF headers), context sizes against what the models
    were trained with, the reports folder, the run id; then build the items."""
    if single is not None:
        base = None
        merged = ModelSpec(_location(single), Path(settings.lora) if settings.lora else None)
    else:
        base, merged = resolve_models(settings)
    base = _with_gguf_adapters(base) if base is not None else None
    merged = _with_gguf_adapters(merged)
    for spec, side in ((base, "base"), (merged, "merged" if single is None else "")):
        if spec is not None:
            _preflight_model(spec, settings, side)
    reports_dir = _preflight_reports(settings)
    run_id = settings.run_id or make_run_id()
    if reports_dir is not None:
        from simonsca.report.files import claim_run

        claim_run(reports_dir, run_id)  # refused if its folder exists or a live run holds it
    items = tuple(
        dataset.eval_items(
            settings.n_items, settings.eval_seed, dataset.families(settings.eval_family)
        )
    )
    return Plan(settings, base, merged, items, run_id, reports_dir)


def _with_gguf_adapters(spec: ModelSpec) -> ModelSpec:
    """The one place a run takes adapters: each (PEFT or MLX folder, llama.cpp ``lora.bin`` or
    ``checkpoint-N.gguf``, or a GGUF LoRA) becomes a GGUF LoRA for the model it applies to
    (converted once and cached by content; see :mod:`simonsca.adapters`)."""
    if spec.is_url or (spec.lora is None and spec.built_from is None):
        return spec
    from simonsca.adapters import resolve_adapter

    assert isinstance(spec.path, Path)
    lora, built_from = (
        resolve_adapter(a, spec.path).gguf if a is not None else None
        for a in (spec.lora, spec.built_from)
    )
    return replace(spec, lora=lora, built_from=built_from)


def _preflight_model(spec: ModelSpec, settings: Settings, side: str) -> None:
    role = f"{side} model".strip()
    if spec.is_url:
        return  # checked when the server is first asked (it may be starting)
    assert isinstance(spec.path, Path)
    model = open_gguf(spec.path, role)
    if model.is_adapter:
        raise ConfigError(
            f"{role} file {spec.path} is a LoRA adapter, not a model; pass it with --lora"
        )
    trained = model.context_length
    if trained and settings.n_ctx > trained:
        raise ContextTooSmall(
            f"--n-ctx {settings.n_ctx} is larger than the {trained} tokens {spec.path.name} was "
            f"trained with; pass --n-ctx {trained} or less"
        )
    if "chat" in settings.prompt_modes:
        # Chat mode needs a template: the GGUF's own (compiled and tried on one message here, so
        # a malformed or runaway template is one line before any model work) or a fallback.
        from simonsca.models.llamacpp import FALLBACK_CHAT_TEMPLATES, ChatTemplate

        if model.chat_template is not None:
            ChatTemplate(model.chat_template, path=spec.path, bos="", eos="").render("SimonsCA1")
        elif settings.chat_template is None:
            raise ConfigError(
                f"{role} {spec.path} has no chat template, and --prompt-mode "
                f"{settings.prompt_mode} needs one; pass --chat-template "
                + "|".join(FALLBACK_CHAT_TEMPLATES)
            )
    for adapter, what in ((spec.lora, "adapter"), (spec.built_from, "source adapter")):
        if adapter is None:
            continue
        header = open_gguf(adapter, f"{side} {what}".strip())
        problem = adapter_fit_problem(model, header)
        if problem is not None:
            from simonsca.errors import AdapterMismatch

            raise AdapterMismatch(f"{what} {adapter} does not fit {role} {spec.path}: {problem}")


def _preflight_reports(settings: Settings) -> Path | None:
    if not settings.reports_dir:
        return None
    from simonsca.report.files import prepare_reports_dir

    return prepare_reports_dir(Path(settings.reports_dir).absolute())


# --------------------------------------------------------------------------- running models


def _load(spec: ModelSpec, settings: Settings, *, lora: Path | None = None) -> Model:
    adapter = lora if lora is not None else spec.lora
    if spec.is_url:
        from simonsca.models.served import open_served_model

        if adapter is not None:
            raise ConfigError(
                "--lora applies to GGUF files; for a served model name the adapter in the URL "
                "(URL#adapter-name)"
            )
        return open_served_model(
            str(spec.path),
            concurrency=settings.concurrency,
            timeout=settings.request_timeout,
            chat_template=settings.chat_template,
            n_ctx=settings.n_ctx,
        )
    from simonsca.models.llamacpp import LlamaCppModel

    return LlamaCppModel(
        spec.path,
        lora_path=adapter,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_gpu_layers=settings.n_gpu_layers,
        n_seq=settings.batch_size,
        chat_template=settings.chat_template,
    )


@contextmanager
def _loaded(spec: ModelSpec, settings: Settings, *, lora: Path | None = None) -> Iterator[Model]:
    model = _load(spec, settings, lora=lora)
    try:
        yield model
    finally:
        model.close()


@dataclass(frozen=True)
class _Runs:
    generation: dict[str, GenerationRun]  # label -> run
    forced: dict[str, ForcedRun]
    specs: dict[str, tuple[str, ModelSpec]]  # label -> (side, spec)
    # merged label -> how far the NLL of the base's answers moved, base vs merged, where the two
    # models' answers differ (see :func:`_largest_shift`)
    flips: dict[str, float]


def run_label(side: str, mode: str, primary: str) -> str:
    """``base``/``merged`` for the primary prompt mode, ``base (chat)`` etc. for the other."""
    return side if mode == primary else f"{side} ({mode})"


def _run_models(
    p: Plan, sides: Sequence[tuple[str, ModelSpec]], cache: AnswerCache | None, say: Say
) -> tuple[_Runs, NoiseFloor | None]:
    s = p.settings
    runs = _Runs({}, {}, {}, {})
    noise: NoiseFloor | None = None
    # merged label -> the base's differing answers, and the merged model's view of them
    shifts: dict[str, tuple[list[LikelihoodRequest], list[AnswerLikelihood]]] = {}
    primary = s.prompt_modes[0]
    gen_items = p.items[: s.eval_size]
    forced_items = p.items[: s.forced_size]
    for side, spec in sides:
        say(f"simonsca: loading {'the' if side == 'model' else side} model {spec.label}")
        with _loaded(spec, s) as model:
            _refuse_unsupported(model, s)
            for mode in s.prompt_modes:
                label = run_label(side, mode, primary)
                runs.specs[label] = (side, spec)
                if "generate" in s.scoring_modes:
                    runs.generation[label] = generate(
                        model,
                        gen_items,
                        prompt_mode=mode,
                        cache=cache,
                        progress=s.progress,
                        early_stop=s.early_stop,
                        label=label,
                    )
                if "teacher-forced" in s.scoring_modes:
                    runs.forced[label] = teacher_force(
                        model,
                        forced_items,
                        prompt_mode=mode,
                        cache=cache,
                        progress=s.progress,
                        label=label,
                    )
            if side in ("base", "model") and "teacher-forced" in s.scoring_modes:
                noise = noise_floor(model, forced_items, runs.forced[side], cache)
            if side == "merged" and "teacher-forced" in model.capabilities:
                for mode in s.prompt_modes:
                    base, merged = run_label("base", mode, primary), run_label(side, mode, primary)
                    if (
                        base in runs.generation
                        and merged in runs.generation
                        and _likelihood_within_noise(runs, base, merged, noise, s.alpha)
                    ):
                        requests = _differing_answers(
                            runs.generation[base], runs.generation[merged]
                        )
                        shifts[merged] = (requests, _force(model, requests))
    if shifts:
        # The base's own view of the same answers: loaded once more, only in this near-INERT case.
        base_spec = dict(sides)["base"]
        with _loaded(base_spec, s) as model:
            for merged, (requests, merged_view) in shifts.items():
                runs.flips[merged] = _largest_shift(_force(model, requests), merged_view, s.alpha)
    return runs, noise


def _likelihood_within_noise(
    runs: _Runs, base: str, merged: str, noise: NoiseFloor | None, alpha: float
) -> bool:
    """Whether the answer NLL moved no more than the noise floor: only then can the answers'
    flips decide between INERT and not (otherwise measuring them is wasted work)."""
    if noise is None or base not in runs.forced or merged not in runs.forced:
        return False
    from simonsca.stats import paired_bootstrap

    d = paired_bootstrap(
        [lik.nll for lik in runs.forced[base].likelihoods],
        [lik.nll for lik in runs.forced[merged].likelihoods],
        confidence=1 - alpha,
    )
    return -noise.item_nll <= d.low and d.high <= noise.item_nll


def _differing_answers(base: GenerationRun, merged: GenerationRun) -> list[LikelihoodRequest]:
    """The base's greedy answers where the merged model answered otherwise, as teacher-forcing
    requests (with the stop when the answer ended on it)."""
    return [
        LikelihoodRequest(b.prompt, b.text, STOP[0] if b.finish_reason == "stop" else "")
        for b, m in zip(base.predictions, merged.predictions)
        if b.text != m.text
    ]


def _force(model: Model, requests: Sequence[LikelihoodRequest]) -> list[AnswerLikelihood]:
    return [lik for _, lik in sorted(model.likelihood_many(requests), key=lambda x: x[0])]


def _largest_shift(
    base: Sequence[AnswerLikelihood], merged: Sequence[AnswerLikelihood], alpha: float
) -> float:
    """Where the answers differ: how far the base's own answers' NLL moved from the base model
    to the merged one -- the larger end, in absolute value, of the (1 - alpha) CI of the mean
    change (0 when no answer differs). Inside the noise floor the two models find those answers
    equally likely, so they differ only where a near-tie flipped: the equivalence test the answer
    NLL gets, on the answers the models wrote. (A max over tokens would be compared with a max
    over other tokens: two extremes of one distribution, either larger half the time.)

    Both models score the same text with the same tokenizer; the tokens greedy decoding wrote can
    be others (a byte token for a character), so the base's answers are scored again rather than
    compared with the merged model's top choices."""
    from simonsca.stats import paired_bootstrap

    if not base:
        return 0.0
    if any(b.token_ends != m.token_ends for b, m in zip(base, merged)):
        return math.inf  # another tokenizer: the answers cannot be matched token by token
    d = paired_bootstrap([b.nll for b in base], [m.nll for m in merged], confidence=1 - alpha)
    return max(abs(d.low), abs(d.high))


def _refuse_unsupported(model: Model, settings: Settings) -> None:
    missing = [m for m in settings.scoring_modes if m not in model.capabilities]
    if missing:
        raise ConfigError(
            f"{model.name} ({model.info.backend}) cannot do {' or '.join(missing)} scoring; "
            f"pass --scoring {'generate' if 'generate' in model.capabilities else 'teacher-forced'}"
        )


def _merge_check(
    p: Plan, cache: AnswerCache | None, merged_run: GenerationRun, say: Say
) -> MergeCheck | None:
    adapter = p.merged.built_from
    if adapter is None or p.base is None:
        return None
    say(f"simonsca: checking the merge -- base + {adapter.name} applied at run time")
    s = p.settings
    with _loaded(p.base, s, lora=adapter) as model:
        run = generate(
            model,
            p.items[: s.eval_size],
            prompt_mode=s.prompt_modes[0],
            cache=cache,
            progress=s.progress,
            early_stop=s.early_stop,
            label="base + adapter",
        )
    same = sum(a.text == b.text for a, b in zip(run.predictions, merged_run.predictions))
    return MergeCheck(adapter=adapter.name, identical=same, n=len(run.predictions))


# --------------------------------------------------------------------------- scoring, records


def _item_records(
    items: Sequence[Item],
    generation: Mapping[str, GenerationRun],
    forced: Mapping[str, ForcedRun],
) -> tuple[ItemRecord, ...]:
    out = []
    for k, item in enumerate(items):
        answers = {}
        for label, run in generation.items():
            if k < len(run.predictions):
                said = run.predictions[k]
                answers[label] = answer_record(
                    item,
                    said.text,
                    n_tokens=said.n_tokens,
                    finish_reason=said.finish_reason,
                    cached=said.cached,
                    prompt=None if said.prompt == item.prompt else said.prompt,
                )
        scores = {
            label: forced_score(item, run.likelihoods[k])
            for label, run in forced.items()
            if k < len(run.likelihoods)
        }
        out.append(item_record(item, answers, scores))
    return tuple(out)


def _model_entries(
    runs: _Runs, baselines: Mapping[str, GenerationRun], merge_run_label: str | None = None
) -> tuple[ModelEntry, ...]:
    entries = []
    labels = list(dict.fromkeys([*runs.generation, *runs.forced]))
    for label in labels:
        side, spec = runs.specs[label]
        gen = runs.generation.get(label)
        tf = runs.forced.get(label)
        info = (gen or tf).info  # type: ignore[union-attr]
        finish: dict[str, int] = {}
        for pred in gen.predictions if gen else ():
            finish[pred.finish_reason] = finish.get(pred.finish_reason, 0) + 1
        entries.append(
            ModelEntry(
                label=label,
                side=side,
                kind="model",
                prompt_mode=(gen or tf).prompt_mode.value,  # type: ignore[union-attr]
                info=info,
                origin=spec.origin,
                generation_seconds=gen.seconds if gen else 0.0,
                generation_items_per_second=gen.items_per_second if gen else None,
                n_answers=len(gen.predictions) if gen else 0,
                n_cached=sum(p.cached for p in gen.predictions) if gen else 0,
                n_generated_tokens=sum(p.n_tokens for p in gen.predictions) if gen else 0,
                finish_reasons=finish,
                forced_seconds=tf.seconds if tf else 0.0,
                forced_items_per_second=tf.items_per_second if tf else None,
                n_forced=len(tf.likelihoods) if tf else 0,
            )
        )
    for label, run in baselines.items():
        entries.append(
            ModelEntry(
                label=label,
                side="baseline",
                kind="baseline",
                prompt_mode=run.prompt_mode.value,
                info=run.info,
                n_answers=len(run.predictions),
                finish_reasons={"stop": len(run.predictions)},
            )
        )
    return tuple(entries)


def run_baselines(items: Sequence[Item]) -> dict[str, GenerationRun]:
    """Every trivial baseline (and the oracle) on ``items``: the bar the models are read
    against."""
    return {name: answer_baseline(cls(), items) for name, cls in BASELINES.items()}


def _compare_mode(
    items: Sequence[ItemRecord],
    base: str,
    merged: str,
    baselines: Sequence[str],
    noise: NoiseFloor | None,
    alpha: float,
    flip_margin: float | None,
) -> Comparison:
    answered = [i for i in items if base in i.answers]
    forced = [i for i in items if base in i.forced]
    return compare_runs(
        base=[i.answers[base].score for i in answered],
        merged=[i.answers[merged].score for i in answered],
        base_texts=[i.answers[base].text for i in answered],
        merged_texts=[i.answers[merged].text for i in answered],
        baselines={b: [i.answers[b].score for i in items] for b in baselines},
        base_forced=[i.forced[base] for i in forced],
        merged_forced=[i.forced[merged] for i in forced],
        noise=noise,
        flip_margin=flip_margin,
        alpha=alpha,
    )


def _findings(
    p: Plan, comparison: Comparison | None, files_identical: bool, say: Say
) -> tuple[Finding, ...]:
    """Causes, when the finetune changed nothing (forensics on the files)."""
    from simonsca.compare import Verdict

    if p.base is None or p.base.is_url or p.merged.is_url:
        return ()
    quiet = files_identical or (
        comparison is not None and comparison.verdict in (Verdict.INERT, Verdict.NO_EFFECT)
    )
    if not quiet:
        return ()
    from simonsca.forensics import explain_failure

    say("simonsca: looking for causes (weight diff, adapter vs quantisation step)")
    merged = p.merged.path if p.merged.path != p.base.path else None
    return explain_failure(base=p.base.path, merged=merged, adapter=p.merged.lora)


def _chat_finding(record: EvalRecord) -> Finding | None:
    outcome = record.check("gain_holds_in_chat_format")
    if not outcome.failed:
        return None
    return Finding(
        GAIN_LOST_IN_CHAT,
        Severity.WARNING,
        "the finetune's gain exists only in the raw training format",
        outcome.message,
        {},
    )


def evaluate_plan(p: Plan, *, say: Say = _stderr) -> EvalRecord:
    """Run a checked :class:`Plan` and judge it; the record of the run."""
    s = p.settings
    created = now_iso()
    cache = open_cache(s.cache)
    try:
        sides: list[tuple[str, ModelSpec]]
        if p.base is None:
            sides = [("model", p.merged)]
            same = False
        else:
            sides = [("base", p.base), ("merged", p.merged)]
            same = (
                not p.base.is_url
                and not p.merged.is_url
                and identical_files(p.base.path, p.merged.path, p.base.lora, p.merged.lora)
            )
        if same:
            say(
                "simonsca: base and merged files are byte-identical -- nothing to run "
                "(verdict: identical)"
            )
            runs, noise = _Runs({}, {}, {}, {}), None
        else:
            runs, noise = _run_models(p, sides, cache, say)
        merge_check = None
        if not same and "merged" in runs.generation:
            merge_check = _merge_check(p, cache, runs.generation["merged"], say)
    finally:
        if cache is not None:
            cache.close()

    baselines = run_baselines(p.items)
    items = _item_records(p.items, {**runs.generation, **baselines}, runs.forced)
    summaries = {
        label: summarize(
            [i.answers[label].score for i in items if label in i.answers], GENERATION_METRICS
        )
        for label in [*runs.generation, *baselines]
    }
    forced_summaries = {
        label: summarize([i.forced[label] for i in items if label in i.forced], FORCED_METRICS)
        for label in runs.forced
    }
    comparisons: dict[str, Comparison] = {}
    if p.base is not None and not same:
        primary = s.prompt_modes[0]
        for mode in s.prompt_modes:
            comparisons[mode] = _compare_mode(
                items,
                run_label("base", mode, primary),
                run_label("merged", mode, primary),
                list(baselines),
                noise,
                s.alpha,
                runs.flips.get(run_label("merged", mode, primary)),
            )
    comparison = comparisons.get(s.prompt_modes[0])
    findings = _findings(p, comparison, same, say)
    infos = [run.info for run in runs.generation.values()]
    infos += [run.info for run in runs.forced.values()]
    warnings = tuple(w for info in infos for w in info.caveats)
    evaluation = Evaluation(
        settings=s,
        compared=p.describe(),
        items=items,
        models=_model_entries(runs, baselines),
        summaries=summaries,
        forced_summaries=forced_summaries,
        comparisons=comparisons,
        files_identical=same,
        merge_check=merge_check,
        noise=noise,
        findings=findings,
        warnings=tuple(dict.fromkeys(warnings)),
    )
    record = EvalRecord(
        schema=SCHEMA,
        run_id=p.run_id,
        created=created,
        environment=Environment.current(),
        evaluation=evaluation,
        checks=evaluate_checks(evaluation),
    )
    chat = _chat_finding(record)
    if chat is not None:
        record = replace(record, evaluation=replace(evaluation, findings=(*findings, chat)))
    return record


def run_suite(settings: Settings, *, say: Say = _stderr, single: str | None = None) -> SuiteResult:
    """Plan, run, judge and write the reports: what ``pytest evals/`` and the CLI run."""
    checked = plan(settings, single=single)
    record = evaluate_plan(checked, say=say)
    report_dir = None
    if checked.reports_dir is not None:
        from simonsca.report import write_reports

        report_dir = write_reports(record, checked.reports_dir)
    return SuiteResult(record=record, report_dir=report_dir)

"""The base-vs-merged evaluation that ``pytest evals/`` and ``simonsca compare`` both run.

generate items -> run base, merged and the trivial baselines -> score -> compare -> report.
Byte-identical model files are reported as ``identical`` at once, without loading anything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simonsca import dataset
from simonsca.compare import (
    Comparison,
    Gate,
    Verdict,
    compare_scores,
    files_identical_comparison,
    identical_files,
)
from simonsca.errors import ConfigError
from simonsca.models import BASELINES, LlamaCppModel
from simonsca.models.base import ModelSpec
from simonsca.models.llamacpp import check_gguf
from simonsca.runner import ModelRun, evaluate
from simonsca.scoring import ItemScore, score_item
from simonsca.tasks import Item, PromptMode

#: Finding code: the raw-format gain is not (or hardly) reachable through the chat template.
GAIN_LOST_IN_CHAT = "gain-only-in-raw-format"

#: Settings read from ``[tool.simonsca]`` (and their command-line twins).
DEFAULTS: dict[str, Any] = {
    "eval_size": 24,
    "eval_seed": dataset.EVAL_SEED_START,
    "eval_family": "v5-small",
    "prompt_mode": "raw",
    "chat_template": None,
    "n_ctx": 2048,
    "n_threads": None,
    "n_gpu_layers": 0,
    "min_exact_gain": None,
    "min_cell_gain": None,
    "max_family_regression": 0.10,
    "min_parse_rate": None,
    "require_skill": False,
    "reports_dir": "reports",
    "min_merge_agreement": 0.9,
}


@dataclass(frozen=True)
class SuiteConfig:
    """Everything one evaluation depends on; same config + same files => same report."""

    base: ModelSpec
    merged: ModelSpec
    eval_size: int = DEFAULTS["eval_size"]
    eval_seed: int = DEFAULTS["eval_seed"]
    eval_family: str = DEFAULTS["eval_family"]
    prompt_modes: tuple[PromptMode, ...] = (PromptMode.RAW,)
    chat_template: str | None = None
    n_ctx: int = DEFAULTS["n_ctx"]
    n_threads: int | None = None
    n_gpu_layers: int = 0
    gate: Gate = field(default_factory=Gate)
    min_merge_agreement: float = DEFAULTS["min_merge_agreement"]
    min_parse_rate: float | None = None
    require_skill: bool = False
    reports_dir: Path | None = Path("reports")
    cache: bool = True
    progress: bool = True

    @property
    def primary_mode(self) -> PromptMode:
        return self.prompt_modes[0]

    def describe(self) -> str:
        """One line saying what is compared, for headers and reports."""
        modes = "+".join(m.value for m in self.prompt_modes)
        return (
            f"base={self.base.label} vs merged={self.merged.label}; {self.eval_size} "
            f"{self.eval_family} items from seed {self.eval_seed}; prompt mode {modes}"
        )


@dataclass(frozen=True)
class MergeCheck:
    """Does the merged file answer like base + the adapter it was built from?"""

    adapter: Path
    identical: int  # items whose answer texts are byte-identical
    n: int

    @property
    def agreement(self) -> float:
        return self.identical / self.n


@dataclass(frozen=True)
class SuiteResult:
    """What the evaluation found, per prompt mode, plus the written report."""

    config: SuiteConfig
    items: tuple[Item, ...]
    files_identical: bool
    runs: Mapping[str, ModelRun]  # "base", "merged", and "base (chat)" etc. for extra modes
    baselines: Mapping[str, ModelRun]
    scores: Mapping[str, tuple[ItemScore, ...]]
    comparisons: Mapping[PromptMode, Comparison]
    gate_failures: tuple[str, ...]
    report: Mapping[str, Any]
    report_dir: Path | None
    findings: tuple[Any, ...] = ()
    merge_check: MergeCheck | None = None

    @property
    def gain_lost_in_chat(self) -> Any:
        """The finding that the gain (mostly) disappears in the chat format, if it was made."""
        return next((f for f in self.findings if f.code == GAIN_LOST_IN_CHAT), None)

    @property
    def comparison(self) -> Comparison:
        return self.comparisons[self.config.primary_mode]


def run_label(side: str, mode: PromptMode, primary: PromptMode) -> str:
    """``base``/``merged`` for the primary prompt mode, ``base (chat)`` etc. for the other."""
    return side if mode is primary else f"{side} ({mode.value})"


def check_files(config: SuiteConfig) -> None:
    """Fail fast, with one line naming the file, before any model is loaded."""
    for spec, side in ((config.base, "base"), (config.merged, "merged")):
        check_gguf(spec.path, f"{side} model")
        if spec.lora is not None:
            check_gguf(spec.lora, f"{side} adapter")
        if spec.built_from is not None:
            check_gguf(spec.built_from, f"{side} model's source adapter")


def run_suite(
    config: SuiteConfig,
    *,
    on_stage: Callable[[str], None] | None = None,
) -> SuiteResult:
    """Evaluate base and merged on the same held-out items and compare them."""
    say = on_stage or (lambda message: print(message, file=sys.stderr))
    check_files(config)
    items = tuple(
        dataset.eval_items(config.eval_size, config.eval_seed, dataset.families(config.eval_family))
    )
    same = identical_files(
        config.base.path, config.merged.path, config.base.lora, config.merged.lora
    )

    runs: dict[str, ModelRun] = {}
    if same:
        say(
            "simonsca: base and merged files are byte-identical -- nothing to run (verdict: identical)"
        )
    else:
        for side, spec in (("base", config.base), ("merged", config.merged)):
            say(f"simonsca: loading {side} model {spec.label}")
            model = _load(config, spec.path, spec.lora)
            try:
                for mode in config.prompt_modes:
                    label = run_label(side, mode, config.primary_mode)
                    runs[label] = evaluate(
                        model, items, prompt_mode=mode, cache=config.cache, progress=config.progress
                    )
            finally:
                model.close()
    merge_check = None
    if not same and config.merged.built_from is not None:
        merge_check = _check_merge(config, items, runs["merged"], say)

    baselines = run_baselines(items)
    scores = {
        label: tuple(score_item(item, p.text) for item, p in zip(items, run.predictions))
        for label, run in {**runs, **baselines}.items()
    }
    trivial = {name: scores[name] for name in baselines}
    comparisons: dict[PromptMode, Comparison] = {}
    for mode in config.prompt_modes:
        b, m = (
            run_label("base", mode, config.primary_mode),
            run_label("merged", mode, config.primary_mode),
        )
        if same:
            comparisons[mode] = files_identical_comparison(
                len(items), max_family_regression=_family_limit(config.gate)
            )
            continue
        comparisons[mode] = compare_scores(
            scores[b],
            scores[m],
            base_texts=[p.text for p in runs[b].predictions],
            merged_texts=[p.text for p in runs[m].predictions],
            baselines=trivial,
            max_family_regression=_family_limit(config.gate),
        )

    primary = comparisons[config.primary_mode]
    failures = tuple(config.gate.check(primary))
    findings = _findings(config, comparisons, say)
    report = _build_report(config, items, runs, baselines, primary, comparisons, same)
    report["findings"] = [f.to_dict() for f in findings]
    if merge_check is not None:
        report["merge_check"] = {
            "adapter": str(merge_check.adapter),
            "identical": merge_check.identical,
            "n": merge_check.n,
        }
    report_dir = None
    if config.reports_dir is not None:
        from simonsca.report import write_reports

        report_dir = write_reports(report, config.reports_dir)
    return SuiteResult(
        config=config,
        items=items,
        files_identical=same,
        runs=runs,
        baselines=baselines,
        scores=scores,
        comparisons=comparisons,
        gate_failures=failures,
        report=report,
        report_dir=report_dir,
        findings=findings,
        merge_check=merge_check,
    )


def _load(config: SuiteConfig, path: Path, lora: Path | None) -> LlamaCppModel:
    return LlamaCppModel(
        path,
        lora_path=lora,
        n_ctx=config.n_ctx,
        n_threads=config.n_threads,
        n_gpu_layers=config.n_gpu_layers,
        chat_template=config.chat_template,
    )


def _check_merge(
    config: SuiteConfig, items: tuple[Item, ...], merged: ModelRun, say: Callable[[str], None]
) -> MergeCheck:
    adapter = config.merged.built_from
    assert adapter is not None
    say(f"simonsca: checking the merge -- base + {adapter.name} applied at run time")
    model = _load(config, config.base.path, adapter)
    try:
        run = evaluate(
            model,
            items,
            prompt_mode=config.primary_mode,
            cache=config.cache,
            progress=config.progress,
        )
    finally:
        model.close()
    same = sum(a.text == b.text for a, b in zip(run.predictions, merged.predictions))
    return MergeCheck(adapter=adapter, identical=same, n=len(items))


def _findings(
    config: SuiteConfig,
    comparisons: Mapping[PromptMode, Comparison],
    say: Callable[[str], None],
) -> tuple[Any, ...]:
    """Causes, when the finetune changed nothing (forensics) or only in one prompt format."""
    from simonsca.forensics import Finding, Severity, explain_failure

    found: list[Any] = []
    raw, chat = comparisons.get(PromptMode.RAW), comparisons.get(PromptMode.CHAT)
    if raw is not None and chat is not None and _gain_lost_in_chat(raw, chat):
        raw_d, chat_d = raw.delta("cell_accuracy"), chat.delta("cell_accuracy")
        found.append(
            Finding(
                GAIN_LOST_IN_CHAT,
                Severity.WARNING,
                "the finetune's gain is (mostly) lost in the chat format: cell accuracy "
                f"{_signed_pp(raw_d)} raw, {_signed_pp(chat_d)} chat ({chat.verdict.value})",
                "Chat apps (LM Studio, ...) wrap prompts in the chat template; the finetuned "
                "behaviour is only reachable with raw completion prompts.",
                {
                    "raw_cell_gain": raw_d.diff if raw_d else None,
                    "chat_cell_gain": chat_d.diff if chat_d else None,
                    "chat_verdict": chat.verdict.value,
                },
            )
        )
    if comparisons[config.primary_mode].verdict in (Verdict.IDENTICAL, Verdict.NO_EFFECT):
        say("simonsca: looking for causes (weight diff, adapter vs quantisation step)")
        base, merged = config.base, config.merged
        found.extend(
            explain_failure(
                base=base.path,
                merged=merged.path if merged.path != base.path else None,
                adapter=merged.lora,
            )
        )
    return tuple(found)


#: The chat-format gain must keep at least this share of the raw gain (cell accuracy).
CHAT_GAIN_SHARE = 0.5


def run_baselines(items: Sequence[Item]) -> dict[str, ModelRun]:
    """Every trivial baseline (and the oracle) on ``items``: the bar the models are read against."""
    return {
        name: evaluate(cls(), items, cache=False, progress=False) for name, cls in BASELINES.items()
    }


def _gain_lost_in_chat(raw: Comparison, chat: Comparison) -> bool:
    """Raw improved, but chat did not -- or kept less than half of the raw gain."""
    if raw.verdict is not Verdict.IMPROVED:
        return False
    if chat.verdict is not Verdict.IMPROVED:
        return True
    raw_d, chat_d = raw.delta("cell_accuracy"), chat.delta("cell_accuracy")
    return raw_d is not None and chat_d is not None and chat_d.diff < CHAT_GAIN_SHARE * raw_d.diff


def _signed_pp(delta: Any) -> str:
    return "n/a" if delta is None else f"{100 * delta.diff:+.1f} pp"


def evaluate_one(
    model_path: str | os.PathLike[str], settings: Mapping[str, Any]
) -> tuple[list[Item], dict[str, ModelRun], dict[str, ModelRun]]:
    """``simonsca eval``: one model (optionally + LoRA) and the baselines on the eval items."""
    s = {**DEFAULTS, **settings}
    lora = s.get("lora")
    check_gguf(model_path, "model")
    if lora:
        check_gguf(lora, "adapter")
    items = dataset.eval_items(
        _int(s, "eval_size", minimum=1),
        _int(s, "eval_seed", minimum=dataset.EVAL_SEED_START),
        dataset.families(str(s["eval_family"])),
    )
    model = LlamaCppModel(
        model_path,
        lora_path=lora,
        n_ctx=_int(s, "n_ctx", minimum=64),
        n_threads=s.get("n_threads"),
        n_gpu_layers=int(s.get("n_gpu_layers") or 0),
        chat_template=s.get("chat_template"),
    )
    runs: dict[str, ModelRun] = {}
    try:
        modes = prompt_modes(str(s["prompt_mode"]))
        for mode in modes:
            runs[run_label("model", mode, modes[0])] = evaluate(model, items, prompt_mode=mode)
    finally:
        model.close()
    baselines = run_baselines(items)
    return items, runs, baselines


def _family_limit(gate: Gate) -> float:
    limit = gate.max_family_regression
    return float(DEFAULTS["max_family_regression"] if limit is None else limit)


def _build_report(
    config: SuiteConfig,
    items: tuple[Item, ...],
    runs: Mapping[str, ModelRun],
    baselines: Mapping[str, ModelRun],
    primary: Comparison,
    comparisons: Mapping[PromptMode, Comparison],
    same: bool,
) -> dict[str, Any]:
    from simonsca.report import build_report

    report = build_report(
        list(items),
        runs,
        baselines=baselines,
        comparison=primary,
        gate=config.gate,
        files_identical=same,
    )
    report["compared"] = config.describe()
    report["models_compared"] = {
        side: {
            "path": str(spec.path),
            "lora": str(spec.lora) if spec.lora else None,
            "origin": spec.origin,
        }
        for side, spec in (("base", config.base), ("merged", config.merged))
    }
    report["comparisons_by_prompt_mode"] = {
        mode.value: comparison.to_dict() for mode, comparison in comparisons.items()
    }
    return report


# --- configuration ---------------------------------------------------------------------------


def read_pyproject_settings(root: Path) -> dict[str, Any]:
    """``[tool.simonsca]`` from ``root/pyproject.toml`` (empty when absent)."""
    import tomllib

    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    settings = data.get("tool", {}).get("simonsca", {})
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown [tool.simonsca] key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(DEFAULTS))}"
        )
    return dict(settings)


def prompt_modes(value: str) -> tuple[PromptMode, ...]:
    """``raw``, ``chat`` or ``both`` (raw first)."""
    if value == "both":
        return (PromptMode.RAW, PromptMode.CHAT)
    try:
        return (PromptMode(value),)
    except ValueError:
        raise ConfigError(f"prompt mode must be raw, chat or both, got {value!r}") from None


def resolve_models(
    base: str | os.PathLike[str] | None,
    merged: str | os.PathLike[str] | None,
    lora: str | os.PathLike[str] | None,
) -> tuple[ModelSpec, ModelSpec]:
    """Which two models to compare.

    * ``--base-model A --merged-model B``: A vs B (``--lora`` then applies to B at load).
    * ``--base-model A --lora L``: A vs A + L.
    * nothing: the built-in pair -- Gemma 3 270M base vs the merged positive control.
    """
    if base is None and merged is None and lora is None:
        from simonsca.default_models import default_pair

        return default_pair()
    if base is None:
        from simonsca.default_models import gemma_base_path

        base_spec = ModelSpec(gemma_base_path(), origin="built-in Gemma 3 270M base")
    else:
        base_spec = ModelSpec(Path(base))
    if merged is None:
        if lora is None:
            raise ConfigError("--base-model needs --merged-model or --lora to compare against")
        return base_spec, ModelSpec(base_spec.path, Path(lora), origin=base_spec.origin)
    return base_spec, ModelSpec(Path(merged), Path(lora) if lora else None)


def build_config(settings: Mapping[str, Any], **overrides: Any) -> SuiteConfig:
    """A :class:`SuiteConfig` from ``[tool.simonsca]`` settings and command-line overrides
    (``None`` overrides are ignored, so unset options fall back to the file, then defaults)."""
    merged = {**DEFAULTS, **settings, **{k: v for k, v in overrides.items() if v is not None}}
    base, other = resolve_models(
        merged.pop("base_model", None), merged.pop("merged_model", None), merged.pop("lora", None)
    )
    merged_from = merged.pop("merged_from_lora", None)
    if merged_from is not None:
        if other.lora is not None or other.path == base.path:
            raise ConfigError("--merged-from-lora needs --merged-model (a merged file to check)")
        other = replace(other, built_from=Path(merged_from))
    gate = Gate.from_mapping(merged)
    size = _int(merged, "eval_size", minimum=1)
    seed = _int(merged, "eval_seed", minimum=dataset.EVAL_SEED_START)
    dataset.families(str(merged["eval_family"]))  # validate the name early
    min_parse = merged.get("min_parse_rate")
    reports = merged.get("reports_dir")
    config = SuiteConfig(
        base=base,
        merged=other,
        eval_size=size,
        eval_seed=seed,
        eval_family=str(merged["eval_family"]),
        prompt_modes=prompt_modes(str(merged["prompt_mode"])),
        chat_template=merged.get("chat_template"),
        n_ctx=_int(merged, "n_ctx", minimum=64),
        n_threads=merged.get("n_threads"),
        n_gpu_layers=int(merged.get("n_gpu_layers") or 0),
        gate=gate,
        min_merge_agreement=float(merged["min_merge_agreement"]),
        min_parse_rate=None if min_parse is None else float(min_parse),
        require_skill=bool(merged.get("require_skill")),
        reports_dir=None if reports in (None, "", False) else Path(reports),
        cache=bool(merged.get("cache", True)),
        progress=bool(merged.get("progress", True)),
    )
    return config


def _int(settings: Mapping[str, Any], key: str, *, minimum: int) -> int:
    value = settings.get(key)
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {number}")
    return number

"""What a run will do, fixed and checked before any model work.

Every model and adapter file (and that adapters fit their base, from the GGUF headers), context
sizes against what the models were trained with, chat templates, a stored reference's items, the
reports folder and the run id are checked here, so a mistake is one line before anything loads.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from simonsca import dataset
from simonsca.contenders import REFERENCE, Contender, location, resolve_contenders
from simonsca.errors import ConfigError, ContextTooSmall
from simonsca.gguf_file import adapter_fit_problem, open_gguf
from simonsca.models.base import ModelSpec
from simonsca.settings import Settings
from simonsca.tasks import Item

if TYPE_CHECKING:
    from simonsca.runs.reference import StoredReference


@dataclass(frozen=True)
class Plan:
    """A checked run: the reference, the candidates, the items, where the reports go."""

    settings: Settings
    reference: Contender | None  # None: one model (``simonsca eval``) or a stored reference
    candidates: tuple[Contender, ...]  # a one-model run: its one model, named "model"
    items: tuple[Item, ...]
    run_id: str
    reports_dir: Path | None
    single: bool = False  # ``simonsca eval``: one model, nothing to compare
    stored: StoredReference | None = None  # ``--compare-to``: the reference is a stored run

    @property
    def reference_name(self) -> str | None:
        if self.stored is not None:
            return self.stored.name
        return self.reference.name if self.reference is not None else None

    def describe(self) -> str:
        modes = "+".join(self.settings.prompt_modes)
        s = self.settings
        sizes = []
        if "generate" in s.scoring_modes:
            sizes.append(f"{s.eval_size} generated")
        if "teacher-forced" in s.scoring_modes:
            sizes.append(f"{s.forced_size} teacher-forced")
        if self.single:
            who = f"model={self.candidates[0].spec.label}"
        else:
            ref = (
                f"stored run {self.stored.describe()}"
                if self.stored is not None
                else f"base={self.reference.spec.label}"  # type: ignore[union-attr]
            )
            if len(self.candidates) == 1 and self.candidates[0].name == "merged":
                who = f"{ref} vs merged={self.candidates[0].spec.label}"
            else:
                names = ", ".join(c.name for c in self.candidates)
                who = f"{ref} vs {len(self.candidates)} candidate(s): {names}"
        return (
            f"{who}; {' and '.join(sizes)} {s.eval_family} items from seed {s.eval_seed}; "
            f"prompt mode {modes}"
        )


def held_out_items(settings: Settings) -> tuple[Item, ...]:
    """The held-out items ``settings`` ask for (family, first seed, enough for every scoring)."""
    return tuple(
        dataset.eval_items(
            settings.n_items, settings.eval_seed, dataset.families(settings.eval_family)
        )
    )


def make_run_id(created: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-<6 random hex>``: sortable by time, never the same twice."""
    created = created or datetime.now(UTC)
    return f"{created.astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def plan(settings: Settings, *, single: str | None = None) -> Plan:
    """Check everything the run will need, before any model work, then build the items."""
    stored = None
    candidates: tuple[Contender, ...]
    if single is not None:
        spec = ModelSpec(location(single), Path(settings.lora[0]) if settings.lora else None)
        reference, candidates = None, (Contender("model", _with_gguf_adapters(spec)),)
    else:
        base, found = resolve_contenders(settings)
        reference = None if settings.compare_to else Contender(REFERENCE, base)
        candidates = tuple(replace(c, spec=_with_gguf_adapters(c.spec)) for c in found)
    if reference is not None:
        _preflight_model(reference.spec, settings, "base")
    for c in candidates:
        _preflight_model(c.spec, settings, "" if single else _role(c, len(candidates)))
    items = held_out_items(settings)
    if settings.compare_to is not None and single is None:
        from simonsca.runs.reference import load_reference

        stored = load_reference(settings, items)
        if any(c.name == stored.name for c in candidates):
            raise ConfigError(
                f"candidate name {stored.name!r} is the stored reference's: name the candidate "
                "with NAME=PATH"
            )
    reports_dir = _preflight_reports(settings)
    run_id = settings.run_id or make_run_id()
    if reports_dir is not None:
        from simonsca.report.files import claim_run

        claim_run(reports_dir, run_id)  # refused if its folder exists or a live run holds it
    return Plan(
        settings, reference, candidates, items, run_id, reports_dir, single is not None, stored
    )


def _role(c: Contender, n: int) -> str:
    return "merged" if n == 1 and c.name == "merged" else f"candidate {c.name}"


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
        from simonsca.models.chat_template import preflight_chat_template

        preflight_chat_template(
            spec.path, model.chat_template, settings.chat_template, settings.prompt_mode, role
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

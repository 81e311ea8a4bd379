"""Who a run compares: one reference (the base) and N named candidates.

Candidates come from ``--merged-model`` (GGUF files, folders of checkpoint GGUFs, server URLs)
or ``--lora`` (adapters in any format, or folders of adapter checkpoints, each applied to the
base), each optionally ``NAME=PATH``. A folder expands in step order. One candidate keeps the
name ``merged`` (the two-model run is the N = 1 case); several are named after their files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from simonsca.errors import ConfigError, ModelFileError
from simonsca.models.base import ModelSpec
from simonsca.options import split_name
from simonsca.settings import Settings

#: The reference's name when it is a model (a stored run's is its run id's).
REFERENCE = "base"
#: The one candidate's name when a run has one and the user did not name it.
ONE_CANDIDATE = "merged"
#: A checkpoint's step at the end of its name: ``checkpoint-20``, ``lora-ITER-50``, ``step_3``.
_STEP = re.compile(r".*?[-_](\d+)")
_SUFFIXES = (".gguf", ".bin", ".safetensors")


@dataclass(frozen=True)
class Contender:
    """A model a run answers with, by name; ``step``: its training step, when known."""

    name: str
    spec: ModelSpec
    step: int | None = None


@dataclass(frozen=True)
class _Entry:
    name: str | None  # given with NAME=PATH
    spec: ModelSpec
    step: int | None
    stem: str  # what names it when the user did not


def location(text: str) -> Path | str:
    """A served model's URL stays text; anything else is a file path."""
    return text if text.startswith(("http://", "https://")) else Path(text)


def _stem(path: Path | str) -> str:
    if isinstance(path, str):
        return path.rsplit("#", 1)[-1] if "#" in path else path.rstrip("/").rsplit("/", 1)[-1]
    name = path.name
    for suffix in _SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def _step(stem: str) -> int | None:
    m = _STEP.fullmatch(stem)
    return int(m.group(1)) if m else None


def _model_folder(folder: Path) -> list[tuple[int, Path]]:
    """The checkpoint GGUF models in ``folder`` (``checkpoint-10.gguf`` ...), by step."""
    from simonsca.gguf_file import open_gguf

    found = []
    for path in sorted(folder.glob("*.gguf")):
        step = _step(_stem(path))
        if step is not None and not open_gguf(path, "checkpoint").is_adapter:
            found.append((step, path))
    if not found:
        raise ConfigError(
            f"--merged-model {folder} is a folder with no numbered GGUF models (checkpoint-N.gguf); "
            "for a folder of adapter checkpoints pass --lora"
        )
    return sorted(found)


def _merged_entries(value: str, built_from: Path | None, base: ModelSpec) -> list[_Entry]:
    name, text = split_name(value)
    where = location(text)
    if isinstance(where, Path) and where.is_dir():
        if name is not None:
            raise ConfigError(
                f"--merged-model {value}: a folder of checkpoints cannot take one name"
            )
        # the reference's own file in the folder (an early checkpoint as the base) is the
        # reference, not a candidate
        return [
            _Entry(None, ModelSpec(p), step, _stem(p))
            for step, p in _model_folder(where)
            if not _same_file(p, base.path)
        ]
    return [
        _Entry(name, ModelSpec(where, built_from=built_from), _step(_stem(where)), _stem(where))
    ]


def _adapter_entries(value: str, target: ModelSpec) -> list[_Entry]:
    from simonsca.adapters import list_checkpoints
    from simonsca.adapters.detect import detect

    name, text = split_name(value)
    path = Path(text)
    if path.is_dir():
        try:
            detect(path)
        except ModelFileError:
            checkpoints = list_checkpoints(path)
            if not checkpoints:
                raise ConfigError(
                    f"--lora {path}: neither an adapter nor a folder of adapter checkpoints "
                    "(checkpoint-N/, NNNNNNN_adapters.safetensors, checkpoint-N.gguf)"
                ) from None
            if name is not None:
                raise ConfigError(f"--lora {value}: a folder of checkpoints cannot take one name")
            return [
                _Entry(None, replace(target, lora=c.path), c.step, _stem(c.path))
                for c in checkpoints
            ]
    return [_Entry(name, replace(target, lora=path), _step(_stem(path)), _stem(path))]


def _same_file(a: Path | str, b: Path | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return False
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _clean(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "candidate"


def _named(entries: list[_Entry], reserved: set[str]) -> tuple[Contender, ...]:
    """Names: as given; else ``merged`` for a lone candidate; else the file's name."""
    out: list[Contender] = []
    for e in entries:
        name = e.name or (ONE_CANDIDATE if len(entries) == 1 else _clean(e.stem))
        if name in reserved:
            raise ConfigError(
                f"candidate name {name!r} is taken (by the reference or a baseline): name it "
                "with NAME=PATH"
            )
        if any(c.name == name for c in out):
            raise ConfigError(f"two candidates are both named {name!r}: name them with NAME=PATH")
        out.append(Contender(name, e.spec, e.step))
    return tuple(out)


def resolve_contenders(settings: Settings) -> tuple[ModelSpec, tuple[Contender, ...]]:
    """The reference model and the candidates, in order.

    * nothing given: the built-in pair -- Gemma 3 270M base vs the merged positive control;
    * ``--merged-model`` (repeatable, folders expand): each file is a candidate; with exactly one
      merged model, ``--lora`` applies to it;
    * ``--lora`` without ``--merged-model`` (repeatable, folders expand): base + each adapter.
    """
    from simonsca.default_models import default_pair, gemma_base_path
    from simonsca.models import BASELINES

    s = settings
    if s.base_model is None and not s.merged_model and not s.lora:
        base, merged = default_pair()
        return base, (Contender(ONE_CANDIDATE, merged),)
    base = (
        ModelSpec(location(s.base_model))
        if s.base_model is not None
        else ModelSpec(gemma_base_path(), origin="built-in Gemma 3 270M base")
    )
    built_from = Path(s.merged_from_lora) if s.merged_from_lora else None
    entries: list[_Entry] = []
    for value in s.merged_model:
        entries += _merged_entries(value, built_from, base)
    if s.lora:
        if len(entries) == 1:
            target = entries[0].spec
            entries = [e for value in s.lora for e in _adapter_entries(value, target)]
        else:
            entries = [e for value in s.lora for e in _adapter_entries(value, base)]
    if not entries:
        raise ConfigError("--base-model needs --merged-model or --lora to compare against")
    return base, _named(entries, {REFERENCE, "model", *BASELINES})

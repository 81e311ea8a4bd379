"""Every setting, declared once: its ``[tool.simonsca]`` key, command-line flag, default, parser.

:class:`Settings` is the one table. Each field carries (in its metadata) the flag, help text and
the parser that turns a value from the command line or from ``pyproject.toml`` into its type --
one parser per kind, so ``0.9`` and ``90%`` mean the same rate everywhere. The pytest plugin and
the ``simonsca`` commands register their options from this table (as pytest-benchmark does for
its display options), so the two can never drift; :mod:`simonsca.checks` reads the thresholds.

Precedence: command line, then ``[tool.simonsca]``, then the default here. A bad value is a
:class:`~simonsca.errors.ConfigError` naming where it came from and what was expected -- before
any model is loaded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from simonsca.errors import ConfigError

#: Largest number of items one run may ask for (items are built in memory before any model runs;
#: 100,000 greedy answers of a 270M model take about two days on two CPU cores).
MAX_ITEMS = 100_000
#: Evaluation seeds start here (lower seeds are the v5 training items) and stay below this.
EVAL_SEED_START = 1_000_000
EVAL_SEED_END = 10**15

Group = Literal["models", "items", "backend", "checks", "output"]


# --------------------------------------------------------------------------- parsers
# Each takes the raw value (a string from the command line, or a TOML value) and returns the
# typed value or raises ValueError with what was expected.


def rate(value: Any) -> float:
    """A share between 0 and 1: ``0.9``, ``90%``."""
    number = _number(value, "a rate between 0 and 1 (e.g. 0.9 or 90%)")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"expected a rate between 0 and 1 (e.g. 0.9 or 90%), got {value!r}")
    return number


def gain(value: Any) -> float:
    """A change in a rate, between -1 and 1: ``0.05``, ``5%``, ``-2%``."""
    number = _number(value, "a gain between -1 and 1 (e.g. 0.05 or 5%)")
    if not -1.0 <= number <= 1.0:
        raise ValueError(f"expected a gain between -1 and 1 (e.g. 0.05 or 5%), got {value!r}")
    return number


def significance(value: Any) -> float:
    """A significance level, above 0 and at most 0.5: ``0.05``, ``5%``."""
    number = _number(value, "a significance level such as 0.05")
    if not 0.0 < number <= 0.5:
        raise ValueError(f"expected a significance level above 0 and at most 0.5, got {value!r}")
    return number


def _number(value: Any, expected: str) -> float:
    if isinstance(value, bool):  # a TOML true is not 1.0; parsers raise ValueError for all
        raise ValueError(f"expected {expected}, got {value!r}")  # noqa: TRY004
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"expected {expected}, got {value!r}") from None
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"expected {expected}, got {value!r}")
    return number


def integer(low: int, high: int) -> Callable[[Any], int]:
    """A whole number in ``[low, high]``."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        try:
            number = (
                int(str(value).strip().replace("_", "")) if not isinstance(value, int) else value
            )
        except ValueError:
            raise ValueError(
                f"expected a whole number from {low} to {high}, got {value!r}"
            ) from None
        if not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        return int(number)

    parse.__doc__ = f"A whole number from {low} to {high}."
    return parse


def choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return text

    parse.__doc__ = f"One of {', '.join(options)}."
    return parse


def text(value: Any) -> str:
    out = str(value)
    if not out.strip():
        raise ValueError("expected a non-empty value")
    return out


def model_ref(value: Any) -> str:
    """A GGUF path, or the URL of a served model (``http://host:port/v1#name``)."""
    out = str(value).strip()
    if not out:
        raise ValueError("expected a .gguf path or a server URL")
    return out


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def run_id(value: Any) -> str:
    out = str(value).strip()
    ok = out and all(ch.isalnum() or ch in "-_." for ch in out) and out not in (".", "..")
    if not ok or out == "latest":
        raise ValueError(
            f"expected a run id of letters, digits, '-', '_' and '.', not 'latest', got {value!r}"
        )
    return out


# --------------------------------------------------------------------------- the table


def setting(
    default: Any,
    parse: Callable[[Any], Any],
    help: str,
    *,
    group: Group,
    metavar: str | None = None,
    action: Literal["store_true", "store_false", "append"] | None = None,
    plugin_flag: str | None = None,
    cli: bool = True,
    pyproject: bool = True,
) -> Any:
    """A field of :class:`Settings` with its command-line face.

    ``action="append"`` makes a repeatable option: its value is a tuple, each element parsed by
    ``parse`` (in ``[tool.simonsca]`` one value or a list). ``plugin_flag`` renames the option under pytest where the plain flag is too generic to claim
    in every pytest run (the CLI accepts both spellings). ``cli=False`` keeps a setting off the
    ``simonsca`` commands (``pytest``-only); ``pyproject=False`` off ``[tool.simonsca]``.
    """
    return field(
        default=default,
        metadata={
            "parse": parse,
            "help": help,
            "group": group,
            "metavar": metavar,
            "action": action,
            "plugin_flag": plugin_flag,
            "cli": cli,
            "pyproject": pyproject,
        },
    )


@dataclass(frozen=True)
class Settings:
    # A field's help text says what its command-line flag does: for the flags that switch a
    # default off (``--no-cache``), what switching it off does.
    """What one evaluation depends on; the same settings + the same files => the same report."""

    # -- which models
    base_model: str | None = setting(
        None,
        model_ref,
        "base model: a GGUF file or a server URL (default: built-in Gemma 3 270M)",
        group="models",
        metavar="GGUF|URL",
    )
    merged_model: tuple[str, ...] = setting(
        (),
        model_ref,
        "a candidate: a finetuned (merged) GGUF file, a folder of checkpoint GGUFs (taken in "
        "step order) or a server URL; NAME=PATH names it; repeat for several candidates",
        group="models",
        metavar="GGUF|URL",
        action="append",
    )
    lora: tuple[str, ...] = setting(
        (),
        text,
        "an adapter applied at load (GGUF LoRA, PEFT or MLX folder, llama.cpp lora.bin or "
        "checkpoint-N.gguf), or a folder of adapter checkpoints (taken in step order); NAME=PATH "
        "names it. Without --merged-model each one is a candidate: base + adapter (repeat for "
        "several, all applied to one loaded base); with one --merged-model: applied to it",
        group="models",
        metavar="ADAPTER",
        action="append",
    )
    compare_to: str | None = setting(
        None,
        text,
        "a stored run (its folder, its report.json, or a run id under the reports folder) as "
        "the reference: the candidates are paired item by item with its stored answers, and "
        "no reference model is run",
        group="models",
        metavar="RUN",
    )
    merged_from_lora: str | None = setting(
        None,
        text,
        "the adapter merged into --merged-model (any format --lora takes): also run base + "
        "adapter and check the merged file answers the same",
        group="models",
        metavar="ADAPTER",
    )
    # -- which items and how they are put
    eval_size: int = setting(
        16,
        integer(1, MAX_ITEMS),
        "held-out items answered by greedy generation",
        group="items",
        metavar="N",
    )
    forced_size: int = setting(
        32,
        integer(1, MAX_ITEMS),
        "held-out items scored by teacher forcing (the first "
        "--eval-size of them are the generated ones)",
        group="items",
        metavar="N",
    )
    eval_seed: int = setting(
        EVAL_SEED_START,
        integer(EVAL_SEED_START, EVAL_SEED_END),
        f"first held-out seed (>= {EVAL_SEED_START:,}; lower seeds are training items)",
        group="items",
        metavar="S",
    )
    eval_family: str = setting(
        "v5-small",
        choice("v5-small", "v5", "next-small", "generalization"),
        "item family: v5-small (the seed's puzzles, sides 5-8), v5 (5-15), next-small, "
        "generalization",
        group="items",
        metavar="NAME",
    )
    scoring: str = setting(
        "both",
        choice("generate", "teacher-forced", "both"),
        "greedy answers, teacher-forced answer likelihood, or both",
        group="items",
        metavar="MODE",
    )
    prompt_mode: str = setting(
        "raw",
        choice("raw", "chat", "both"),
        "raw training text, the model's chat template (what chat apps send), or both",
        group="items",
        metavar="MODE",
    )
    early_stop: bool = setting(
        True,
        flag,
        "run every greedy answer to its token budget (default: stop it once it can no "
        "longer change its score)",
        group="items",
        action="store_false",
    )
    chat_template: str | None = setting(
        None,
        choice("gemma", "llama3", "chatml"),
        "fallback chat template for a model without one: gemma, llama3 or chatml",
        group="items",
        metavar="NAME",
    )
    # -- how models run
    n_ctx: int = setting(
        2048,
        # Generous on purpose: the real limit is the model's own (checked against its GGUF
        # before loading, with that number in the message); this bound only stops the absurd.
        integer(64, 1 << 27),
        "context window per sequence, in tokens",
        group="backend",
        metavar="N",
    )
    n_threads: int | None = setting(
        None,
        integer(1, 1024),
        "CPU threads for llama.cpp (default: all cores)",
        group="backend",
        metavar="N",
    )
    n_gpu_layers: int | None = setting(
        None,
        integer(-1, 100_000),
        "layers offloaded to a GPU (default: all where the "
        "llama.cpp build has GPU support, else 0; -1 = all)",
        group="backend",
        metavar="N",
    )
    batch_size: int = setting(
        1,
        integer(1, 256),
        "sequences llama.cpp decodes together (answers can differ from "
        "batch size 1 in near-ties; part of the cache key)",
        group="backend",
        metavar="N",
    )
    concurrency: int | None = setting(
        None,
        integer(1, 1024),
        "requests in flight to a model server (default: its slots)",
        group="backend",
        metavar="N",
    )
    request_timeout: float = setting(
        600.0,
        lambda v: float(integer(1, 86_400)(v)),
        "seconds to wait for one server answer",
        group="backend",
        metavar="S",
    )
    cache: bool = setting(
        True,
        flag,
        "neither read nor write cached answers ($SIMONSCA_CACHE, default ~/.cache/simonsca)",
        group="backend",
        action="store_false",
        plugin_flag="--no-simonsca-cache",
    )
    # -- what passes
    min_exact_gain: float | None = setting(
        None,
        gain,
        "fail unless merged - base exact match >= X (0.05 or 5%%)",
        group="checks",
        metavar="X",
    )
    min_cell_gain: float | None = setting(
        None,
        gain,
        "fail unless merged - base cell accuracy >= X",
        group="checks",
        metavar="X",
    )
    max_family_regression: float = setting(
        0.10,
        rate,
        "fail when one family's cell accuracy drops by more than X",
        group="checks",
        metavar="X",
    )
    min_parse_rate: float | None = setting(
        None,
        rate,
        "fail when a smaller share of the merged answers parses",
        group="checks",
        metavar="X",
    )
    require_skill: bool = setting(
        False,
        flag,
        "fail (not xfail) when the merged model shows no skill beyond the trivial baselines",
        group="checks",
        action="store_true",
    )
    min_merge_agreement: float = setting(
        0.9,
        rate,
        "with --merged-from-lora: the share of items where the merged file must "
        "answer exactly like base + adapter",
        group="checks",
        metavar="X",
    )
    min_chat_gain_share: float = setting(
        0.5,
        rate,
        "with --prompt-mode both: the share of the raw cell-accuracy gain the chat "
        "format must keep",
        group="checks",
        metavar="X",
    )
    max_drop_vs_stored: float | None = setting(
        None,
        rate,
        "with --compare-to: fail when a candidate's primary cell accuracy is lower than the "
        "stored run's by more than X (0.02 or 2%%)",
        group="checks",
        metavar="X",
    )
    alpha: float = setting(
        0.05,
        significance,
        "significance level of every test and (1 - alpha) CI",
        group="checks",
        metavar="A",
    )
    correction: str = setting(
        "holm",
        choice("holm", "bonferroni", "none"),
        "how verdicts control false positives across several candidates: holm (step-down), "
        "bonferroni (alpha / N each) or none (each candidate at alpha)",
        group="checks",
        metavar="METHOD",
    )
    # -- where results go
    reports_dir: str | None = setting(
        "reports",
        text,
        "where reports go (a folder per run, and latest/)",
        group="output",
        metavar="DIR",
        plugin_flag="--simonsca-reports-dir",
    )
    run_id: str | None = setting(
        None,
        run_id,
        "name of this run's report folder (default: UTC time + a unique suffix)",
        group="output",
        metavar="ID",
        plugin_flag="--simonsca-run-id",
        pyproject=False,
    )
    progress: bool = setting(
        True,
        flag,
        "hide the progress bars (items done, rate, ETA)",
        group="output",
        action="store_false",
        plugin_flag="--no-simonsca-progress",
        pyproject=False,
    )

    @property
    def scoring_modes(self) -> tuple[str, ...]:
        return ("generate", "teacher-forced") if self.scoring == "both" else (self.scoring,)

    @property
    def prompt_modes(self) -> tuple[str, ...]:
        return ("raw", "chat") if self.prompt_mode == "both" else (self.prompt_mode,)

    @property
    def n_items(self) -> int:
        """Items built: enough for every scoring mode that runs."""
        sizes = [self.eval_size] if "generate" in self.scoring_modes else []
        if "teacher-forced" in self.scoring_modes:
            sizes.append(self.forced_size)
        return max(sizes)


@dataclass(frozen=True)
class Option:
    """How one setting appears on a command line."""

    key: str
    flag: str  # the CLI flag
    plugin_flag: str  # the pytest flag (the same unless too generic)
    default: Any
    parse: Callable[[Any], Any]
    help: str
    group: Group
    metavar: str | None
    action: str | None
    cli: bool
    pyproject: bool


def options() -> tuple[Option, ...]:
    """Every setting as a command-line option, in declaration order."""
    out = []
    for f in dataclasses.fields(Settings):
        meta = f.metadata
        flag_ = "--" + f.name.replace("_", "-")
        if meta["action"] == "store_false":
            flag_ = "--no-" + f.name.replace("_", "-")
        out.append(
            Option(
                key=f.name,
                flag=flag_,
                plugin_flag=meta["plugin_flag"] or flag_,
                default=f.default,
                parse=meta["parse"],
                help=meta["help"],
                group=meta["group"],
                metavar=meta["metavar"],
                action=meta["action"],
                cli=meta["cli"],
                pyproject=meta["pyproject"],
            )
        )
    return tuple(out)


def add_options(add: Callable[..., Any], groups: Iterable[Group], *, plugin: bool) -> None:
    """Register the settings of ``groups`` with an argparse ``add_argument`` or a pytest
    ``addoption``. Values stay raw (``dest`` = the key, default ``None``): :func:`resolve`
    parses them, with those from ``pyproject.toml``, through the same parser."""
    wanted = set(groups)
    for opt in options():
        if opt.group not in wanted or (not plugin and not opt.cli):
            continue
        names = [opt.plugin_flag] if plugin else list(dict.fromkeys([opt.flag, opt.plugin_flag]))
        kwargs: dict[str, Any] = {"dest": dest(opt.key), "default": None, "help": opt.help}
        if opt.action is not None:
            kwargs["action"] = opt.action
        if opt.action in (None, "append"):
            kwargs["metavar"] = opt.metavar
        add(*names, **kwargs)


def dest(key: str) -> str:
    """The argparse/pytest destination of a setting (prefixed: pytest shares one namespace)."""
    return f"simonsca_{key}"


#: Settings whose value is a path: a relative one in ``[tool.simonsca]`` is read from the folder
#: of the pyproject.toml that holds it (as it is on the command line from the current folder).
PATH_KEYS = frozenset(
    {"base_model", "merged_model", "lora", "merged_from_lora", "compare_to", "reports_dir"}
)


def find_pyproject(start: Path) -> Path | None:
    """The project's ``pyproject.toml``: the nearest one in ``start`` or a folder above it.

    The one rule both faces use (``simonsca`` and ``pytest``, each from the current folder, never
    from pytest's rootdir, which follows the paths on its command line and can be ``/``): the
    nearest file wins even when it has no ``[tool.simonsca]`` (it is the project's)."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_pyproject(start: Path) -> dict[str, Any]:
    """``[tool.simonsca]`` of :func:`find_pyproject` from ``start`` (empty when there is none),
    keys checked; each value paired with where it came from."""
    import tomllib

    path = find_pyproject(start.absolute())
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
    table = data.get("tool", {}).get("simonsca", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.simonsca] must be a table")
    known = {o.key for o in options() if o.pyproject}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown [tool.simonsca] key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    return {
        key: (
            _from_folder(path.parent, value)
            if key in PATH_KEYS and (key != "compare_to" or _is_path(path.parent, value))
            else value,
            f"{path} [tool.simonsca] {key}",
        )
        for key, value in table.items()
    }


def _is_path(folder: Path, value: Any) -> bool:
    """``--compare-to`` takes a run id or a path: rebased only when it names a path that exists
    (a run id stays an id)."""
    if not isinstance(value, str) or not value:
        return False
    run = value.rpartition(":")[0] if ":" in value else value
    return (folder / value).exists() or bool(run) and (folder / run).exists()


def _from_folder(folder: Path, value: Any) -> Any:
    """A relative path read from ``folder`` (each of a list; the PATH of ``NAME=PATH``); URLs,
    absolute paths and non-strings as they are."""
    if isinstance(value, list):
        return [_from_folder(folder, v) for v in value]
    if not isinstance(value, str) or not value or value.startswith(("http://", "https://")):
        return value
    name, path = split_name(value)
    if Path(path).is_absolute():
        return value
    return (f"{name}=" if name else "") + str(folder / path)


def split_name(value: str) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); anything else (a path, a URL) -> (None, value). A name is
    letters, digits, '-', '_' and '.'; a path with '=' in it stays a path when it exists."""
    name, sep, rest = value.partition("=")
    plain = all(ch.isalnum() or ch in "-_." for ch in name)
    if not sep or not name or not rest or not plain or Path(value).exists():
        return None, value
    return name, rest


def resolve(
    command_line: Mapping[str, Any],
    pyproject: Mapping[str, tuple[Any, str]] | None = None,
) -> Settings:
    """Settings from raw command-line values (``None`` = not given) over ``[tool.simonsca]``
    values (each with where it came from) over the defaults; every value parsed once, here."""
    flags = {o.key: o for o in options()}
    values: dict[str, Any] = {}
    for key, (raw, where) in (pyproject or {}).items():
        values[key] = _parse(flags[key], raw, where)
    for key, raw in command_line.items():
        if raw is None or (opt_action(flags, key) == "append" and not raw):
            continue
        if key not in flags:
            raise ConfigError(f"unknown setting {key!r}")
        opt = flags[key]
        values[key] = (
            raw
            if opt.action in ("store_true", "store_false") and isinstance(raw, bool)
            else _parse(opt, raw, opt.flag)
        )
    settings = Settings(**values)
    _cross_check(settings)
    return settings


def opt_action(flags: Mapping[str, Option], key: str) -> str | None:
    opt = flags.get(key)
    return opt.action if opt is not None else None


def _parse(opt: Option, raw: Any, where: str) -> Any:
    if raw is None:
        return None
    try:
        if opt.action == "append":
            values = raw if isinstance(raw, (list, tuple)) else [raw]
            return tuple(opt.parse(v) for v in values)
        return opt.parse(raw)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def _cross_check(s: Settings) -> None:
    """Combinations no single parser can see."""
    if s.eval_seed + s.n_items > EVAL_SEED_END:
        raise ConfigError(
            f"--eval-seed {s.eval_seed} + {s.n_items} items runs past the last held-out seed "
            f"{EVAL_SEED_END:,}"
        )
    if s.merged_from_lora is not None and len(s.merged_model) != 1:
        raise ConfigError(
            "--merged-from-lora needs --merged-model (the one merged file to check)"
            if not s.merged_model
            else "--merged-from-lora names the adapter of one merged file; it cannot apply to "
            f"{len(s.merged_model)} --merged-model candidates"
        )
    if s.base_model is not None and not s.merged_model and not s.lora and s.compare_to is None:
        raise ConfigError("--base-model needs --merged-model or --lora to compare against")
    if len(s.merged_model) > 1 and s.lora:
        raise ConfigError(
            f"--lora with {len(s.merged_model)} --merged-model candidates is ambiguous: pass "
            "adapters without --merged-model (each is base + adapter), or one --merged-model"
        )
    if s.max_drop_vs_stored is not None and s.compare_to is None:
        raise ConfigError("--max-drop-vs-stored needs --compare-to (the stored run to compare)")

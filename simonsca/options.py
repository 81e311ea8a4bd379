"""How the settings meet command lines and ``pyproject.toml``.

The pytest plugin and the ``simonsca`` commands register their options from the one table
(:class:`~simonsca.settings.Settings`) through :func:`add_options`, and :func:`resolve` turns
what was given into settings.

Precedence: command line, then ``[tool.simonsca]``, then the default in the table. A bad value is
a :class:`~simonsca.errors.ConfigError` naming where it came from and what was expected -- before
any model is loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simonsca.errors import ConfigError
from simonsca.settings import EVAL_SEED_END, Group, Settings


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
    if s.eval_seed + s.n_items * (2 if s.confirm_best else 1) > EVAL_SEED_END:
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
    if s.confirm_best and s.compare_to is not None:
        raise ConfigError(
            "--confirm-best answers the reference on fresh items, and a stored run (--compare-to) "
            "cannot answer new items; confirm against the base instead"
        )
    if s.max_drop_vs_stored is not None and s.compare_to is None:
        raise ConfigError("--max-drop-vs-stored needs --compare-to (the stored run to compare)")

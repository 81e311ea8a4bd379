"""The one settings table: parsing, precedence, errors naming their source, and the CLI and the
pytest plugin reading the same options."""

from __future__ import annotations

from pathlib import Path

import pytest

from simonsca import options, settings
from simonsca.errors import ConfigError


def test_command_line_overrides_pyproject_overrides_defaults(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.simonsca]\neval_size = 10\nmin_cell_gain = '5%'\nprompt_mode = 'both'\n"
    )
    s = options.resolve(
        {"eval_size": "3", "min_exact_gain": None}, options.read_pyproject(tmp_path)
    )
    assert s.eval_size == 3
    assert s.min_cell_gain == pytest.approx(0.05)
    assert s.min_exact_gain is None
    assert s.prompt_modes == ("raw", "chat")
    assert s.forced_size == settings.Settings().forced_size


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("min_parse_rate", "90%"),
        ("min_parse_rate", "0.9"),
        ("min_parse_rate", 0.9),
        ("max_family_regression", "10%"),
        ("min_merge_agreement", "90 %"),
    ],
)
def test_one_parser_for_every_rate(key: str, value: object) -> None:
    s = options.resolve({key: value})
    assert getattr(s, key) == pytest.approx(0.9 if "parse" in key or "merge" in key else 0.1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"eval_size": "0"}, "--eval-size: expected a whole number from 1 to 100000, got '0'"),
        ({"eval_size": "1000000000"}, "--eval-size: expected a whole number from 1 to 100000"),
        ({"eval_size": "many"}, "--eval-size: expected a whole number"),
        ({"eval_seed": "5"}, "--eval-seed: expected a whole number from 1000000"),
        ({"prompt_mode": "html"}, "--prompt-mode: expected one of raw, chat, both"),
        ({"scoring": "sampled"}, "--scoring: expected one of generate, teacher-forced, both"),
        ({"min_cell_gain": "lots"}, "--min-cell-gain: expected a gain between -1 and 1"),
        ({"min_parse_rate": "1.5"}, "--min-parse-rate: expected a rate between 0 and 1"),
        ({"min_parse_rate": "nan"}, "--min-parse-rate: expected a rate"),
        ({"alpha": "0"}, "--alpha: expected a significance level"),
        ({"eval_family": "nope"}, "--eval-family: expected one of v5-small, v5"),
        ({"run_id": "../x"}, "--run-id: expected a run id"),
        ({"run_id": "latest"}, "--run-id: expected a run id"),
        ({"n_ctx": "-5"}, "--n-ctx: expected a whole number from 64"),
        ({"base_model": "a.gguf"}, "--base-model needs --merged-model or --lora"),
        ({"merged_from_lora": "l.gguf", "lora": "x"}, "--merged-from-lora needs --merged-model"),
    ],
)
def test_bad_values_are_one_line_naming_the_option(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        options.resolve(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_pyproject_values_name_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.simonsca]\nmin_parse_rate = 2\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml \[tool.simonsca\] min_parse_rate: "):
        options.resolve({}, options.read_pyproject(tmp_path))


def test_pyproject_unknown_keys_and_bad_toml_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.simonsca]\nmin_exact_gian = 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown \[tool.simonsca\] key\(s\) min_exact_gian"):
        options.read_pyproject(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.simonsca\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        options.read_pyproject(tmp_path)


def test_pyproject_without_table_is_empty(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert options.read_pyproject(tmp_path) == {}


def test_repository_pyproject_settings_are_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    s = options.resolve({}, options.read_pyproject(root))
    assert s.eval_size == 16 and s.min_cell_gain == pytest.approx(0.05)


def test_every_plugin_option_is_a_compare_option() -> None:
    """`simonsca compare` accepts every option `pytest evals/` has, by the same name."""
    import argparse

    from simonsca.cli import build_parser

    plugin_flags: list[str] = []
    options.add_options(
        lambda *names, **kw: plugin_flags.extend(names),
        ("models", "items", "backend", "checks", "output"),
        plugin=True,
    )
    parser = build_parser()
    compare = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "compare"
    ]
    known = {flag for action in compare._actions for flag in action.option_strings}
    assert set(plugin_flags) <= known, sorted(set(plugin_flags) - known)


def test_store_false_flags_default_to_true() -> None:
    s = options.resolve({"cache": False, "early_stop": False})
    assert (s.cache, s.early_stop) == (False, False)
    assert settings.Settings().cache and settings.Settings().early_stop

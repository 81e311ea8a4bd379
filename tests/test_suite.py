"""Configuration of the base-vs-merged evaluation: settings, overrides and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from simonsca import suite
from simonsca.errors import ConfigError
from simonsca.tasks import PromptMode


def test_command_line_overrides_pyproject_overrides_defaults(tmp_path: Path) -> None:
    settings = {"eval_size": 10, "min_cell_gain": "5%", "prompt_mode": "both"}
    config = suite.build_config(
        settings, base_model="a.gguf", merged_model="b.gguf", eval_size=3, min_exact_gain=None
    )
    assert config.eval_size == 3
    assert config.gate.min_cell_gain == pytest.approx(0.05)
    assert config.gate.min_exact_gain is None
    assert config.prompt_modes == (PromptMode.RAW, PromptMode.CHAT)
    assert config.base.path == Path("a.gguf") and config.merged.path == Path("b.gguf")


def test_lora_without_merged_compares_base_with_base_plus_adapter() -> None:
    config = suite.build_config({}, base_model="a.gguf", lora="l.gguf")
    assert config.merged.path == Path("a.gguf") and config.merged.lora == Path("l.gguf")
    assert config.base.lora is None


def test_base_alone_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs --merged-model or --lora"):
        suite.build_config({}, base_model="a.gguf")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"eval_size": 0}, "eval_size must be >= 1"),
        ({"eval_size": "many"}, "eval_size must be an integer"),
        ({"eval_seed": 5}, "eval_seed must be >= 1000000"),
        ({"prompt_mode": "html"}, "prompt mode must be raw, chat or both"),
        ({"min_cell_gain": "lots"}, "min_cell_gain = 'lots' is not a number"),
        ({"eval_family": "nope"}, "unknown eval family 'nope'"),
    ],
)
def test_bad_settings_are_named(settings: dict[str, object], message: str) -> None:
    with pytest.raises(Exception, match=message):
        suite.build_config(settings, base_model="a.gguf", merged_model="b.gguf")


def test_pyproject_unknown_keys_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.simonsca]\nmin_exact_gian = 0.1\n")
    with pytest.raises(ConfigError, match="unknown \\[tool.simonsca\\] key\\(s\\) min_exact_gian"):
        suite.read_pyproject_settings(tmp_path)


def test_pyproject_without_table_is_empty(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert suite.read_pyproject_settings(tmp_path) == {}


def test_repository_pyproject_settings_are_valid() -> None:
    root = Path(__file__).resolve().parents[1]
    settings = suite.read_pyproject_settings(root)
    config = suite.build_config(settings, base_model="a.gguf", merged_model="b.gguf")
    assert config.eval_size == settings["eval_size"]


def test_merged_from_lora_marks_the_merged_side() -> None:
    config = suite.build_config(
        {}, base_model="a.gguf", merged_model="b.gguf", merged_from_lora="l.gguf"
    )
    assert config.merged.built_from == Path("l.gguf") and config.merged.lora is None


def test_merged_from_lora_needs_a_merged_file() -> None:
    with pytest.raises(ConfigError, match="--merged-from-lora needs --merged-model"):
        suite.build_config({}, base_model="a.gguf", lora="l.gguf", merged_from_lora="l.gguf")

"""The README and the examples stay true: every option and check is documented, and the CI
workflow example is a valid GitHub Actions workflow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simonsca import options
from simonsca.checks import CHECKS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
WORKFLOW = ROOT / "examples" / "github-actions" / "simonsca-eval.yml"


@pytest.mark.parametrize("option", options.options(), ids=lambda o: o.key)
def test_every_option_is_in_the_readme_table(option: options.Option) -> None:
    row = next(
        (line for line in README.splitlines() if line.startswith(f"| `{option.plugin_flag}`")), None
    )
    assert row is not None, option.plugin_flag
    if option.plugin_flag != option.flag:
        assert f"`{option.flag}`" in row
    assert (f"`{option.key}`" in row) == option.pyproject


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.name)
def test_every_check_is_in_the_readme(check: object) -> None:
    assert f"`{check.test}`" in README  # type: ignore[attr-defined]


def test_the_readme_shows_the_two_commands_first() -> None:
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "bash setup.sh && .venv/bin/pytest evals/" in first_block
    assert ".venv/bin/pytest tests/" in first_block


def test_the_github_actions_example_is_a_valid_workflow() -> None:
    checker = shutil.which("check-jsonschema") or str(
        Path(sys.executable).with_name("check-jsonschema")
    )
    if not Path(checker).exists():
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = WORKFLOW.read_text()
    assert "--pyargs simonsca.evals" in text and "--junitxml" in text
    assert "actions/upload-artifact" in text and "actions/cache" in text

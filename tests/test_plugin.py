"""The pytest plugin end to end through ``pytester``, on the real Gemma 3 270M GGUF."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EVALS = Path(__file__).resolve().parents[1] / "evals" / "test_finetune.py"


@pytest.fixture
def suite_dir(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_simonsca_evals=EVALS.read_text())
    return pytester


@pytest.mark.model
def test_byte_copy_of_base_fails_as_identical_without_running(
    suite_dir: pytest.Pytester, gemma_path: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "merged.gguf"
    shutil.copyfile(gemma_path, copy)
    result = suite_dir.runpytest(
        f"--base-model={gemma_path}",
        f"--merged-model={copy}",
        "--eval-size=4",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(failed=2, passed=2, skipped=7)
    for line in (
        "simonsca: comparing base=gemma-3-270m-q4_k_m.gguf vs merged=merged.gguf*",
        "FAILED*test_merged_model_differs_from_base*",
        "verdict: IDENTICAL -- identical: the merged model files are byte-identical*",
    ):
        result.stdout.fnmatch_lines([line])
    assert (suite_dir.path / "reports" / "latest" / "report.html").is_file()
    assert (suite_dir.path / "reports" / "latest" / "summary.md").is_file()


@pytest.mark.model
def test_corrupt_merged_model_is_one_clear_line(
    suite_dir: pytest.Pytester, gemma_path: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(gemma_path.read_bytes()[: 1 << 20])
    result = suite_dir.runpytest(f"--base-model={gemma_path}", f"--merged-model={broken}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if "broken.gguf" in line]
    assert len(errors) == 1, result.stderr.str()
    assert "ERROR: simonsca:" in errors[0] and "truncated" in errors[0]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_missing_model_file_is_a_usage_error(suite_dir: pytest.Pytester, tmp_path: Path) -> None:
    result = suite_dir.runpytest(
        f"--base-model={tmp_path / 'nope.gguf'}", f"--merged-model={tmp_path / 'nope2.gguf'}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: simonsca: *nope.gguf*"])


def test_unknown_pyproject_setting_is_named(suite_dir: pytest.Pytester, tmp_path: Path) -> None:
    suite_dir.makepyprojecttoml("[tool.simonsca]\nmin_exact_gian = 0.05\n")
    result = suite_dir.runpytest("--base-model=a.gguf", "--merged-model=b.gguf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: simonsca: *pyproject.toml: unknown [[]tool.simonsca[]] key(s) min_exact_gian*"]
    )


def test_plugin_options_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        ["*--base-model=GGUF*", "*--merged-model=GGUF*", "*--lora=ADAPTER*", "*--min-exact-gain=X*"]
    )


def test_plugin_stays_out_of_unrelated_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "simonsca:" not in result.stdout.str()
    assert "= simonsca =" not in result.stdout.str()


@pytest.mark.model
def test_a_real_adapter_changes_the_verdict(suite_dir: pytest.Pytester, gemma_path: Path) -> None:
    """Base vs base + the trained control adapter: answers differ, numbers come with CIs."""
    from simonsca.default_models import CONTROL_ADAPTER

    result = suite_dir.runpytest(
        f"--base-model={gemma_path}",
        f"--lora={CONTROL_ADAPTER}",
        "--eval-size=3",
        "--eval-family=next-small",
        "--no-simonsca-cache",
        "-p",
        "no:cacheprovider",
        "-rA",
    )
    result.stdout.fnmatch_lines(["*PASSED*test_merged_model_differs_from_base*"])
    result.stdout.fnmatch_lines(["verdict: *"])
    verdict_line = next(line for line in result.stdout.lines if line.startswith("verdict: "))
    assert verdict_line.split()[1] in {"NO_EFFECT", "IMPROVED", "REGRESSED"}, verdict_line
    result.stdout.fnmatch_lines(["cell accuracy * pp to * pp*"])

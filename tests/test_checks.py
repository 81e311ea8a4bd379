"""One list of checks: the evals/ tests, `simonsca compare`'s exit status and the reports all read
the same outcomes."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from simonsca.checks import CHECKS
from simonsca.cli import main

pytest_plugins = ["pytester"]

EVALS = Path(__file__).resolve().parents[1] / "simonsca" / "evals" / "test_finetune.py"


def test_every_check_has_exactly_one_evals_test_and_back() -> None:
    tree = ast.parse(EVALS.read_text())
    enforced: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            calls = [
                n
                for n in ast.walk(node)
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "enforce"
            ]
            assert len(calls) == 1, node.name
            arg = calls[0].args[1]
            assert isinstance(arg, ast.Constant)
            enforced[node.name] = str(arg.value)
    assert enforced == {check.test: check.name for check in CHECKS}


def test_the_repository_evals_folder_runs_the_packaged_tests() -> None:
    shim = Path(__file__).resolve().parents[1] / "evals" / "test_finetune.py"
    assert "from simonsca.evals.test_finetune import *" in shim.read_text()


def _outcomes(result: pytest.RunResult) -> dict[str, str]:
    """test name -> passed/failed/skipped/xfailed, from ``pytest -v`` lines."""
    out: dict[str, str] = {}
    for line in result.stdout.lines:
        if "::test_" not in line:
            continue
        name, _, rest = line.split("::", 1)[1].partition(" ")
        for status in ("PASSED", "FAILED", "SKIPPED", "XFAIL"):
            if rest.startswith(status):
                out[name] = "xfailed" if status == "XFAIL" else status.lower()
    return out


@pytest.mark.model
def test_compare_exits_1_exactly_when_pytest_evals_fails(
    pytester: pytest.Pytester,
    gemma_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same options, the same cached answers: `pytest evals/` and `simonsca compare` agree on
    every check, for passing and failing configurations alike."""
    from simonsca.default_models import CONTROL_ADAPTER

    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))
    pytester.makepyfile(test_simonsca_evals=EVALS.read_text())
    copy = tmp_path / "same.gguf"
    shutil.copyfile(gemma_path, copy)
    common = [
        f"--base-model={gemma_path}",
        "--forced-size=6",
        "--eval-size=3",
        "--no-simonsca-progress",
    ]
    configurations = {
        "adapter, teacher-forced": [f"--lora={CONTROL_ADAPTER}", "--scoring=teacher-forced"],
        "adapter, skill required": [
            f"--lora={CONTROL_ADAPTER}",
            "--scoring=teacher-forced",
            "--require-skill",
        ],
        "adapter, both, gain gate": [
            f"--lora={CONTROL_ADAPTER}",
            "--scoring=both",
            "--min-cell-gain=99%",
            "--min-parse-rate=0.5",
        ],
        "identical files": [f"--merged-model={copy}"],
    }
    seen = set()
    for name, options in configurations.items():
        run = pytester.runpytest(*common, *options, "-v", "-p", "no:cacheprovider")
        tests = _outcomes(run)
        failed = run.ret == pytest.ExitCode.TESTS_FAILED
        assert run.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), name
        flags = [o.replace("--no-simonsca-progress", "--no-progress") for o in common + options]
        flags.append(f"--reports-dir={tmp_path / 'cli-reports'}")
        rc = main(["compare", *flags])
        text = capsys.readouterr().out
        assert rc == (1 if failed else 0), (name, rc, tests)
        for check in CHECKS:  # the CLI's check table says the same, test by test
            line = next(row for row in text.splitlines() if row.startswith(check.test))
            test_id = f"{check.test}[merged]"  # pytest runs each check once per candidate
            assert line.split()[1].lower() == tests[test_id], (name, test_id, line)
        seen.add(failed)
    assert seen == {True, False}  # both kinds of configuration were exercised

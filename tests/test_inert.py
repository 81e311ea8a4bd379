"""INERT: an adapter whose update is far below the numerical noise floor changes nothing that
matters -- and `pytest evals/ --lora ADAPTER` must say so, not call it a finetune."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EVALS = ROOT / "simonsca" / "evals" / "test_finetune.py"


def _scale_lora():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "scale_lora", ROOT / "fixtures" / "seed-v5" / "scale_lora.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scale_lora


@pytest.mark.model
@pytest.mark.parametrize("factor", [0.0, 1e-4], ids=["all-zero", "scaled-1e-4"])
def test_an_update_below_the_noise_floor_fails_as_inert(
    pytester: pytest.Pytester,
    gemma_path: Path,
    tmp_path: Path,
    factor: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from simonsca.default_models import CONTROL_ADAPTER

    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))
    adapter, _ = _scale_lora()(CONTROL_ADAPTER, tmp_path / "tiny-update.gguf", factor)
    pytester.makepyfile(test_simonsca_evals=EVALS.read_text())
    result = pytester.runpytest(
        f"--base-model={gemma_path}",
        f"--lora={adapter}",
        "--eval-size=3",
        "--forced-size=12",
        "--no-simonsca-progress",
        "-p",
        "no:cacheprovider",
    )
    result.stdout.fnmatch_lines(["verdict: INERT -- inert: *"])
    result.stdout.fnmatch_lines(["likelihood: answer NLL base * noise floor *"])
    result.stdout.fnmatch_lines(["FAILED*test_merged_model_differs_from_base*"])

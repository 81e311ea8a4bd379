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


#: Weight types the tiny llama is written in (gguf-py quantizes these; Gemma covers K-quants).
TINY_TYPES = ["F16", "Q8_0", "Q5_0", "Q5_1", "Q4_1", "Q4_0"]


def _tiny_verdict(tmp_path: Path, weight_type: str, relative: float) -> dict[str, object]:
    """`simonsca compare` of the tiny llama in ``weight_type`` against itself + a random rank-8
    LoRA whose update is ``relative`` of each weight's norm; the record's first comparison."""
    import json

    import numpy as np
    from gguf import GGMLQuantizationType
    from tiny_models import tiny

    from simonsca.adapters.gguf_lora import write_lora_gguf
    from simonsca.cli import main

    base = tiny.write_tiny_model(
        tmp_path / f"tiny-{weight_type}.gguf", weight_type=GGMLQuantizationType[weight_type]
    )
    pairs = tiny.lora_pairs(base, rank=8, relative=relative, seed=3)
    adapter = write_lora_gguf(tmp_path / "update.gguf", "llama", pairs, alpha=8.0)
    main(
        ["compare", str(base), "--lora", str(adapter), "--eval-size", "8", "--forced-size", "24"]
        + ["--n-ctx", "512", "--n-threads", "1", "--no-progress", "--no-cache", "--run-id", "r"]
    )
    record = json.loads((tmp_path / "reports" / "r" / "report.json").read_text())
    [pairing] = record["evaluation"]["comparisons"]  # one candidate, one prompt mode
    comparison = pairing["comparison"]
    assert np.isfinite(record["evaluation"]["noise"]["item_nll"])
    return dict(comparison)


@pytest.mark.model
@pytest.mark.parametrize("weight_type", TINY_TYPES)
def test_a_1e_6_update_is_inert_in_every_weight_type(
    weight_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quantized activations round differently after any change of the weights, however small:
    the noise floor's null update measures that, so a 1e-6 update is noise in every type."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))
    assert _tiny_verdict(tmp_path, weight_type, 1e-6)["verdict"] == "inert"


@pytest.mark.model
@pytest.mark.parametrize("weight_type", ["F16", "Q8_0", "Q4_0"])
def test_an_update_that_moves_the_model_is_not_inert(
    weight_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))
    comparison = _tiny_verdict(tmp_path, weight_type, 0.05)
    assert comparison["verdict"] not in ("inert", "identical"), comparison["headline"]


@pytest.mark.model
def test_the_noise_floor_is_measured_once_per_reference_and_kept_with_its_answers(
    tmp_path: Path,
) -> None:
    """A second run with the same reference reads both nulls' re-scorings from the answer
    cache: the model is not asked again, and the floor is the same number."""
    from tiny_models import BASE

    from simonsca.cache import open_cache
    from simonsca.dataset import eval_items
    from simonsca.models.llamacpp import LlamaCppModel
    from simonsca.noise import NOISE_ITEMS, noise_floor
    from simonsca.runner import teacher_force

    items = eval_items(NOISE_ITEMS)
    cache = open_cache(True, tmp_path / "answers.sqlite")
    assert cache is not None
    with LlamaCppModel(BASE, n_ctx=512, n_threads=1) as model:
        forced = teacher_force(model, items, cache=cache, progress=False)
        first = noise_floor(model, items, forced, cache)
        assert first is not None and "random update" in first.method
        kept = len(cache)
        assert kept == 3 * NOISE_ITEMS  # the answers, and each null's re-scoring of them

        def asked(*args: object, **kwargs: object) -> object:
            raise AssertionError("the model was asked again")

        model.likelihood_many = asked  # type: ignore[method-assign]
        assert noise_floor(model, items, forced, cache) == first
    assert len(cache) == kept
    cache.close()

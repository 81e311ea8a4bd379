"""Converted adapters answer through the real llama.cpp as the framework that trained them does.

* PEFT: base + simonsca's conversion of the recipe's PEFT folder answers exactly like base + the
  GGUF llama.cpp's own ``convert_lora_to_gguf.py`` wrote from it.
* MLX: base + the converted ``mlx_lm.lora`` adapter picks the same next token as ``mlx_lm``'s own
  forward pass at every answer position of the recorded prompts (fixtures/adapters/
  mlx-tiny-reference.json; the base is the tiny model in F32, the exact weights mlx_lm ran).
* llama.cpp finetune: base + the converted ``lora.bin`` / ``checkpoint-N.gguf`` answers exactly
  like the base with finetune.cpp's update (``W + alpha/r * mul_mat(lora_a, lora_b)``) merged
  into its weights.
* Every format at scale 0 gives the base model's answers exactly.
* The whole run (plan -> answers -> report) takes a PEFT folder, an MLX folder, a lora.bin.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from tiny_models import BASE, tiny

from simonsca import dataset, gguf_file
from simonsca.adapters import AdapterDropWarning, convert_adapter
from simonsca.adapters.finetune_files import _ggla_tensors
from simonsca.models.llamacpp import LlamaCppModel

pytest_plugins = ["pytester"]

pytestmark = [
    pytest.mark.model,
    pytest.mark.filterwarnings("ignore::simonsca.adapters.AdapterDropWarning"),
]

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "adapters"
PEFT = FIX / "peft-tiny"
PEFT_REFERENCE = FIX / "peft-tiny-reference.gguf"
MLX = FIX / "mlx-tiny"
GGLA = FIX / "finetune-tiny" / "lora-tiny-20.bin"
CHECKPOINT = FIX / "finetune-tiny" / "checkpoint-20.gguf"
N_ITEMS = 8
MAX_TOKENS = 24


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its Q8_0 weights dequantised to F32 (what transformers and mlx_lm
    loaded when the PEFT and MLX fixtures were trained)."""
    weights = {
        t.name: gguf_file.dequantize_tensor(t).astype(np.float32)
        for t in gguf_file.open_gguf(BASE).tensors
    }
    path = tmp_path_factory.mktemp("f32") / "tiny-f32.gguf"
    return tiny.write_tiny_model(path, weight_type=GGMLQuantizationType.F32, weights=weights)


def convert(adapter: Path, base: Path, out: Path, scale: float = 1.0) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AdapterDropWarning)
        convert_adapter(adapter, base, out, scale=scale, overwrite=True)
    return out


def greedy(model_path: Path, lora: Path | None = None) -> list[str]:
    with LlamaCppModel(model_path, lora_path=lora, n_ctx=512, n_threads=1) as model:
        return [
            model.complete(it.prompt, max_tokens=MAX_TOKENS).text
            for it in dataset.eval_items(N_ITEMS)
        ]


@pytest.fixture(scope="module")
def base_answers() -> list[str]:
    return greedy(BASE)


def test_peft_answers_equal_the_llama_cpp_converter(
    tmp_path: Path, base_answers: list[str]
) -> None:
    ours = greedy(BASE, convert(PEFT, BASE, tmp_path / "peft.gguf"))
    reference = greedy(BASE, PEFT_REFERENCE)
    assert ours == reference
    assert sum(a != b for a, b in zip(ours, base_answers, strict=True)) >= N_ITEMS // 2


def test_mlx_next_tokens_equal_mlx_lm(tmp_path: Path, tiny_f32: Path) -> None:
    rows = json.loads((FIX / "mlx-tiny-reference.json").read_text())
    adapter = convert(MLX, tiny_f32, tmp_path / "mlx.gguf")
    for lora, key in ((adapter, "top1"), (None, "top1_base")):
        with LlamaCppModel(tiny_f32, lora_path=lora, n_ctx=512, n_threads=1) as model:
            same = total = 0
            for row in rows:
                p, a, _ = model.answer_tokens(row["prompt"], row["answer"])
                assert (p, a) == (row["prompt_tokens"], row["answer_tokens"])  # same input
                top = model.answer_log_softmax(row["prompt"], row["answer"]).argmax(-1).tolist()
                same += sum(x == y for x, y in zip(top, row[key], strict=True))
                total += len(top)
        assert (same, total) == (144, 144), key
    changed = sum(
        x != y for row in rows for x, y in zip(row["top1"], row["top1_base"], strict=True)
    )
    assert changed > 100  # the adapter really moves mlx_lm's choices


@pytest.fixture(scope="module")
def finetune_merged(tmp_path_factory: pytest.TempPathFactory, tiny_f32: Path) -> Path:
    """finetune.cpp's update merged into the F32 weights by its own formula (norms left out:
    llama.cpp cannot apply them at run time)."""
    rank, alpha, lora = _ggla_tensors(GGLA)
    weights = {
        t.name: gguf_file.dequantize_tensor(t).astype(np.float32)
        for t in gguf_file.open_gguf(tiny_f32).tensors
    }
    for name, w in weights.items():
        a, b = lora.get(name + ".loraA"), lora.get(name + ".loraB")
        if a is not None and b is not None and w.ndim == 2:
            weights[name] = (w + (alpha / rank) * (b @ a.T)).astype(np.float32)
    path = tmp_path_factory.mktemp("merged") / "tiny-finetune-merged.gguf"
    return tiny.write_tiny_model(path, weight_type=GGMLQuantizationType.F32, weights=weights)


@pytest.mark.parametrize("adapter", [GGLA, CHECKPOINT], ids=lambda p: p.name)
def test_finetune_files_answer_like_their_update_merged(
    adapter: Path, tmp_path: Path, tiny_f32: Path, finetune_merged: Path
) -> None:
    ours = greedy(tiny_f32, convert(adapter, tiny_f32, tmp_path / "ft.gguf"))
    assert ours == greedy(finetune_merged)
    assert ours != greedy(tiny_f32)


@pytest.mark.parametrize(
    "adapter", [PEFT, MLX, GGLA, CHECKPOINT, PEFT_REFERENCE], ids=lambda p: p.name
)
def test_scale_zero_gives_the_base_answers_exactly(
    adapter: Path, tmp_path: Path, base_answers: list[str]
) -> None:
    assert greedy(BASE, convert(adapter, BASE, tmp_path / "zero.gguf", scale=0.0)) == base_answers


# --------------------------------------------------------------------------- the whole run


def _merged_answers(adapter: Path, reports: Path) -> tuple[str, list[str]]:
    from simonsca import options
    from simonsca.suite import run_suite

    chosen = options.resolve(
        {
            "base_model": str(BASE),
            "lora": str(adapter),
            "n_ctx": "512",
            "n_threads": "1",
            "eval_size": "3",
            "forced_size": "3",
            "reports_dir": str(reports),
            "cache": False,
        }
    )
    record = run_suite(chosen, say=lambda _: None).record
    entry = next(m for m in record.evaluation.models if m.role == "candidate")
    answers = [it.answers[entry.label].text for it in record.evaluation.items if it.answers]
    return str(entry.info.adapter_path), answers


def test_a_run_takes_any_adapter_format(tmp_path: Path) -> None:
    adapter, from_peft = _merged_answers(PEFT, tmp_path / "r1")
    _, from_gguf = _merged_answers(PEFT_REFERENCE, tmp_path / "r2")
    assert adapter.endswith("peft-tiny.gguf")  # the converted copy, named after the folder
    assert from_peft == from_gguf and len(from_peft) == 3
    for adapter in (MLX, GGLA):
        _, answers = _merged_answers(adapter, tmp_path / adapter.name)
        assert len(answers) == 3


def _run_rows(capfd: pytest.CaptureFixture[str], *args: object) -> Iterator[str]:
    from simonsca.cli import main

    rc = main([str(a) for a in args])
    out, err = capfd.readouterr()
    assert rc in (0, 1), err
    assert "Traceback" not in err and "error" not in err.lower()
    yield from out.splitlines()


def test_compare_on_the_command_line_takes_a_peft_folder(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    fast = ["--n-ctx", "512", "--n-threads", "1", "--eval-size", "2", "--forced-size", "2"]
    rows = list(
        _run_rows(
            capfd,
            "compare",
            BASE,
            "--lora",
            PEFT,
            *fast,
            "--no-progress",
            "--reports-dir",
            tmp_path,
        )
    )
    assert any("peft-tiny" in row for row in rows)


@pytest.mark.parametrize("adapter", [MLX, GGLA], ids=lambda p: p.name)
def test_eval_on_the_command_line_takes_other_formats(
    adapter: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    fast = ["--n-ctx", "512", "--n-threads", "1", "--eval-size", "2", "--forced-size", "2"]
    rows = list(
        _run_rows(
            capfd,
            "eval",
            BASE,
            "--lora",
            adapter,
            *fast,
            "--no-progress",
            "--reports-dir",
            tmp_path,
        )
    )
    assert rows


def test_pytest_evals_takes_a_peft_folder(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The pytest face: ``pytest evals/ --base-model BASE --lora PEFT_FOLDER`` runs the suite
    (its checks may pass or fail on a 20-step adapter; it is not refused)."""
    evals = ROOT / "simonsca" / "evals" / "test_finetune.py"
    pytester.makepyfile(test_simonsca_evals=evals.read_text())
    result = pytester.runpytest(
        f"--base-model={BASE}",
        f"--lora={PEFT}",
        "--n-ctx=512",
        "--n-threads=1",
        "--eval-size=2",
        "--forced-size=2",
        "--no-simonsca-progress",
        "--no-simonsca-cache",
        f"--simonsca-reports-dir={tmp_path / 'reports'}",
        "-p",
        "no:cacheprovider",
    )
    text = result.stdout.str() + result.stderr.str()
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), text
    assert "ERROR: simonsca" not in text and "Traceback" not in text
    report = json.loads(next((tmp_path / "reports").glob("*/report.json")).read_text())
    merged = next(m for m in report["evaluation"]["models"] if m["role"] == "candidate")
    assert merged["info"]["adapter_path"].endswith("peft-tiny.gguf")

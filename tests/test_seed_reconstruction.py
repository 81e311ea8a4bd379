"""The README's worked example: the seed's v5 finetune failure, reconstructed on real files.

Gemma 3 270M (Q4_K_M) stands in for Meta-Llama-3-8B-Instruct and simonsca's real SimonsCA1 LoRA
(``simonsca/controls/gemma3-270m-simonsca-lora``) for the seed's ``lora.bin``; the training log is the
seed's own (``fixtures/seed-v5/finetune.log``). Each test checks that one of the five findings
appears on the reconstruction and that the healthy counterpart gives none of them. To stay fast the
tests use a 300-sample v5 file and a handful of the adapter's tensors
(``fixtures/seed-v5/reconstruct.sh`` builds the full-size files for the README).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from simonsca import dataset
from simonsca.forensics import (
    Severity,
    diff_models,
    explain_failure,
    inspect_adapter,
    parse_train_log,
)
from simonsca.forensics.doctor import log_findings, training_base_findings

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "fixtures" / "seed-v5"
LOG = SEED / "finetune.log"
ADAPTER = REPO / "simonsca" / "controls" / "gemma3-270m-simonsca-lora" / "adapter.gguf"
# the adapter's targets in block 0: Q5_0 (attn_q, attn_k, ffn_gate, ffn_up), Q4_K (attn_output),
# Q6_K (ffn_down) and Q8_0 (attn_v) in the Gemma base
ONLY = "blk.0."

FAILURE_CODES = {
    "answers-truncated",
    "samples-over-context",
    "training-stopped-early",
    "log-samples-over-context",
    "trained-on-other-quantisation",
    "quantisation-mismatch",
    "update-below-resolution",
    "merged-identical",
    "merged-equals-base-converted",
    "merged-change-negligible",
    "adapter-near-zero",
}


def codes(findings) -> set[str]:
    return {f.code for f in findings}


def by_code(findings, code: str):
    (found,) = [f for f in findings if f.code == code]
    return found


def _scale_lora():
    spec = importlib.util.spec_from_file_location("scale_lora", SEED / "scale_lora.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scale_lora


@pytest.fixture(scope="module")
def block0(tmp_path_factory) -> Path:
    """The real adapter's block-0 pairs, unscaled."""
    out = tmp_path_factory.mktemp("lora") / "block0.gguf"
    return _scale_lora()(ADAPTER, out, 1.0, (ONLY,))[0]


# --- 2. training stopped early; the trainer's own over-context count ---------------------------


def test_log_fixture_is_the_seeds_finetune_log():
    lines = LOG.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "main: seed: 18341"
    assert lines[-1] == "^C"
    assert sum(line.startswith("train_opt_callback:") for line in lines) == 53  # iter 0..52


def test_log_says_training_stopped_at_two_percent_of_an_epoch():
    log = parse_train_log(LOG)
    assert (log.iterations, log.samples_seen, log.total_samples) == (52, 417, 19587)
    assert log.last_loss == pytest.approx(1.989653)
    assert log.last_sched == pytest.approx(0.52)
    assert (log.over_context, log.max_length, log.n_ctx, log.lora_rank) == (6097, 939, 512, 4)
    assert log.model_base.endswith("Meta-Llama-3-8B-Instruct-Q8_0.gguf")
    found = log_findings(log)
    assert codes(found) == {"training-stopped-early", "log-samples-over-context"}
    early = by_code(found, "training-stopped-early")
    assert early.severity is Severity.ERROR
    assert "2% of an epoch" in early.title
    assert early.numbers["epoch_fraction"] == pytest.approx(417 / 19587)


def test_a_log_that_ran_a_full_epoch_has_no_early_stop(tmp_path):
    healthy = tmp_path / "finetune.log"
    healthy.write_text(
        "tokenize_file: total number of samples: 400\n"
        "train_opt_callback: iter=     0 sample=1/400 sched=0.000000 loss=0.000000 |->\n"
        "train_opt_callback: iter=    50 sample=401/400 sched=1.000000 loss=0.210000 |->\n",
        encoding="utf-8",
    )
    assert codes(log_findings(parse_train_log(healthy))) & FAILURE_CODES == set()


# --- 3a. trained on Q8_0, merged into another quantisation (from the log's model path) -------------


def test_log_base_q8_0_vs_merge_base_q6_k():
    log = parse_train_log(LOG)
    found = training_base_findings(log, "Meta-Llama-3-8B-Instruct-Q6_K.gguf")
    f = by_code(found, "trained-on-other-quantisation")
    assert f.numbers == {"trained_on": "Q8_0", "applied_to": "Q6_K"}
    assert training_base_findings(log, "Meta-Llama-3-8B-Instruct-Q8_0.gguf") == ()
    # explain_failure only needs the merge base's name for this check (the file is not opened)
    all_found = explain_failure(train_log=LOG, base="gemma-3-270m-q4_k_m.gguf")
    assert by_code(all_found, "trained-on-other-quantisation").numbers["applied_to"] == "Q4_K_M"
    assert "training-stopped-early" in codes(all_found)


# --- 1. over-long samples: the answer is cut off ------------------------------------------------


@pytest.mark.model
def test_doctor_finds_truncated_answers_and_the_early_stop(tmp_path, gemma_path):
    train = tmp_path / "train_data.txt"
    assert dataset.write_items(dataset.v5_items(300), train, "v5") == 300
    from simonsca.forensics import doctor

    cut = doctor(train, gemma_path, n_ctx=128, train_log=LOG)
    assert {"answers-truncated", "training-stopped-early", "log-samples-over-context"} <= codes(
        cut.findings
    )
    f = by_code(cut.findings, "answers-truncated")
    assert f.severity is Severity.ERROR
    assert cut.n_over_context == cut.n_answer_cut > 0
    assert 0 < cut.answer_tokens_lost < cut.answer_tokens_total
    # healthy: a context that holds every sample, no log
    whole = doctor(train, gemma_path, n_ctx=2048)
    assert whole.n_over_context == whole.n_answer_cut == 0
    assert codes(whole.findings) & FAILURE_CODES == set()


# --- 3b. merged into another quantisation than the base's ----------------------------------------


@pytest.mark.model
def test_merge_requantised_to_q8_0_is_a_quantisation_mismatch(tmp_path, gemma_path, block0):
    from simonsca.merge import merge_adapter

    q8 = merge_adapter(gemma_path, block0, tmp_path / "merged-q8.gguf", "Q8_0")
    d = diff_models(gemma_path, q8)
    f = by_code(d.findings, "quantisation-mismatch")
    # blk.0: attn_q/attn_k/ffn_gate/ffn_up Q5_0, attn_output Q4_K, ffn_down Q6_K; attn_v is Q8_0
    assert f.numbers["type_changes"] == {"Q5_0->Q8_0": 4, "Q4_K->Q8_0": 1, "Q6_K->Q8_0": 1}
    assert d.n_changed == 7
    q8.unlink()
    # healthy: merged as F16 (finer than every base type), the update is there
    f16 = merge_adapter(gemma_path, block0, tmp_path / "merged-f16.gguf")
    d = diff_models(gemma_path, f16)
    assert d.n_changed == 7
    assert codes(d.findings) & FAILURE_CODES == set()


# --- 4. an update too small to survive quantisation ----------------------------------------------


@pytest.mark.model
def test_scaled_down_adapter_is_below_resolution(tmp_path, gemma_path, block0):
    small, n = _scale_lora()(ADAPTER, tmp_path / "small.gguf", 0.01, (ONLY,))
    assert n == 7
    report = inspect_adapter(gemma_path, small)
    f = by_code(report.findings, "update-below-resolution")
    assert f.severity is Severity.ERROR
    assert f.numbers["tensors_below"] == f.numbers["targets"] == 7
    assert f.numbers["median_retained"] < 0.1
    # healthy: the real adapter judged in Q8_0 (what `simonsca merge --requantize Q8_0` writes)
    healthy = inspect_adapter(gemma_path, block0, resolution_type="Q8_0")
    assert healthy.n_below_resolution == 0
    assert codes(healthy.findings) & FAILURE_CODES == set()


# --- the "identical" case -------------------------------------------------------------------------


@pytest.mark.model
def test_a_copy_of_the_base_is_identical(tmp_path, gemma_path, capsys):
    import shutil

    from simonsca.cli import main

    same = Path(shutil.copyfile(gemma_path, tmp_path / "same.gguf"))
    d = diff_models(gemma_path, same)
    assert codes(d.findings) == {"merged-identical"}
    # `simonsca compare BASE same.gguf`: verdict at once, no model run
    argv = ["compare", str(gemma_path), str(same), "--reports-dir", str(tmp_path / "reports")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "verdict: IDENTICAL" in out
    assert "merged-identical" in out


def test_scale_lora_script_refuses_to_overwrite(tmp_path):
    out = tmp_path / "x.gguf"
    out.write_bytes(b"")
    r = subprocess.run(
        [sys.executable, str(SEED / "scale_lora.py"), str(ADAPTER), str(out), "0.01"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2 and "exists" in r.stderr


def test_reconstruct_script_wants_an_output_directory():
    r = subprocess.run(
        ["bash", str(SEED / "reconstruct.sh")], capture_output=True, text=True, check=False
    )
    assert r.returncode == 2 and "usage" in r.stderr

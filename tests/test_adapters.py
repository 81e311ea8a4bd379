"""Every adapter a finetuner holds becomes the GGUF LoRA llama.cpp would apply (no model loaded).

The fixtures in fixtures/adapters/ are real files made by the tools users make them with
(``fixtures/make_adapter_fixtures.py``): PEFT from simonsca's own recipe, with llama.cpp's
``convert_lora_to_gguf.py`` output beside it as the reference; PEFT with rsLoRA and rank/alpha
patterns with peft's own ``get_delta_weight`` as the reference; a PEFT DoRA adapter; a real
``mlx_lm.lora`` run; and llama.cpp finetune's ``lora.bin`` / ``checkpoint-N.gguf`` written as
finetune.cpp writes them. The model-level checks (answers through llama.cpp) are in
test_adapters_model.py.
"""

from __future__ import annotations

import json
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from cli_run import cli
from tiny_models import BASE, LORA, tiny

from simonsca.adapters import (
    AdapterDropWarning,
    AdapterFormat,
    convert_adapter,
    detect,
    list_checkpoints,
    resolve_adapter,
)
from simonsca.adapters.finetune_files import _ggla_tensors
from simonsca.adapters.gguf_lora import LoraAdapter, read_adapter
from simonsca.adapters.names import permute_rows
from simonsca.adapters.safetensors_file import read_safetensors
from simonsca.errors import AdapterMismatch, ModelFileError, SimonscaError

pytestmark = pytest.mark.filterwarnings("ignore::simonsca.adapters.AdapterDropWarning")
ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "fixtures" / "adapters"
PEFT = FIX / "peft-tiny"
PEFT_BF16 = FIX / "peft-tiny-bf16"
PEFT_REFERENCE = FIX / "peft-tiny-reference.gguf"
RSLORA = FIX / "peft-tiny-rslora"
DORA = FIX / "peft-tiny-dora"
MLX = FIX / "mlx-tiny"
FINETUNE = FIX / "finetune-tiny"
GGLA = FINETUNE / "lora-tiny-20.bin"
CHECKPOINT = FINETUNE / "checkpoint-20.gguf"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))


def converted(adapter: Path, tmp_path: Path, base: Path = BASE, **kw: float) -> LoraAdapter:
    out = tmp_path / f"{adapter.name}.gguf"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AdapterDropWarning)
        convert_adapter(adapter, base, out, overwrite=True, **kw)
    return read_adapter(out)


def deltas(lora: LoraAdapter) -> dict[str, np.ndarray]:
    return {p.target: p.delta() for p in lora.pairs}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A plain F32 safetensors file (the format: header length, JSON header, data)."""
    header: dict[str, object] = {}
    blobs, offset = [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, "<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def one_line(error: BaseException, *needles: object) -> str:
    text = str(error)
    assert "\n" not in text
    for needle in needles:
        assert str(needle) in text, (needle, text)
    return text


def test_fixtures_stay_small() -> None:
    assert sum(p.stat().st_size for p in FIX.rglob("*") if p.is_file()) < 2_000_000


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("path", "fmt"),
    [
        (PEFT, AdapterFormat.PEFT),
        (PEFT / "adapter_model.safetensors", AdapterFormat.PEFT),
        (MLX, AdapterFormat.MLX),
        (MLX / "0000010_adapters.safetensors", AdapterFormat.MLX),
        (GGLA, AdapterFormat.GGLA),
        (CHECKPOINT, AdapterFormat.FINETUNE_CHECKPOINT),
        (PEFT_REFERENCE, AdapterFormat.GGUF),
        (LORA, AdapterFormat.GGUF),
    ],
    ids=lambda x: x.name if isinstance(x, Path) else str(x),
)
def test_the_format_is_read_from_the_file(path: Path, fmt: AdapterFormat) -> None:
    assert detect(path).format == fmt


def test_the_format_comes_from_content_not_the_name(tmp_path: Path) -> None:
    """A PEFT adapter saved as 'lora.bin', a ggla file called 'adapter.gguf': still known."""
    peft = tmp_path / "run"
    peft.mkdir()
    shutil.copy(PEFT / "adapter_config.json", peft)
    shutil.copy(PEFT / "adapter_model.safetensors", peft / "lora.bin")
    ggla = tmp_path / "adapter.gguf"
    shutil.copy(GGLA, ggla)
    assert detect(peft / "lora.bin").format == AdapterFormat.PEFT
    assert detect(ggla).format == AdapterFormat.GGLA
    a, b = converted(peft / "lora.bin", tmp_path), read_adapter(PEFT_REFERENCE)
    assert a.targets == b.targets


# --------------------------------------------------------------------------- PEFT


def test_peft_equals_llama_cpp_converter_tensor_for_tensor(tmp_path: Path) -> None:
    """simonsca's conversion of the recipe's PEFT folder equals convert_lora_to_gguf.py's own
    output (f32) exactly: names, alpha, lora_a and lora_b (q/k rows permuted alike)."""
    ours, ref = converted(PEFT, tmp_path), read_adapter(PEFT_REFERENCE)
    assert ours.architecture == ref.architecture == "llama"
    assert ours.alpha == ref.alpha == 8.0
    assert sorted(ours.targets) == sorted(ref.targets) and len(ours.targets) == 14
    by_name = {p.target: p for p in ref.pairs}
    for p in ours.pairs:
        q = by_name[p.target]
        assert p.u.shape == q.u.shape and p.v.shape == q.v.shape
        assert float(np.max(np.abs(p.u - q.u))) == 0.0, p.target  # lora_b
        assert float(np.max(np.abs(p.v - q.v))) == 0.0, p.target  # lora_a


def test_peft_in_bf16_is_widened_exactly(tmp_path: Path) -> None:
    """A bf16 adapter: every value is the bf16 rounding of the f32 one (widened, not guessed)."""
    ours, ref = converted(PEFT_BF16, tmp_path), read_adapter(PEFT_REFERENCE)
    by_name = {p.target: p for p in ref.pairs}
    for p in ours.pairs:
        q = by_name[p.target]
        for got, want in ((p.u, q.u), (p.v, q.v)):
            bits = want.astype(np.float32).view(np.uint32)
            lower = (bits & 0xFFFF0000).view(np.float32)
            upper = ((bits & 0xFFFF0000) + 0x10000).view(np.float32)
            assert np.all((got == lower) | (got == upper)), p.target  # one of the two neighbours
    assert read_safetensors(PEFT_BF16 / "adapter_model.safetensors").dtypes.popitem()[1] == "BF16"


def test_rslora_rank_and_alpha_patterns_equal_peft_own_update(tmp_path: Path) -> None:
    """use_rslora (alpha/sqrt(r)), rank_pattern (k: r=2) and alpha_pattern (v: alpha=3), which
    llama.cpp's converter ignores: each update equals peft's get_delta_weight, the k_proj's
    differing scale baked into its lora_b."""
    config = json.loads((RSLORA / "adapter_config.json").read_text())
    assert config["use_rslora"] and config["rank_pattern"] and config["alpha_pattern"]
    ours = converted(RSLORA, tmp_path)
    reference = read_safetensors(FIX / "peft-tiny-rslora-delta.safetensors").tensors
    got = deltas(ours)
    assert len(got) == len(reference) == 6
    heads = {"attn_q": (4, 4), "attn_k": (4, 2)}
    for module, want in reference.items():
        layer = module.split(".")[2]
        kind = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v"}[module.split(".")[-1]]
        if kind in heads:
            want = permute_rows(want, *heads[kind])
        name = f"blk.{layer}.{kind}.weight"
        np.testing.assert_allclose(got[name], want, atol=1e-6, err_msg=name)
        assert float(np.abs(want).max()) > 0.1
    ranks = {p.target: p.rank for p in ours.pairs}
    assert ranks["blk.0.attn_k.weight"] == 2 and ranks["blk.0.attn_q.weight"] == 4


def test_dora_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as info:
        convert_adapter(DORA, BASE, tmp_path / "out.gguf")
    one_line(info.value, DORA, "DoRA", "lora_magnitude_vector")
    assert not (tmp_path / "out.gguf").exists()


def test_a_torch_pickle_is_refused_without_being_read(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(PEFT / "adapter_config.json", folder)
    (folder / "adapter_model.bin").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(ModelFileError) as info:
        detect(folder)
    one_line(info.value, folder, "pickle", "safetensors")


def test_whole_weights_in_a_peft_adapter_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "with-lm-head"
    shutil.copytree(PEFT, folder)
    tensors = dict(read_safetensors(PEFT / "adapter_model.safetensors").tensors)
    tensors["base_model.model.lm_head.weight"] = np.zeros((354, 64), np.float32)
    write_safetensors(folder / "adapter_model.safetensors", tensors)
    with pytest.raises(ModelFileError) as info:
        convert_adapter(folder, BASE, tmp_path / "out.gguf")
    one_line(info.value, "lm_head.weight", "whole weights")


# --------------------------------------------------------------------------- MLX


def test_mlx_update_is_scale_times_lora_b_t_lora_a_t(tmp_path: Path) -> None:
    """mlx_lm's LoRALinear adds scale * (x @ lora_a) @ lora_b: dW = scale * lora_b.T @ lora_a.T,
    with the stored scale (20) and no alpha/rank; q/k rows permuted for llama."""
    config = json.loads((MLX / "adapter_config.json").read_text())
    scale = config["lora_parameters"]["scale"]
    raw = read_safetensors(MLX / "adapters.safetensors").tensors
    got = deltas(converted(MLX, tmp_path))
    assert len(got) == 14
    for layer in range(2):
        for module, kind, heads in (
            ("self_attn.q_proj", "attn_q", (4, 4)),
            ("self_attn.k_proj", "attn_k", (4, 2)),
            ("self_attn.v_proj", "attn_v", None),
            ("mlp.down_proj", "ffn_down", None),
        ):
            key = f"model.layers.{layer}.{module}"
            want = scale * (raw[key + ".lora_b"].T @ raw[key + ".lora_a"].T)
            if heads:
                want = permute_rows(want, *heads)
            np.testing.assert_allclose(
                got[f"blk.{layer}.{kind}.weight"], want, rtol=1e-5, atol=1e-5 * np.abs(want).max()
            )


def test_mlx_numbered_checkpoints_convert_and_differ(tmp_path: Path) -> None:
    early = deltas(converted(MLX / "0000010_adapters.safetensors", tmp_path))
    final = deltas(converted(MLX, tmp_path))
    last = deltas(converted(MLX / "0000020_adapters.safetensors", tmp_path))
    for name in final:
        np.testing.assert_array_equal(final[name], last[name])  # adapters.safetensors = step 20
    assert any(not np.allclose(early[n], final[n]) for n in final)


def test_mlx_dora_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mlx-dora"
    shutil.copytree(MLX, folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["fine_tune_type"] = "dora"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError) as info:
        convert_adapter(folder, BASE, tmp_path / "out.gguf")
    one_line(info.value, "dora", "llama.cpp")


# --------------------------------------------------------------------------- llama.cpp finetune


def test_ggla_update_is_finetune_graph_mul_mat(tmp_path: Path) -> None:
    """finetune.cpp adds ggml_mul_mat(lora_a, lora_b) to each weight; with a (n_in, r) and
    b (n_out, r) as read (ggml ne = [r, n]), that is b @ a.T, scaled by alpha/r (4/4) --
    for the token embedding and the output matrix too."""
    rank, alpha, raw = _ggla_tensors(GGLA)
    assert (rank, alpha) == (4, 4)
    got = deltas(converted(GGLA, tmp_path))
    assert "token_embd.weight" in got and "output.weight" in got and len(got) == 16
    for name, dw in got.items():
        a, b = raw[name + ".loraA"], raw[name + ".loraB"]
        np.testing.assert_allclose(dw, (alpha / rank) * (b @ a.T), rtol=1e-5, atol=1e-6)


def test_ggla_and_checkpoint_of_one_step_are_the_same_update(tmp_path: Path) -> None:
    a, b = deltas(converted(GGLA, tmp_path)), deltas(converted(CHECKPOINT, tmp_path))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_norm_loras_are_dropped_with_one_warning(tmp_path: Path) -> None:
    with pytest.warns(AdapterDropWarning) as record:
        convert_adapter(GGLA, BASE, tmp_path / "out.gguf")
    (warning,) = record
    one_line(warning.message, "5 norm-weight LoRAs", "blk.0.attn_norm.weight", "largest |dW|")
    assert not any("norm" in t for t in read_adapter(tmp_path / "out.gguf").targets)


def test_the_ggla_layout_is_what_finetune_cpp_writes() -> None:
    """Magic 'ggla' v1, r, alpha; per tensor n_dims, name length, type, ne, name, padding to 32."""
    blob = GGLA.read_bytes()
    assert struct.unpack_from("<4I", blob) == (0x67676C61, 1, 4, 4)
    n_dims, name_len, ggml_type = struct.unpack_from("<3I", blob, 16)
    ne = struct.unpack_from(f"<{n_dims}I", blob, 28)
    name = blob[28 + 4 * n_dims : 28 + 4 * n_dims + name_len]
    assert name == b"token_embd.weight.loraA" and ne == (4, 64) and ggml_type == 0
    data = 28 + 4 * n_dims + name_len
    assert (data + (-data) % 32) % 32 == 0


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_folders_list_their_steps(tmp_path: Path) -> None:
    assert [(c.step, c.format) for c in list_checkpoints(MLX)] == [(10, "mlx"), (20, "mlx")]
    steps = [(c.step, c.path.name) for c in list_checkpoints(FINETUNE)]
    assert steps == [
        (10, "checkpoint-10.gguf"),
        (10, "lora-tiny-10.bin"),
        (20, "checkpoint-20.gguf"),
        (20, "lora-tiny-20.bin"),
    ]
    run = tmp_path / "trainer-output"
    for step in (100, 20, 3):
        shutil.copytree(PEFT, run / f"checkpoint-{step}")
    (run / "checkpoint-7").mkdir()  # no adapter in it
    (run / "trainer_state.json").write_text("{}")
    (run / "runs").mkdir()
    listed = list_checkpoints(run)
    assert [c.step for c in listed] == [3, 20, 100]
    assert {c.format for c in listed} == {"peft"}


def test_a_run_folder_given_as_the_adapter_names_its_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "trainer-output"
    for step in (10, 20):
        shutil.copytree(PEFT, run / f"checkpoint-{step}")
    with pytest.raises(ModelFileError) as info:
        detect(run)
    one_line(info.value, run, "steps 10, 20", "checkpoint-20")


# --------------------------------------------------------------------------- bad inputs, one line each


def _cut(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_adapters_are_one_line(tmp_path: Path, keep: float) -> None:
    cases = []
    peft = tmp_path / "peft"
    shutil.copytree(PEFT, peft)
    _cut(PEFT / "adapter_model.safetensors", peft / "adapter_model.safetensors", keep)
    cases.append((peft, "truncated"))
    mlx = tmp_path / "mlx"
    shutil.copytree(MLX, mlx)
    _cut(MLX / "adapters.safetensors", mlx / "adapters.safetensors", keep)
    cases.append((mlx, "truncated"))
    cases.append((_cut(GGLA, tmp_path / "lora.bin", keep), "truncated"))
    cases.append((_cut(CHECKPOINT, tmp_path / "checkpoint-20.gguf", keep), "truncated"))
    for path, needle in cases:
        with pytest.raises(ModelFileError) as info:
            resolve_adapter(path, BASE)
        one_line(info.value, needle)


def test_corrupt_and_foreign_files_are_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "adapter.bin"
    junk.write_bytes(b"hello world, not an adapter")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    header = tmp_path / "bad-header"
    header.mkdir()
    shutil.copy(PEFT / "adapter_config.json", header)
    (header / "adapter_model.safetensors").write_bytes(struct.pack("<Q", 12) + b"{not json!!}")
    config = tmp_path / "bad-config"
    shutil.copytree(PEFT, config)
    (config / "adapter_config.json").write_text("{")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(MLX / "adapters.safetensors", lonely)
    for path, needle in (
        (junk, "not an adapter simonsca knows"),
        (empty, "empty"),
        (header, "corrupt"),
        (config, "not readable JSON"),
        (lonely, "adapter_config.json"),
        (BASE, "is a GGUF model, not a llama.cpp LoRA adapter"),
        (tmp_path / "missing", "not found"),
    ):
        with pytest.raises(ModelFileError) as info:
            resolve_adapter(path, BASE)
        one_line(info.value, path, needle)


def test_a_folder_with_no_adapter_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "nothing-here"
    folder.mkdir()
    (folder / "README.md").write_text("a model card")
    with pytest.raises(ModelFileError) as info:
        resolve_adapter(folder, BASE)
    one_line(info.value, folder, "holds no adapter", "adapter_model.safetensors")


def test_wrong_shapes_are_one_line_naming_both_files(tmp_path: Path) -> None:
    narrow = tiny.write_tiny_model(
        tmp_path / "narrow.gguf", cfg=tiny.TinyConfig(n_embd=32, n_head=4, n_head_kv=2, n_ff=64)
    )
    for adapter in (PEFT, MLX, GGLA, CHECKPOINT, PEFT_REFERENCE):
        with pytest.raises(AdapterMismatch) as info:
            convert_adapter(adapter, narrow, tmp_path / "out.gguf", overwrite=True)
        one_line(info.value, adapter, narrow, "shape", "wrong base model?")


def test_an_adapter_for_another_architecture_is_one_line(tmp_path: Path, gemma_path: Path) -> None:
    with pytest.raises(AdapterMismatch) as info:
        resolve_adapter(CHECKPOINT, gemma_path)
    one_line(info.value, CHECKPOINT, "llama", "gemma3")
    for adapter in (PEFT, MLX, GGLA):
        with pytest.raises(AdapterMismatch) as info:
            resolve_adapter(adapter, gemma_path)
        one_line(info.value, adapter, gemma_path)
    # a GPT-2 style adapter on a llama base: module names llama has no tensor for
    gpt2 = tmp_path / "gpt2-lora"
    gpt2.mkdir()
    shutil.copy(PEFT / "adapter_config.json", gpt2)
    write_safetensors(
        gpt2 / "adapter_model.safetensors",
        {
            "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": np.zeros((4, 64), "f4"),
            "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": np.zeros((192, 4), "f4"),
        },
    )
    with pytest.raises(AdapterMismatch) as info:
        resolve_adapter(gpt2, BASE)
    one_line(info.value, "c_attn", "another architecture")


def test_a_base_that_is_an_adapter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SimonscaError) as info:
        convert_adapter(PEFT, LORA, tmp_path / "out.gguf")
    one_line(info.value, LORA, "LoRA adapter, not a model")


# --------------------------------------------------------------------------- resolver and cache


def test_a_gguf_lora_is_used_as_it_is() -> None:
    resolved = resolve_adapter(LORA, BASE)
    assert resolved.gguf == LORA and not resolved.converted


def test_conversions_are_cached_by_content(tmp_path: Path) -> None:
    first = resolve_adapter(PEFT, BASE)
    assert first.converted and first.gguf.name == "peft-tiny.gguf"
    assert first.gguf.is_relative_to(tmp_path / "cache" / "adapters")
    stamp = first.gguf.stat().st_mtime_ns
    again = resolve_adapter(PEFT, BASE)
    assert again.gguf == first.gguf and again.gguf.stat().st_mtime_ns == stamp
    copy = tmp_path / "elsewhere" / "peft-tiny"
    shutil.copytree(PEFT, copy)
    assert resolve_adapter(copy, BASE).gguf == first.gguf  # same bytes, same file
    (copy / "adapter_config.json").write_text(
        (PEFT / "adapter_config.json").read_text().replace('"lora_alpha": 8', '"lora_alpha": 16')
    )
    changed = resolve_adapter(copy, BASE)
    assert changed.gguf != first.gguf and read_adapter(changed.gguf).alpha == 16.0
    assert resolve_adapter(PEFT, BASE, scale=0.0).gguf != first.gguf


def test_scale_zero_writes_an_update_of_zero(tmp_path: Path) -> None:
    for adapter in (PEFT, MLX, GGLA, CHECKPOINT, PEFT_REFERENCE):
        lora = converted(adapter, tmp_path, scale=0.0)
        assert all(p.frobenius_norm() == 0.0 for p in lora.pairs), adapter


# --------------------------------------------------------------------------- the command line


def run_cli(capfd: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    run = cli(capfd, *args)
    return run.rc, run.out, run.err


def test_convert_writes_the_gguf_and_keeps_an_existing_one(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "adapter.gguf"
    rc, text, err = run_cli(capfd, "convert", PEFT, "--base", BASE, out)
    assert rc == 0, err
    assert f"wrote {out}" in text and "peft" in text
    assert read_adapter(out).targets == converted(PEFT, tmp_path).targets
    before = out.read_bytes()
    rc, _, err = run_cli(capfd, "convert", MLX, "--base", BASE, out)
    assert rc == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before
    rc, _, err = run_cli(capfd, "convert", MLX, "--base", BASE, out, "--force")
    assert rc == 0, err
    assert out.read_bytes() != before
    assert not list(tmp_path.glob(".adapter.gguf.*"))  # no temporary left behind


def test_convert_errors_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    for args, needle in (
        (["convert", DORA, "--base", BASE, tmp_path / "o.gguf"], "DoRA"),
        (["convert", PEFT, tmp_path / "o.gguf"], "--base"),
        (["checkpoints", tmp_path], "no adapter checkpoints"),
        (["convert", PEFT, "--base", BASE, tmp_path / "o.gguf", "--scale", "nan"], "finite"),
    ):
        rc, _, err = run_cli(capfd, *args)
        assert rc == 2, err
        assert "Traceback" not in err and needle in err, err
        assert len([line for line in err.splitlines() if "error" in line]) == 1, err
    assert not (tmp_path / "o.gguf").exists()


def test_convert_lists_a_runs_checkpoints(capfd: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(capfd, "checkpoints", MLX)
    assert rc == 0, err
    assert [line.split("\t")[:2] for line in out.splitlines()] == [["10", "mlx"], ["20", "mlx"]]


def _diff_json(capfd: pytest.CaptureFixture[str], adapter: Path, *more: str) -> dict[str, object]:
    more = more or ("--merge-type", "Q4_0")
    rc, out, err = run_cli(capfd, "diff", BASE, "--lora", adapter, "--json", *more)
    assert rc == 0, err
    return json.loads(out)


def test_diff_takes_every_format_with_the_same_findings(capfd: pytest.CaptureFixture[str]) -> None:
    """The seed's question -- does the update survive quantisation? -- on the user's own file."""
    reference = _diff_json(capfd, PEFT_REFERENCE)
    peft = _diff_json(capfd, PEFT)
    assert [f["code"] for f in peft["findings"]] == [f["code"] for f in reference["findings"]]
    stats = {t["name"]: t for t in reference["adapter"]["tensors"]}
    for t in peft["adapter"]["tensors"]:
        assert t["update_norm"] == pytest.approx(stats[t["name"]]["update_norm"], rel=1e-6)
    for adapter in (MLX, GGLA, CHECKPOINT, PEFT_BF16):
        report = _diff_json(capfd, adapter)
        assert report["adapter"]["tensors"], adapter


def test_merge_takes_a_peft_folder(tmp_path: Path) -> None:
    from simonsca.gguf_file import dequantize_tensor, open_gguf
    from simonsca.merge import merge_adapter

    a = merge_adapter(BASE, PEFT, tmp_path / "from-peft.gguf")
    b = merge_adapter(BASE, PEFT_REFERENCE, tmp_path / "from-gguf.gguf")
    ta = {t.name: t for t in open_gguf(a).tensors}
    for t in open_gguf(b).tensors:
        np.testing.assert_array_equal(dequantize_tensor(ta[t.name]), dequantize_tensor(t))


def test_plan_resolves_adapters_once_before_model_work(tmp_path: Path) -> None:
    from simonsca import options
    from simonsca.suite import plan

    chosen = options.resolve(
        {
            "base_model": str(BASE),
            "lora": str(PEFT),
            "n_ctx": "512",
            "reports_dir": str(tmp_path / "r"),
        },
        {},
    )
    p = plan(chosen)
    merged = p.candidates[0].spec
    assert merged.lora is not None and merged.lora.suffix == ".gguf"
    assert merged.lora.is_relative_to(tmp_path / "cache" / "adapters")
    assert merged.label.endswith("+ peft-tiny.gguf")
    chosen = options.resolve(
        {
            "base_model": str(BASE),
            "merged_model": str(BASE),
            "merged_from_lora": str(GGLA),
            "n_ctx": "512",
            "reports_dir": str(tmp_path / "r"),
        },
        {},
    )
    built_from = plan(chosen).candidates[0].spec.built_from
    assert built_from is not None and built_from.name == "lora-tiny-20.gguf"
    narrow = tiny.write_tiny_model(
        tmp_path / "narrow.gguf", cfg=tiny.TinyConfig(n_embd=32, n_ff=64)
    )
    chosen = options.resolve(
        {
            "base_model": str(narrow),
            "lora": str(MLX),
            "n_ctx": "512",
            "reports_dir": str(tmp_path / "r"),
        },
        {},
    )
    with pytest.raises(AdapterMismatch) as info:
        plan(chosen)
    one_line(info.value, MLX, "shape")


def test_hf_names_map_through_the_base_architecture_tables() -> None:
    from simonsca.adapters.names import NameMap, is_expert

    gemma = NameMap("gemma3", 18)
    assert gemma.gguf_name("model.layers.3.self_attn.k_proj") == "blk.3.attn_k.weight"
    assert gemma.gguf_name("model.language_model.layers.3.mlp.down_proj") == "blk.3.ffn_down.weight"
    llama = NameMap("llama", 2)
    assert llama.gguf_name("lm_head") == "output.weight"
    assert llama.gguf_name("model.embed_tokens") == "token_embd.weight"
    assert llama.gguf_name("transformer.h.0.attn.c_attn") is None
    assert NameMap("no-such-arch", 2).gguf_name("model.layers.0.self_attn.q_proj") is None
    assert is_expert("model.layers.0.mlp.experts.3.gate_proj")
    assert is_expert("model.layers.0.mlp.switch_mlp.gate_proj")
    assert not is_expert("model.layers.0.mlp.gate_proj")


def test_the_qk_permutation_interleaves_the_rotary_halves_per_head() -> None:
    """convert_hf_to_gguf's LlamaModel.permute: per head, rows (0, 1 | 2, 3) -> (0, 2, 1, 3)."""
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    assert permute_rows(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert permute_rows(rows, 4, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]  # k: kv heads


def test_a_tiny_truncated_safetensors_file_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "peft"
    shutil.copytree(PEFT, folder)
    (folder / "adapter_model.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(ModelFileError) as info:
        resolve_adapter(folder, BASE)
    one_line(info.value, "truncated")


def _fixture_script() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_adapter_fixtures", ROOT / "fixtures" / "make_adapter_fixtures.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_diff_finds_the_seeds_update_below_the_quantisation_step_in_lora_bin(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The seed's case on the seed's own format: a barely trained rank-4 lora.bin whose update
    rounds away in the base's Q8_0 -- the same finding as for the GGUF adapter it converts to."""
    script: object = _fixture_script()
    tensors = script.finetune_lora_tensors(seed=3, trained=2e-5)  # type: ignore[attr-defined]
    seed_like = tmp_path / "lora-ITERATION.bin"
    script.write_ggla(seed_like, tensors, 4, 4)  # type: ignore[attr-defined]
    report = _diff_json(capfd, seed_like, "--merge-type", "Q8_0")
    codes = [f["code"] for f in report["findings"]]
    assert "update-below-resolution" in codes, codes
    gguf = tmp_path / "seed-like.gguf"
    assert run_cli(capfd, "convert", seed_like, gguf, "--base", BASE)[0] == 0
    assert [f["code"] for f in _diff_json(capfd, gguf, "--merge-type", "Q8_0")["findings"]] == codes


def test_an_mlx_adapter_on_the_last_layers_only_converts_those(tmp_path: Path) -> None:
    """mlx_lm's --num-layers counts from the last layer: a run with --num-layers 1 holds only
    the last block's LoRAs; the layer numbers come from the names, nothing is shifted."""
    folder = tmp_path / "mlx-last-layer"
    folder.mkdir()
    shutil.copy(MLX / "adapter_config.json", folder)
    tensors = read_safetensors(MLX / "adapters.safetensors").tensors
    write_safetensors(
        folder / "adapters.safetensors",
        {k: v for k, v in tensors.items() if k.startswith("model.layers.1.")},
    )
    got = deltas(converted(folder, tmp_path))
    full = deltas(converted(MLX, tmp_path))
    assert sorted(got) == sorted(n for n in full if n.startswith("blk.1."))
    for name, dw in got.items():
        np.testing.assert_array_equal(dw, full[name])

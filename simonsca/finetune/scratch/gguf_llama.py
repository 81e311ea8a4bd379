"""Write a llama-architecture GGUF with a character-level vocabulary -- torch-free.

Shared by the from-scratch positive control (:mod:`simonsca.finetune.scratch`) and the tiny test
models (``fixtures/make_tiny_models.py``), so both produce the same kind of file llama.cpp loads:
a SentencePiece-style ("llama") vocabulary of ``<unk> <s> </s>``, the 256 byte tokens, ``"▁"``
and the printable ASCII characters. Every SimonsCA1 prompt and answer is ASCII, so each character
is exactly one token (a space is ``"▁"``, a newline the byte token ``<0x0A>``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, TokenType
from gguf.quants import quantize

ARCH = "llama"
#: llama_ftype numbers ("general.file_type") for the weight types the writer supports.
FTYPE = {
    GGMLQuantizationType.F32: 0,
    GGMLQuantizationType.F16: 1,
    GGMLQuantizationType.Q4_0: 2,
    GGMLQuantizationType.Q4_1: 3,
    GGMLQuantizationType.Q8_0: 7,
    GGMLQuantizationType.Q5_0: 8,
    GGMLQuantizationType.Q5_1: 9,
}
LINEAR = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@dataclass(frozen=True)
class LlamaShape:
    """The hyper-parameters a llama GGUF header records (and the torch model is built from)."""

    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx: int = 512
    rope_base: float = 10000.0
    rms_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def char_vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and types: <unk> <s> </s>, <0x00>..<0xFF>, "▁", printable ASCII."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(TokenType.BYTE)
    pieces = ["\u2581"] + [chr(c) for c in range(33, 127)]
    tokens.extend(pieces)
    types.extend([TokenType.NORMAL] * len(pieces))
    scores = [0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def tensor_shapes(shape: LlamaShape, n_vocab: int | None = None) -> dict[str, tuple[int, ...]]:
    """Numpy-order (rows = output features) shapes of every tensor, by GGUF name."""
    if n_vocab is None:
        n_vocab = len(char_vocab()[0])
    kv = shape.head_dim * shape.n_head_kv
    out: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (n_vocab, shape.n_embd),
        "output_norm.weight": (shape.n_embd,),
        "output.weight": (n_vocab, shape.n_embd),
    }
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        out[p + "attn_norm.weight"] = (shape.n_embd,)
        out[p + "attn_q.weight"] = (shape.n_embd, shape.n_embd)
        out[p + "attn_k.weight"] = (kv, shape.n_embd)
        out[p + "attn_v.weight"] = (kv, shape.n_embd)
        out[p + "attn_output.weight"] = (shape.n_embd, shape.n_embd)
        out[p + "ffn_norm.weight"] = (shape.n_embd,)
        out[p + "ffn_gate.weight"] = (shape.n_ff, shape.n_embd)
        out[p + "ffn_up.weight"] = (shape.n_ff, shape.n_embd)
        out[p + "ffn_down.weight"] = (shape.n_embd, shape.n_ff)
    return out


def write_llama_gguf(
    path: str | Path,
    weights: dict[str, np.ndarray],
    shape: LlamaShape,
    *,
    weight_type: GGMLQuantizationType = GGMLQuantizationType.Q8_0,
    name: str = "simonsca tiny llama",
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write the model; 2-D weights in ``weight_type``, 1-D norms in F32.

    ``weights`` must hold exactly :func:`tensor_shapes`' names and shapes; Q/K are stored as
    llama.cpp's "normal" RoPE mode reads them (rotated pairs are adjacent: 2i, 2i+1).
    """
    path = Path(path)
    tokens, scores, types = char_vocab()
    expected = tensor_shapes(shape, len(tokens))
    got = {k: tuple(v.shape) for k, v in weights.items()}
    if got != expected:
        wrong = sorted(set(got.items()) ^ set(expected.items()))[:4]
        raise ValueError(f"weights do not match the llama shape {shape}: {wrong}")
    w = GGUFWriter(path, ARCH)
    w.add_type("model")
    w.add_name(name)
    w.add_context_length(shape.n_ctx)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_layer_norm_rms_eps(shape.rms_eps)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_rope_freq_base(shape.rope_base)
    w.add_vocab_size(len(tokens))
    w.add_file_type(FTYPE.get(weight_type, 7))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    for key, value in (metadata or {}).items():
        w.add_string(key, value)
    for tname, arr in weights.items():
        if arr.ndim == 2 and weight_type != GGMLQuantizationType.F32:
            data = quantize(np.ascontiguousarray(arr, dtype=np.float32), weight_type)
            w.add_tensor(tname, data, raw_dtype=weight_type)
        else:
            w.add_tensor(tname, np.ascontiguousarray(arr, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def read_llama_gguf(path: str | Path) -> tuple[LlamaShape, dict[str, np.ndarray]]:
    """The shape and float32 weights of a GGUF :func:`write_llama_gguf` wrote (any weight type
    gguf can dequantise): lets a run continue from a checkpoint (``--init-from``)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)

    def value(key: str) -> float:
        field = reader.fields[key]
        return float(
            f"{float(field.parts[field.data[0]][0]):.7g}"
        )  # float32 -> 1e-05, not 9.99e-06

    shape = LlamaShape(
        n_embd=int(value("llama.embedding_length")),
        n_layer=int(value("llama.block_count")),
        n_head=int(value("llama.attention.head_count")),
        n_head_kv=int(value("llama.attention.head_count_kv")),
        n_ff=int(value("llama.feed_forward_length")),
        n_ctx=int(value("llama.context_length")),
        rope_base=value("llama.rope.freq_base"),
        rms_eps=value("llama.attention.layer_norm_rms_epsilon"),
    )
    expected = tensor_shapes(shape)
    weights = {}
    for t in reader.tensors:
        arr = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        weights[t.name] = arr.reshape(expected[t.name])
    return shape, weights

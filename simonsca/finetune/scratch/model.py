"""A llama-architecture transformer in plain torch whose tensors map 1:1 onto a llama GGUF.

Why not transformers' LlamaForCausalLM: its q/k weights use the "NeoX" half-split RoPE layout and
are permuted when llama.cpp's converter writes them. Here RoPE rotates *adjacent* pairs
``(2i, 2i+1)`` -- llama.cpp's "normal" mode for the llama arch -- so the weights are written as
they are and the GGUF computes what torch computes (``tests/test_scratch_control.py`` checks the
logits through llama-cpp-python).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simonsca.finetune.scratch.gguf_llama import LlamaShape


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(n_pos: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape (n_pos, head_dim // 2): angle pos * base^(-2i/head_dim)."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of x (batch, heads, seq, head_dim), llama.cpp's normal mode."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[: x.shape[-2]], sin[: x.shape[-2]]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, shape: LlamaShape) -> None:
        super().__init__()
        self.shape = shape
        d, kv = shape.n_embd, shape.head_dim * shape.n_head_kv
        self.attn_norm = RMSNorm(d, shape.rms_eps)
        self.attn_q = nn.Linear(d, d, bias=False)
        self.attn_k = nn.Linear(d, kv, bias=False)
        self.attn_v = nn.Linear(d, kv, bias=False)
        self.attn_output = nn.Linear(d, d, bias=False)
        self.ffn_norm = RMSNorm(d, shape.rms_eps)
        self.ffn_gate = nn.Linear(d, shape.n_ff, bias=False)
        self.ffn_up = nn.Linear(d, shape.n_ff, bias=False)
        self.ffn_down = nn.Linear(shape.n_ff, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        s = self.shape
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.attn_q(h).view(b, t, s.n_head, s.head_dim).transpose(1, 2)
        k = self.attn_k(h).view(b, t, s.n_head_kv, s.head_dim).transpose(1, 2)
        v = self.attn_v(h).view(b, t, s.n_head_kv, s.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if s.n_head_kv != s.n_head:
            rep = s.n_head // s.n_head_kv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_output(a.transpose(1, 2).reshape(b, t, s.n_embd))
        h = self.ffn_norm(x)
        return x + self.ffn_down(F.silu(self.ffn_gate(h)) * self.ffn_up(h))


class ScratchLlama(nn.Module):
    """Token embedding, ``n_layer`` pre-norm blocks, final RMSNorm, untied output layer."""

    def __init__(self, shape: LlamaShape, n_vocab: int) -> None:
        super().__init__()
        self.shape = shape
        self.token_embd = nn.Embedding(n_vocab, shape.n_embd)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.output_norm = RMSNorm(shape.n_embd, shape.rms_eps)
        self.output = nn.Linear(shape.n_embd, n_vocab, bias=False)
        cos, sin = rope_tables(shape.n_ctx, shape.head_dim, shape.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer)."""
        std = 0.02
        for name, p in self.named_parameters():
            if p.ndim == 1:
                nn.init.ones_(p)
            elif name.endswith(("attn_output.weight", "ffn_down.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.shape.n_layer))
            else:
                nn.init.normal_(p, 0.0, std)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (batch, seq, n_embd)."""
        x = self.token_embd(ids)
        cos, sin = self.rope_cos, self.rope_sin
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.output_norm(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (batch, seq, n_vocab)."""
        return self.output(self.hidden(ids))

    def load_gguf_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Set every tensor from :meth:`gguf_weights`-style arrays (e.g. a read checkpoint)."""
        params = dict(self.named_parameters())
        for name, arr in weights.items():
            torch_name = name.replace("blk.", "blocks.", 1) if name.startswith("blk.") else name
            with torch.no_grad():
                params[torch_name].copy_(torch.from_numpy(np.array(arr, dtype=np.float32)))

    def gguf_weights(self) -> dict[str, np.ndarray]:
        """Every tensor under its GGUF name, float32 numpy, (out, in) order."""
        out = {
            "token_embd.weight": self.token_embd.weight,
            "output_norm.weight": self.output_norm.weight,
            "output.weight": self.output.weight,
        }
        for i, block in enumerate(self.blocks):
            for name, p in block.named_parameters():
                out[f"blk.{i}.{name}"] = p
        return {k: v.detach().float().cpu().numpy() for k, v in out.items()}

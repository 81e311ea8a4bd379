"""The training loop of the from-scratch control: AdamW, warm-up + cosine, GGUF checkpoints.

Kept small on purpose: one process, one thread by default (the development machine is shared),
loss on answer tokens only, and a GGUF written every ``checkpoint_every`` steps so that the run
can be judged -- and its learning curve drawn -- by simonsca through llama.cpp at any point.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from simonsca.finetune.data import IGNORE_INDEX, Example, pad_batch
from simonsca.finetune.scratch.gguf_llama import LlamaShape, write_llama_gguf
from simonsca.finetune.scratch.model import ScratchLlama

PAD_ID = 2  # </s>: never a label (padding is masked), any valid id will do


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 8
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    checkpoint_every: int = 250
    max_minutes: float = 60.0
    torch_seed: int = 0


@dataclass
class Checkpoint:
    step: int
    file: str
    sha256: str
    size_bytes: int
    wall_s: float


@dataclass
class TrainResult:
    loss_curve: list[float] = field(default_factory=list)
    step_wall_s: list[float] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    stopped_early: bool = False
    train_wall_s: float = 0.0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` then cosine down to ``min_lr_ratio * lr`` (step counts from 0)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(
    model: ScratchLlama, out: Path, step: int, weight_type: object, t0: float
) -> Checkpoint:
    """``step-NNNNNN.gguf``: the model at ``step`` as llama.cpp will run it."""
    path = out / f"step-{step:06d}.gguf"
    write_llama_gguf(
        path,
        model.gguf_weights(),
        model.shape,
        weight_type=weight_type,  # type: ignore[arg-type]
        name=f"simonsca scratch-life step {step}",
    )
    return Checkpoint(step, path.name, sha256(path), path.stat().st_size, time.time() - t0)


def batch_loss(model: ScratchLlama, batch: list[Example]) -> torch.Tensor:
    """Mean cross-entropy over the batch's answer tokens (output layer only where needed)."""
    ids, _, labels = pad_batch(batch, PAD_ID)
    x = torch.tensor(ids)
    y = torch.tensor(labels)
    hidden = model.hidden(x[:, :-1])
    target = y[:, 1:]
    keep = target != IGNORE_INDEX
    logits = model.output(hidden[keep])
    return F.cross_entropy(logits, target[keep])


def train(
    model: ScratchLlama,
    examples: Iterator[tuple[int, Example]],
    cfg: TrainConfig,
    out: Path,
    weight_type: object,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train for ``cfg.steps`` (or until ``max_minutes``), checkpointing at 0, every
    ``checkpoint_every`` steps and at the end."""
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    res = TrainResult()
    t0 = time.time()
    res.checkpoints.append(save_checkpoint(model, out, 0, weight_type, t0))
    rng = random.Random(cfg.torch_seed)
    ema: float | None = None
    for step in range(cfg.steps):
        if (time.time() - t0) / 60 > cfg.max_minutes:
            res.stopped_early = True
            log(f"stopping at step {step}: --max-minutes {cfg.max_minutes} reached")
            break
        ts = time.time()
        batch = []
        for _ in range(cfg.batch_size):
            seed, ex = next(examples)
            res.seeds.append(seed)
            batch.append(ex)
        rng.shuffle(batch)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = batch_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        value = float(loss.item())
        res.loss_curve.append(value)
        res.step_wall_s.append(time.time() - ts)
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        done = step + 1
        if done % 10 == 0 or done == 1:
            elapsed = time.time() - t0
            log(
                f"step {done}/{cfg.steps} loss {value:.4f} (ema {ema:.4f}) "
                f"lr {lr_at(step, cfg):.2e} {res.step_wall_s[-1]:.2f} s/step "
                f"elapsed {elapsed / 60:.1f} min"
            )
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            res.checkpoints.append(save_checkpoint(model, out, done, weight_type, t0))
            log(f"checkpoint {res.checkpoints[-1].file}")
    steps_done = len(res.loss_curve)
    if res.checkpoints[-1].step != steps_done:
        res.checkpoints.append(save_checkpoint(model, out, steps_done, weight_type, t0))
        log(f"checkpoint {res.checkpoints[-1].file}")
    res.train_wall_s = time.time() - t0
    return res


def build_model(shape: LlamaShape, n_vocab: int, seed: int) -> ScratchLlama:
    torch.manual_seed(seed)
    return ScratchLlama(shape, n_vocab)

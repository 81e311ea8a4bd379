"""Logit-level effect of a finetune: do two models (or base vs base+LoRA) predict answers differently?

For each (prompt, answer) pair the answer is teacher-forced through simonsca's one llama.cpp layer
(:class:`~simonsca.models.llamacpp.LlamaCppModel`: the same loading, adapter handling, tokens and
decode grouping as the evaluation itself), with logits computed at the answer positions only.
Over those it measures:

* mean KL(a || b) between the next-token distributions,
* top-1 agreement: how often both models' most likely token is the same,
* mean log-likelihood of the correct answer tokens under each model, and its change (b - a).

Two identical models give KL 0, agreement 1 and change 0 -- the "finetune changed nothing"
signature, reported as a finding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simonsca.errors import AdapterMismatch, ContextTooSmall
from simonsca.forensics.findings import Finding, Severity

#: Mean KL below this (nats) and full top-1 agreement: "no measurable effect".
NO_EFFECT_KL = 1e-6


def top_choices(rows: np.ndarray) -> np.ndarray:
    """Per row, the token the model chooses, or -1 where the top is tied (a tie is not a choice:
    see :func:`simonsca.models.base.is_top_choice`)."""
    tied = np.sum(rows == rows.max(-1, keepdims=True), axis=-1) > 1
    return np.where(tied, -1, rows.argmax(-1))


def same_choices(a: np.ndarray, b: np.ndarray) -> int:
    """Positions where both models choose the same token (a tie in either is no agreement)."""
    ca, cb = top_choices(a), top_choices(b)
    return int(np.sum((ca == cb) & (ca >= 0)))


@dataclass(frozen=True)
class LogitEffect:
    model_a: Path
    model_b: Path
    lora_a: Path | None
    lora_b: Path | None
    n_items: int
    n_positions: int  # answer tokens scored, over all items
    mean_kl: float  # mean KL(a || b), nats per answer position
    max_kl: float
    top1_agreement: float  # answer positions where both models choose the same token
    mean_logprob_a: float  # mean log p(answer token), nats per token
    mean_logprob_b: float
    findings: tuple[Finding, ...]

    def summary(self) -> str:
        b = self.model_b.name + (f" + {self.lora_b.name}" if self.lora_b else "")
        a = self.model_a.name + (f" + {self.lora_a.name}" if self.lora_a else "")
        return (
            f"{b} vs {a} over {self.n_positions} answer tokens of {self.n_items} items: "
            f"mean KL {self.mean_kl:.3g} nats, top-1 agreement {self.top1_agreement:.1%}, "
            f"answer log-likelihood {self.mean_logprob_a:.3f} -> {self.mean_logprob_b:.3f} nats/token"
        )

    @property
    def delta_logprob(self) -> float:
        """Change in mean log-likelihood of the answers, b - a (positive: b likes them more)."""
        return self.mean_logprob_b - self.mean_logprob_a


def logit_effect(
    model_a: str | Path,
    model_b: str | Path,
    prompts_with_answers: Iterable[tuple[str, str]],
    *,
    lora_a: str | Path | None = None,
    lora_b: str | Path | None = None,
    n_ctx: int | None = None,
    n_threads: int | None = None,
) -> LogitEffect:
    """Compare two models' teacher-forced predictions of the answers (model b may be base + lora_b)."""
    pa, pb = Path(model_a), Path(model_b)
    la = Path(lora_a) if lora_a is not None else None
    lb = Path(lora_b) if lora_b is not None else None
    pairs = list(prompts_with_answers)
    if not pairs:
        raise ValueError("logit_effect needs at least one (prompt, answer) pair")
    from simonsca.models.llamacpp import LlamaCppModel

    # Tokenise with model a's own tokenizer to size the context (the same cut of the
    # prompt/answer boundary the teacher-forced scoring uses).
    tokenizer = LlamaCppModel(pa, vocab_only=True)
    try:
        sizes = []
        for prompt, answer in pairs:
            p, a, _ = tokenizer.answer_tokens(prompt, answer)
            sizes.append(len(p) + len(a))
    finally:
        tokenizer.close()
    longest = max(sizes)
    ctx = n_ctx or max(64, 32 * math.ceil(longest / 32))
    if longest > ctx:
        raise ContextTooSmall(
            f"a prompt+answer has {longest} tokens but n_ctx is {ctx}; raise n_ctx"
        )
    ma = LlamaCppModel(pa, lora_path=la, n_ctx=ctx, n_threads=n_threads)
    try:
        mb = LlamaCppModel(pb, lora_path=lb, n_ctx=ctx, n_threads=n_threads)
    except BaseException:
        ma.close()
        raise
    try:
        if ma.n_vocab != mb.n_vocab:
            raise AdapterMismatch(
                f"{pa} and {pb} have different vocabularies ({ma.n_vocab} vs {mb.n_vocab} tokens)"
            )
        kl_sum = 0.0
        kl_max = 0.0
        agree = 0
        lp_a = lp_b = 0.0
        n = 0
        n_items = 0
        for prompt, answer in pairs:
            _, tokens, _ = ma.answer_tokens(prompt, answer)
            if not tokens:
                continue
            la_ = ma.answer_log_softmax(prompt, answer)
            lb_ = mb.answer_log_softmax(prompt, answer)
            target = np.asarray(tokens)
            kl = np.sum(np.exp(la_) * (la_ - lb_), axis=-1)
            kl_sum += float(kl.sum())
            kl_max = max(kl_max, float(kl.max()))
            agree += same_choices(la_, lb_)
            idx = np.arange(len(tokens))
            lp_a += float(la_[idx, target].sum())
            lp_b += float(lb_[idx, target].sum())
            n += len(tokens)
            n_items += 1
    finally:
        ma.close()
        mb.close()
    effect = LogitEffect(
        model_a=pa,
        model_b=pb,
        lora_a=la,
        lora_b=lb,
        n_items=n_items,
        n_positions=n,
        mean_kl=kl_sum / n,
        max_kl=kl_max,
        top1_agreement=agree / n,
        mean_logprob_a=lp_a / n,
        mean_logprob_b=lp_b / n,
        findings=(),
    )
    import dataclasses

    return dataclasses.replace(effect, findings=logit_findings(effect))


def logit_findings(e: LogitEffect) -> tuple[Finding, ...]:
    if e.mean_kl < NO_EFFECT_KL and e.top1_agreement == 1.0:
        b = f"{e.model_b.name}" + (f" + {e.lora_b.name}" if e.lora_b else "")
        a = f"{e.model_a.name}" + (f" + {e.lora_a.name}" if e.lora_a else "")
        return (
            Finding(
                "no-logit-effect",
                Severity.ERROR,
                f"{b} predicts the answers exactly like {a} (mean KL {e.mean_kl:.1e} nats, top-1 agreement 100%)",
                f"Over {e.n_positions} answer tokens of {e.n_items} items the next-token distributions are the "
                "same: whatever the finetune learned is not in the model being evaluated.",
                {
                    "items": e.n_items,
                    "positions": e.n_positions,
                    "mean_kl": e.mean_kl,
                    "top1_agreement": e.top1_agreement,
                    "delta_logprob": e.delta_logprob,
                },
            ),
        )
    return ()

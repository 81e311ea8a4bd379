"""Training-data doctor: what the trainer really saw of a v5 ``train_data.txt``.

* splits the file on the sample-start marker (``<s>``) and tokenises every sample with the
  model's own tokenizer (``load_tokenizer``, llama.cpp with ``vocab_only``: no weights loaded);
* counts samples longer than the context and how much of each one's ANSWER (the text after
  ``# Output\\n``) falls beyond it -- the trainer never sees that part;
* says whether the marker is one special (control) token of that tokenizer or plain text;
* counts duplicate samples and eval items whose puzzle appears in the training file;
* reads a llama.cpp ``finetune`` log, if given: iterations, samples seen vs one epoch, last loss,
  learning-rate schedule.

Token counts: ``len(tokenize(sample, add_bos=True))``, as llama.cpp's finetune puts BOS before
each sample; the answer's share is ``total - len(tokenize(prompt, add_bos=True))`` where the prompt
is the sample up to and including ``# Output\\n`` (tokenising the two parts separately can differ
from the joint tokenisation by a token at the boundary).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simonsca.errors import DatasetError
from simonsca.forensics.findings import Finding, Severity, sort_findings

OUTPUT_MARK = "# Output\n"
INPUT_MARK = "# Input\n"

#: An epoch fraction below this is an ERROR (training barely started), below 1.0 a WARNING.
EARLY_STOP_ERROR = 0.10


# ---------------------------------------------------------------------------------------------
# training log


@dataclass(frozen=True)
class TrainLog:
    """What a llama.cpp ``finetune`` log says about the run."""

    path: Path
    iterations: int  # last iteration reached
    samples_seen: int  # the ``sample=N/...`` counter at the last iteration
    total_samples: int  # samples in one epoch
    last_loss: float | None
    last_sched: float | None  # learning-rate schedule multiplier (<1: still warming up)
    losses: tuple[float, ...]
    over_context: int | None  # "found N samples ... that exceed context length"
    max_length: int | None
    n_ctx: int | None
    lora_rank: int | None
    model_base: str | None

    @property
    def epoch_fraction(self) -> float | None:
        if not self.total_samples:
            return None
        return self.samples_seen / self.total_samples


_ITER = re.compile(
    r"train_opt_callback:\s*iter=\s*(\d+)\s+sample=(\d+)/(\d+)\s+sched=([0-9.eE+-]+)\s+loss=([0-9.eE+-]+)"
)
_OVER = re.compile(r"found (\d+) samples \(max length (\d+)\) that exceed context length of (\d+)")
_TOTAL = re.compile(r"total number of samples:\s*(\d+)")
_NCTX = re.compile(r"print_params: n_ctx\s*:\s*(\d+)")
_RANK = re.compile(r"print_lora_params: n_rank_wq\s*:\s*(\d+)")
_BASE = re.compile(r"main: model base = '([^']*)'")


def parse_train_log(path: str | Path) -> TrainLog:
    """Parse a llama.cpp ``finetune`` log (the seed's style); DatasetError when nothing is found."""
    p = Path(path)
    if p.is_dir():
        raise DatasetError(f"training log {p} is a folder; give the llama.cpp finetune log file")
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(f"cannot read training log {p}: {exc.strerror or exc}") from None
    iters = _ITER.findall(text)
    over = _OVER.search(text)
    total = _TOTAL.search(text)
    if not iters and not over and not total:
        raise DatasetError(
            f"training log {p} has no llama.cpp finetune lines (train_opt_callback/tokenize_file)"
        )
    last = iters[-1] if iters else None
    total_samples = int(last[2]) if last else (int(total.group(1)) if total else 0)
    losses = tuple(float(m[4]) for m in iters if int(m[0]) > 0)
    nctx = _NCTX.search(text)
    rank = _RANK.search(text)
    base = _BASE.search(text)
    return TrainLog(
        path=p,
        iterations=int(last[0]) if last else 0,
        samples_seen=int(last[1]) if last else 0,
        total_samples=total_samples,
        last_loss=losses[-1] if losses else None,
        last_sched=float(last[3]) if last else None,
        losses=losses,
        over_context=int(over.group(1)) if over else None,
        max_length=int(over.group(2)) if over else None,
        n_ctx=int(over.group(3)) if over else (int(nctx.group(1)) if nctx else None),
        lora_rank=int(rank.group(1)) if rank else None,
        model_base=base.group(1) if base else None,
    )


def _n_tokens(n: int) -> str:
    return "one ordinary token" if n == 1 else f"{n} tokens"


_QUANT_TAG = re.compile(
    r"(?<![A-Za-z0-9])(I?Q\d_[A-Z0-9]+(?:_[SML])?|Q\d_\d|BF16|F16|F32)(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def quant_tag(name: str) -> str | None:
    """The quantisation tag in a model file name, e.g. ``Q8_0`` in ``Llama-3-8B-Q8_0.gguf``."""
    found = _QUANT_TAG.findall(Path(name).name)
    return found[-1].upper() if found else None


def training_base_findings(
    log: TrainLog, model_path: str | Path, role: str = "merge base"
) -> tuple[Finding, ...]:
    """A finding when the log's training base and ``model_path`` carry different quantisation tags."""
    if not log.model_base:
        return ()
    trained, used = quant_tag(log.model_base), quant_tag(str(model_path))
    if trained is None or used is None or trained == used:
        return ()
    return (
        Finding(
            "trained-on-other-quantisation",
            Severity.WARNING,
            f"the adapter was trained on a {trained} model but the {role} is {used}",
            f"Training base: {Path(log.model_base).name}; {role}: {Path(model_path).name}. A LoRA learns a "
            f"correction for the weights it saw; applied to differently rounded weights ({used}) part of it is "
            "noise. Merge into (or run with) the same file the adapter was trained on.",
            {"trained_on": trained, "applied_to": used},
        ),
    )


def log_findings(log: TrainLog) -> tuple[Finding, ...]:
    findings = []
    frac = log.epoch_fraction
    if frac is not None and log.iterations > 0 and frac < 1.0:
        warm = log.last_sched is not None and log.last_sched < 1.0
        findings.append(
            Finding(
                "training-stopped-early",
                Severity.ERROR if frac < EARLY_STOP_ERROR else Severity.WARNING,
                f"training stopped at {frac:.0%} of an epoch (iteration {log.iterations}, "
                f"{log.samples_seen} of {log.total_samples} samples)",
                (f"Last loss {log.last_loss:.3g}. " if log.last_loss is not None else "")
                + (
                    f"The learning-rate schedule was still warming up (sched={log.last_sched:g}). "
                    if warm
                    else ""
                )
                + "The adapter saw a small fraction of the data; let training run for at least one epoch.",
                {
                    "iterations": log.iterations,
                    "samples_seen": log.samples_seen,
                    "total_samples": log.total_samples,
                    "epoch_fraction": frac,
                    "last_loss": log.last_loss,
                    "last_sched": log.last_sched,
                    "lora_rank": log.lora_rank,
                },
            )
        )
    if log.over_context:
        findings.append(
            Finding(
                "log-samples-over-context",
                Severity.WARNING,
                f"the trainer cut off {log.over_context} of {log.total_samples} samples "
                f"(max length {log.max_length} > context {log.n_ctx})",
                "As reported by the trainer's tokenize_file; see the doctor's truncation finding for "
                "how much of each answer was lost.",
                {
                    "over_context": log.over_context,
                    "max_length": log.max_length,
                    "n_ctx": log.n_ctx,
                    "total_samples": log.total_samples,
                },
            )
        )
    return tuple(findings)


# ---------------------------------------------------------------------------------------------
# training file


@dataclass(frozen=True)
class DoctorReport:
    train_file: Path
    model_path: Path
    n_ctx: int
    sample_start: str
    n_samples: int
    tokens_min: int
    tokens_max: int
    tokens_mean: float
    n_over_context: int  # samples longer than n_ctx tokens
    n_answer_cut: int  # samples whose answer is (partly) beyond the context
    n_answer_lost_entirely: int  # samples with no answer token inside the context
    answer_tokens_total: int
    answer_tokens_lost: int  # answer tokens beyond the context, summed over samples
    mean_answer_fraction_lost: float  # over the cut samples
    marker_is_special: bool  # the marker is one control token of the tokenizer
    marker_tokens: tuple[int, ...]
    n_duplicates: int  # samples identical to an earlier one
    n_eval_items: int
    n_eval_prompt_overlap: int  # eval items whose instruction+input is a training sample's
    n_eval_input_overlap: int  # eval items whose input grid text appears in training
    n_without_output: int  # samples with no "# Output" section
    log: TrainLog | None
    seconds: float
    findings: tuple[Finding, ...]

    def summary(self) -> str:
        lines = [
            (
                f"{self.train_file.name}: {self.n_samples} samples, {self.tokens_min}-{self.tokens_max} tokens "
                f"(mean {self.tokens_mean:.0f}) with {self.model_path.name}'s tokenizer; "
                f"{self.n_over_context} over {self.n_ctx}, {self.n_answer_cut} with a cut answer "
                f"({self.answer_tokens_lost} of {self.answer_tokens_total} answer tokens lost)"
            ),
            (
                f"marker {self.sample_start!r}: {'special token' if self.marker_is_special else 'plain text'}; "
                f"{self.n_duplicates} duplicates; eval overlap {self.n_eval_prompt_overlap} prompts / "
                f"{self.n_eval_input_overlap} inputs of {self.n_eval_items}"
            ),
        ]
        if self.log is not None and self.log.epoch_fraction is not None:
            lines.append(
                f"log: iteration {self.log.iterations}, {self.log.samples_seen}/{self.log.total_samples} samples "
                f"({self.log.epoch_fraction:.1%} of an epoch), last loss {self.log.last_loss}"
            )
        return "\n".join(lines)


def split_samples(text: str, sample_start: str) -> list[str]:
    """Samples as the trainer splits them: text after each marker up to the next (marker dropped)."""
    if not sample_start:
        return [text] if text else []
    # Text before the first marker is not a sample (llama.cpp's finetune skips it too).
    return text.split(sample_start)[1:]


def doctor(
    train_file: str | Path,
    model_path: str | Path,
    n_ctx: int = 512,
    sample_start: str = "<s>",
    train_log: str | Path | None = None,
    eval_items: Iterable[Any] | None = None,
) -> DoctorReport:
    """Check a v5 training file against a model's tokenizer and context; see the module docstring."""
    t0 = time.perf_counter()
    train_path, model = Path(train_file), Path(model_path)
    if train_path.is_dir():
        raise DatasetError(f"training file {train_path} is a folder; give the train_data.txt")
    try:
        text = train_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"training file not found: {train_path}") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"training file {train_path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"offset {exc.start}); give the train_data.txt simonsca prepare writes"
        ) from None
    except OSError as exc:
        raise DatasetError(
            f"cannot read training file {train_path}: {exc.strerror or exc}"
        ) from None
    samples = split_samples(text, sample_start)
    if not samples:
        raise DatasetError(f"training file {train_path} has no samples (marker {sample_start!r})")
    from simonsca.models.llamacpp import load_tokenizer

    tok = load_tokenizer(model)
    try:
        totals = np.empty(len(samples), dtype=np.int64)
        prompts = np.full(len(samples), -1, dtype=np.int64)
        for i, s in enumerate(samples):
            data = s.encode("utf-8")
            totals[i] = tok.count_bytes(data, bos=True)
            k = s.find(OUTPUT_MARK)
            if k >= 0:
                prefix = len(s[: k + len(OUTPUT_MARK)].encode("utf-8"))
                prompts[i] = tok.count_bytes(data[:prefix], bos=True)
        marker_tokens = (
            tuple(tok.tokenize_bytes(sample_start.encode("utf-8"), special=True))
            if sample_start
            else ()
        )
        marker_special = len(marker_tokens) == 1 and tok.is_control(marker_tokens[0])
    finally:
        tok.close()

    has_out = prompts >= 0
    answers = np.where(has_out, totals - prompts, 0)
    kept = np.clip(n_ctx - np.where(has_out, prompts, 0), 0, None)
    lost = np.where(has_out, np.clip(answers - kept, 0, None), 0)
    cut = lost > 0
    n_cut = int(cut.sum())
    frac_lost = float(np.mean(lost[cut] / np.maximum(answers[cut], 1))) if n_cut else 0.0

    counts = Counter(samples)
    n_dup = sum(c - 1 for c in counts.values())

    n_eval = prompt_overlap = input_overlap = 0
    if eval_items is not None:
        train_prompts = set()
        train_inputs = set()
        for s in samples:
            k = s.find(OUTPUT_MARK)
            if k < 0:
                continue
            train_prompts.add(s[: k + len(OUTPUT_MARK)])
            j = s.find(INPUT_MARK)
            if 0 <= j < k:
                train_inputs.add(s[j + len(INPUT_MARK) : k].rstrip("\n"))
        for item in eval_items:
            n_eval += 1
            prompt_overlap += getattr(item, "prompt", None) in train_prompts
            input_overlap += getattr(item, "input", None) in train_inputs

    log = parse_train_log(train_log) if train_log is not None else None
    report = DoctorReport(
        train_file=train_path,
        model_path=model,
        n_ctx=n_ctx,
        sample_start=sample_start,
        n_samples=len(samples),
        tokens_min=int(totals.min()),
        tokens_max=int(totals.max()),
        tokens_mean=float(totals.mean()),
        n_over_context=int((totals > n_ctx).sum()),
        n_answer_cut=n_cut,
        n_answer_lost_entirely=int((has_out & (kept == 0) & (answers > 0)).sum()),
        answer_tokens_total=int(answers.sum()),
        answer_tokens_lost=int(lost.sum()),
        mean_answer_fraction_lost=frac_lost,
        marker_is_special=marker_special,
        marker_tokens=marker_tokens,
        n_duplicates=n_dup,
        n_eval_items=n_eval,
        n_eval_prompt_overlap=prompt_overlap,
        n_eval_input_overlap=input_overlap,
        n_without_output=int((~has_out).sum()),
        log=log,
        seconds=0.0,
        findings=(),
    )
    findings = doctor_findings(report)
    return dataclasses.replace(report, findings=findings, seconds=time.perf_counter() - t0)


def doctor_findings(r: DoctorReport) -> tuple[Finding, ...]:
    f: list[Finding] = []
    name = r.train_file.name
    if r.n_answer_cut:
        f.append(
            Finding(
                "answers-truncated",
                Severity.ERROR if r.n_answer_cut / r.n_samples >= 0.05 else Severity.WARNING,
                f"{r.n_answer_cut} of {r.n_samples} samples in {name} are cut off inside the answer "
                f"at a {r.n_ctx}-token context",
                f"{r.n_over_context} samples exceed the context (longest {r.tokens_max} tokens); on average "
                f"{r.mean_answer_fraction_lost:.0%} of a cut sample's answer is never trained "
                f"({r.answer_tokens_lost} answer tokens in all, {r.n_answer_lost_entirely} samples lose the whole "
                "answer). The model learns truncated grids: raise the context (--ctx) or drop/shrink long samples.",
                {
                    "samples": r.n_samples,
                    "over_context": r.n_over_context,
                    "answer_cut": r.n_answer_cut,
                    "answer_lost_entirely": r.n_answer_lost_entirely,
                    "answer_tokens_lost": r.answer_tokens_lost,
                    "answer_tokens_total": r.answer_tokens_total,
                    "mean_answer_fraction_lost": r.mean_answer_fraction_lost,
                    "n_ctx": r.n_ctx,
                    "tokens_max": r.tokens_max,
                },
            )
        )
    elif r.n_over_context:
        f.append(
            Finding(
                "samples-over-context",
                Severity.WARNING,
                f"{r.n_over_context} of {r.n_samples} samples exceed the {r.n_ctx}-token context",
                "The cut falls outside the answer sections, but the trainer still drops those tokens.",
                {"over_context": r.n_over_context, "n_ctx": r.n_ctx, "tokens_max": r.tokens_max},
            )
        )
    if r.sample_start and not r.marker_is_special:
        f.append(
            Finding(
                "sample-start-plain-text",
                Severity.INFO,
                f"sample-start marker {r.sample_start!r} is plain text for this tokenizer "
                f"({_n_tokens(len(r.marker_tokens))}), not a special token",
                "llama.cpp's finetune --sample-start splits on it and drops it, which is fine; a trainer that "
                "does not split on it would learn the marker as text (and at inference the model may emit it).",
                {"marker_tokens": len(r.marker_tokens)},
            )
        )
    if r.n_without_output:
        f.append(
            Finding(
                "samples-without-output",
                Severity.WARNING,
                f"{r.n_without_output} of {r.n_samples} samples have no '# Output' section",
                "Check the sample-start marker and the file format (v5: <s>instruction, # Input, # Output).",
                {"samples_without_output": r.n_without_output},
            )
        )
    if r.n_duplicates:
        f.append(
            Finding(
                "duplicate-samples",
                Severity.WARNING if r.n_duplicates / r.n_samples >= 0.01 else Severity.INFO,
                f"{r.n_duplicates} of {r.n_samples} samples are exact duplicates",
                "Duplicates weight some puzzles more than others and can leak into evaluation.",
                {"duplicates": r.n_duplicates, "samples": r.n_samples},
            )
        )
    if r.n_eval_prompt_overlap or r.n_eval_input_overlap:
        f.append(
            Finding(
                "eval-overlap",
                Severity.ERROR if r.n_eval_prompt_overlap else Severity.WARNING,
                f"{r.n_eval_prompt_overlap} eval prompts and {r.n_eval_input_overlap} eval input grids "
                f"(of {r.n_eval_items} eval items) appear in {name}",
                "Evaluation on trained puzzles measures memorisation; draw eval items from a disjoint seed range.",
                {
                    "eval_items": r.n_eval_items,
                    "prompt_overlap": r.n_eval_prompt_overlap,
                    "input_overlap": r.n_eval_input_overlap,
                },
            )
        )
    if r.log is not None:
        f.extend(log_findings(r.log))
    return sort_findings(f)

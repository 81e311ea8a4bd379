"""Forensics: why a finetune changed nothing -- weights diff, adapter stats, logits, training data.

Each analysis returns a frozen report whose ``findings`` name what is wrong (none on a healthy
input); :func:`explain_failure` runs whichever analyses the given files allow and collects them.

Heavy imports (llama_cpp) happen inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simonsca.adapters.gguf_lora import read_adapter
from simonsca.errors import AdapterMismatch, SimonscaError
from simonsca.forensics.adapter import AdapterReport, AdapterTensorStats, inspect_adapter
from simonsca.forensics.doctor import (
    DoctorReport,
    TrainLog,
    doctor,
    log_findings,
    parse_train_log,
    training_base_findings,
)
from simonsca.forensics.findings import (
    Finding,
    Severity,
    format_findings_table,
    sort_findings,
    to_json,
)
from simonsca.forensics.gguf_diff import ModelDiff, TensorDiff, diff_models

__all__ = [
    "AdapterReport",
    "AdapterTensorStats",
    "DoctorReport",
    "Finding",
    "LogitEffect",
    "ModelDiff",
    "Severity",
    "TensorDiff",
    "TrainLog",
    "diff_models",
    "doctor",
    "explain_failure",
    "format_findings_table",
    "inspect_adapter",
    "logit_effect",
    "parse_train_log",
    "read_adapter",
    "to_json",
]


def __getattr__(name: str) -> Any:  # lazy: logit pulls in llama_cpp only when used
    if name in ("logit_effect", "LogitEffect"):
        from simonsca.forensics import logit

        return getattr(logit, name)
    raise AttributeError(name)


def explain_failure(
    *,
    base: str | Path | None = None,
    merged: str | Path | None = None,
    adapter: str | Path | None = None,
    train_file: str | Path | None = None,
    train_log: str | Path | None = None,
    tokenizer_model: str | Path | None = None,
    n_ctx: int = 512,
    sample_start: str = "<s>",
    eval_items: Iterable[Any] | None = None,
    merge_type: str | None = None,
    prompts_with_answers: Iterable[tuple[str, str]] | None = None,
) -> tuple[Finding, ...]:
    """Every applicable finding for the files given, errors first.

    * ``base`` + ``merged``: weight diff (identical? re-quantised?);
    * ``base`` + ``adapter``: adapter size and survival in the base's type (or ``merge_type``);
    * ``train_file`` (+ ``tokenizer_model``, default ``base``): the training-data doctor;
    * ``train_log``: early stop, over-long samples as the trainer reported them, and (with
      ``base``) a training base of another quantisation than ``base``;
    * ``prompts_with_answers`` (+ ``base`` and ``merged`` or ``adapter``): the logit effect of
      the finetune (slow on big models: a few items).

    An analysis that cannot run (e.g. the adapter does not fit the base) becomes a finding of its
    own instead of an exception, so the eval suite can always print what is known.
    """
    findings: list[Finding] = []

    def attempt(code: str, what: str, fn: Any) -> None:
        try:
            findings.extend(fn())
        except AdapterMismatch as exc:
            findings.append(
                Finding("adapter-mismatch", Severity.ERROR, f"adapter does not fit: {exc}", "", {})
            )
        except SimonscaError as exc:
            findings.append(Finding(code, Severity.ERROR, f"{what} failed: {exc}", "", {}))

    if base is not None and merged is not None:
        attempt("diff-failed", "weight diff", lambda: diff_models(base, merged).findings)
    if base is not None and adapter is not None:
        attempt(
            "adapter-check-failed",
            "adapter inspection",
            lambda: inspect_adapter(base, adapter, resolution_type=merge_type).findings,
        )
    model_for_tokens = tokenizer_model or base
    if train_file is not None and model_for_tokens is not None:
        attempt(
            "doctor-failed",
            "training-data doctor",
            lambda: (
                doctor(
                    train_file,
                    model_for_tokens,
                    n_ctx=n_ctx,
                    sample_start=sample_start,
                    train_log=train_log,
                    eval_items=eval_items,
                ).findings
            ),
        )
    elif train_log is not None:
        attempt(
            "log-failed", "training-log check", lambda: log_findings(parse_train_log(train_log))
        )
    if train_log is not None and base is not None:
        attempt(
            "log-failed",
            "training-log check",
            lambda: training_base_findings(parse_train_log(train_log), base),
        )
    if (
        prompts_with_answers is not None
        and base is not None
        and (merged is not None or adapter is not None)
    ):
        pairs = list(prompts_with_answers)

        def effect() -> tuple[Finding, ...]:
            from simonsca.forensics.logit import logit_effect

            if merged is not None:
                return logit_effect(base, merged, pairs).findings
            return logit_effect(base, base, pairs, lora_b=adapter).findings

        attempt("logit-check-failed", "logit effect", effect)
    # the same finding can come from two analyses (e.g. the log); keep the first
    seen: set[tuple[str, str]] = set()
    unique = []
    for f in findings:
        if (f.code, f.title) not in seen:
            seen.add((f.code, f.title))
            unique.append(f)
    return sort_findings(unique)

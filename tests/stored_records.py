"""Stored runs made by hand, for the tests of ``simonsca runs`` and ``--compare-to``.

A record is built the way the suite builds one -- real held-out items, answer texts scored by
the real parser and scorer, real teacher-forced scores, the real paired comparisons -- with no
model at all, and written to ``<reports>/<run id>/report.json`` through ``record.to_json``.

``stored_runs/v2-*.report.json.gz`` are real ``simonsca.report/2`` records, written by the last
simonsca that wrote /2 (commit 89e19d0) on the tiny fixtures::

    simonsca compare --n-ctx 512 --n-threads 1 --eval-size 2 --forced-size 3 --no-progress \\
        --no-cache --run-id v2-early fixtures/tiny/tiny-llama-q8_0.gguf \\
        --lora fixtures/tiny/tiny-lora.gguf                       # v2-raw
    ... --run-id v2-chat ... --prompt-mode both --chat-template chatml   # v2-both
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from simonsca import record as record_module
from simonsca.compare import NoiseFloor
from simonsca.dataset import eval_items, families
from simonsca.likelihood import forced_score
from simonsca.metrics import FORCED_METRICS, GENERATION_METRICS
from simonsca.models.base import AnswerLikelihood, ModelInfo
from simonsca.outcome import CheckOutcome, Status
from simonsca.record import (
    SCHEMA,
    AnswerRecord,
    Candidate,
    Environment,
    EvalRecord,
    Evaluation,
    ModelEntry,
    Pairing,
    answer_record,
    item_record,
    label_of,
)
from simonsca.settings import Settings
from simonsca.summary import summarize
from simonsca.tasks import Item
from simonsca.verdict import compare_runs

V2 = Path(__file__).parent / "stored_runs"
NOISE = NoiseFloor(item_nll=0.001, token_logprob=0.02, n_items=4, method="by hand")


@dataclass(frozen=True)
class Who:
    """A contender of a hand-made run: the first ``right`` generated items answered right (the
    rest not at all), every expected answer token at log-prob ``logprob`` when teacher forced."""

    name: str
    role: str = "candidate"  # "reference", "candidate" or "model"
    right: int = 1
    logprob: float = -0.3
    file: str | None = None  # its model file's name (default: NAME.gguf)


@cache
def items_for(n: int, seed: int = 1_000_000, family: str = "v5-small") -> tuple[Item, ...]:
    return tuple(eval_items(n, seed, families(family)))


def settings_for(**given: Any) -> Settings:
    """Small runs: 2 generated and 4 teacher-forced items unless told."""
    return Settings(**{"eval_size": 2, "forced_size": 4, **given})


def _likelihood(item: Item, logprob: float) -> AnswerLikelihood:
    n = len(item.output.encode("utf-8"))
    return AnswerLikelihood(
        token_ends=tuple(range(1, n + 1)),
        logprobs=tuple(logprob - 0.01 * (k % 3) for k in range(n)),
        margins=tuple(0.5 if logprob > -0.5 else 0.0 for _ in range(n)),
        stop_logprob=-0.1,
        stop_greedy=True,
    )


def _answer(item: Item, who: Who, k: int, mode: str) -> AnswerRecord:
    text = item.output if k < who.right else "no grid here"
    prompt = None if mode == "raw" else f"<chat>{item.prompt}</chat>"
    return answer_record(
        item, text, n_tokens=len(text), finish_reason="stop", cached=False, prompt=prompt
    )


def build(
    run_id: str,
    contenders: Sequence[Who] = (Who("base", "reference", 0, -0.9), Who("merged")),
    *,
    settings: Settings | None = None,
    created: str = "2026-12-05T14:00:00Z",
    identical: bool = False,
    noise: NoiseFloor | None = NOISE,
) -> EvalRecord:
    """A stored run of ``contenders`` (reference first, if any) on the items ``settings``
    choose; ``identical``: the candidate's files were the reference's, nothing was run."""
    s = settings or settings_for()
    items = items_for(s.n_items, s.eval_seed, s.eval_family)
    generated = s.eval_size if "generate" in s.scoring_modes else 0
    forced_n = s.forced_size if "teacher-forced" in s.scoring_modes else 0
    primary = s.prompt_modes[0]
    run = () if identical else contenders
    records = []
    for k, item in enumerate(items):
        answers = {
            label_of(w.name, mode, primary): _answer(item, w, k, mode)
            for w in run
            for mode in s.prompt_modes
            if k < generated
        }
        forced = {
            label_of(w.name, mode, primary): forced_score(item, _likelihood(item, w.logprob))
            for w in run
            for mode in s.prompt_modes
            if k < forced_n
        }
        records.append(item_record(item, answers, forced))
    models = tuple(
        ModelEntry(
            label=label_of(w.name, mode, primary),
            contender=w.name,
            role=w.role,
            kind="model",
            prompt_mode=mode,
            info=ModelInfo(
                name=(w.file or f"{w.name}.gguf").removesuffix(".gguf"),
                path=f"/models/{w.file or w.name + '.gguf'}",
                sha256=hashlib.sha256((w.file or w.name).encode()).hexdigest(),
            ),
            generation_seconds=1.5,
            n_answers=generated,
            n_forced=forced_n,
        )
        for w in run
        for mode in s.prompt_modes
    )
    labels = [m.label for m in models]

    def gen(label: str) -> list[Any]:
        return [r.answers[label].score for r in records if label in r.answers]

    def tf(label: str) -> list[Any]:
        return [r.forced[label] for r in records if label in r.forced]

    reference = next((w.name for w in contenders if w.role == "reference"), None)
    candidates = tuple(Candidate(w.name) for w in contenders if w.role == "candidate")
    pairings = []
    if reference is not None and not identical:
        for c in candidates:
            for mode in s.prompt_modes:
                ref, cand = label_of(reference, mode, primary), label_of(c.name, mode, primary)
                answered = [r for r in records if ref in r.answers]
                comparison = compare_runs(
                    base=gen(ref),
                    merged=gen(cand),
                    base_texts=[r.answers[ref].text for r in answered],
                    merged_texts=[r.answers[cand].text for r in answered],
                    base_forced=tf(ref),
                    merged_forced=tf(cand),
                    noise=noise,
                    alpha=s.alpha,
                    names=(reference, c.name),
                )
                pairings.append(Pairing(reference, c.name, mode, comparison))
    evaluation = Evaluation(
        settings=s,
        compared=f"built by hand: {', '.join(w.name for w in contenders)}",
        items=tuple(records),
        models=models,
        summaries={
            label: summarize(gen(label), GENERATION_METRICS) for label in labels if gen(label)
        },
        forced_summaries={
            label: summarize(tf(label), FORCED_METRICS) for label in labels if tf(label)
        },
        reference=reference,
        candidates=candidates,
        comparisons=tuple(pairings),
        identical_files={c.name: True for c in candidates} if identical else {},
        noise=None if identical else noise,
    )
    checks = tuple(
        CheckOutcome(
            "finetune_has_a_significant_effect",
            "test_finetune_has_a_significant_effect",
            Status.PASSED if c.name != "worse" else Status.FAILED,
            "by hand",
            candidate=c.name,
        )
        for c in candidates
    )
    return EvalRecord(
        schema=SCHEMA,
        run_id=run_id,
        created=created,
        environment=Environment("3.11.9", "2.1.0", None, "0.1.0", "Linux-test", "x86_64"),
        evaluation=evaluation,
        checks=checks,
    )


def store(reports: Path, record: EvalRecord | str, run_id: str | None = None) -> Path:
    """Write a record (or a report.json's text) as ``reports/<run id>/report.json``; the
    folder."""
    text = record if isinstance(record, str) else record_module.to_json(record)
    folder = reports / (run_id or (record.run_id if isinstance(record, EvalRecord) else "run"))
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(text)
    return folder


def v2_text(name: str = "raw") -> str:
    """A real ``simonsca.report/2`` record (``raw`` or ``both`` prompt modes)."""
    return gzip.decompress((V2 / f"v2-{name}.report.json.gz").read_bytes()).decode("utf-8")


def v2_data(name: str = "raw") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(v2_text(name))
    return data

"""Teacher-forced scores: cells mapped to tokens, and agreement with greedy generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simonsca import dataset
from simonsca.likelihood import cell_offsets, forced_score
from simonsca.models.base import AnswerLikelihood, is_top_choice
from simonsca.tasks import Task


def _likelihood(text: str, greedy: list[bool], per_token: int = 1) -> AnswerLikelihood:
    """One token per ``per_token`` characters of ``text``."""
    ends = tuple(range(per_token, len(text) + 1, per_token))
    if not ends or ends[-1] != len(text):
        ends = (*ends, len(text))
    margins = tuple(-1.0 if g else 1.0 for g in greedy)  # < 0: the model's choice
    assert len(margins) == len(ends)
    return AnswerLikelihood(ends, (-0.5,) * len(ends), margins, -0.1, True)


def test_cells_are_the_symbols_and_the_digits() -> None:
    nxt = next(i for i in dataset.eval_items(8) if i.task is Task.NEXT)
    cnt = next(i for i in dataset.eval_items(8) if i.task is Task.COUNT)
    assert len(cell_offsets(nxt)) == nxt.expected.size
    assert all(nxt.output[k] in (nxt.symbols.live, nxt.symbols.dead) for k in cell_offsets(nxt))
    assert len(cell_offsets(cnt)) == cnt.expected.size
    assert all(cnt.output[k].isdigit() for k in cell_offsets(cnt))


def test_forced_cell_accuracy_counts_the_cells_whose_token_is_the_top_choice() -> None:
    item = next(i for i in dataset.eval_items(8) if i.task is Task.NEXT)
    text = item.output
    cells = set(cell_offsets(item))
    wrong = sorted(cells)[:3]  # the first three cells' tokens are not the top choice
    greedy = [k not in wrong for k in range(len(text))]
    score = forced_score(item, _likelihood(text, greedy))
    assert score.forced_cell_accuracy == pytest.approx(1 - 3 / item.expected.size)
    assert not score.greedy_exact and score.n_greedy_tokens == len(text) - 3
    perfect = forced_score(item, _likelihood(text, [True] * len(text)))
    assert perfect.forced_cell_accuracy == 1.0 and perfect.greedy_exact


def test_a_token_holding_several_cells_counts_for_each() -> None:
    item = next(i for i in dataset.eval_items(8) if i.task is Task.NEXT)
    n = -(-len(item.output) // 4)
    score = forced_score(item, _likelihood(item.output, [False] + [True] * (n - 1), 4))
    first_token_cells = sum(1 for k in cell_offsets(item) if k < 4)
    assert score.forced_cell_accuracy == pytest.approx(1 - first_token_cells / item.expected.size)


def test_tokens_that_do_not_spell_the_answer_give_no_cell_accuracy() -> None:
    item = dataset.eval_items(1)[0]
    short = AnswerLikelihood((1, 2), (-1.0, -1.0), (0.0, 0.0), 0.0, True)
    assert forced_score(item, short).forced_cell_accuracy is None


@pytest.mark.model
def test_teacher_forcing_the_models_own_greedy_answers_finds_them_greedy(
    gemma_path: Path,
) -> None:
    """Where the two modes overlap they agree: every token of a greedy answer is the top choice
    when teacher-forced -- ties aside, i.e. up to the per-token noise floor (the same tokens
    decoded in other groups move a log-prob by that much, and greedy generation decodes one token
    at a time while teacher forcing decodes hundreds together)."""
    from simonsca.models.llamacpp import LlamaCppModel
    from simonsca.noise import noise_floor
    from simonsca.runner import generate, teacher_force

    items = dataset.eval_items(6)
    with LlamaCppModel(gemma_path, n_ctx=1024) as model:
        answers = generate(model, items, cache=None, progress=False)
        forced = teacher_force(model, items, cache=None, progress=False)
        noise = noise_floor(model, items, forced)
        assert noise is not None and noise.token_logprob > 0
        checked = 0
        for item, prediction in zip(items, answers.predictions):
            stop = "\n\n" if prediction.finish_reason == "stop" else ""
            lik = model.likelihood(item.prompt, prediction.text, stop=stop)
            assert max(lik.margins, default=0.0) <= noise.token_logprob, (item.seed, lik.margins)
            checked += lik.n_tokens
            if stop:
                assert lik.stop_greedy
    assert checked > 100


@pytest.fixture(scope="module")
def all_zero_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama with every tensor's data zero: every logit is equal, at every position."""
    from tiny_models import tiny

    zeros = {name: np.zeros_like(w) for name, w in tiny.tiny_weights().items()}
    return tiny.write_tiny_model(tmp_path_factory.mktemp("zero") / "all-zero.gguf", weights=zeros)


def test_a_tie_is_not_the_models_choice() -> None:
    assert is_top_choice(-1e-9) and not is_top_choice(0.0) and not is_top_choice(0.3)


@pytest.mark.model
def test_a_model_whose_logits_all_tie_gets_no_teacher_forced_credit(all_zero_model: Path) -> None:
    from simonsca.models.llamacpp import LlamaCppModel

    items = dataset.eval_items(4)
    with LlamaCppModel(all_zero_model, n_ctx=512, n_threads=1) as model:
        for item in items:
            lik = model.likelihood(item.prompt, item.output)
            assert lik.n_tokens > 0 and set(lik.margins) == {0.0}, lik.margins[:5]
            assert not any(lik.greedy) and not lik.greedy_exact and not lik.stop_greedy
            score = forced_score(item, lik)
            assert score.forced_cell_accuracy == 0.0 and score.n_greedy_tokens == 0


@pytest.mark.model
def test_an_all_zero_model_earns_no_teacher_forced_credit_and_no_skill(
    all_zero_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Judged as a finetune of the tiny model by `simonsca compare`: no teacher-forced cell, no
    greedy-consistent exact answer, and the skill check does not pass. (Its NLL is ln(vocab) at
    every token, better than the random tiny model's, so a gain in NLL alone is real.)"""
    import json

    from tiny_models import BASE

    from simonsca.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))
    main(
        ["compare", str(BASE), str(all_zero_model), "--eval-size", "4", "--forced-size", "8"]
        + ["--n-ctx", "512", "--n-threads", "1", "--no-progress", "--run-id", "zero"]
    )
    record = json.loads((tmp_path / "reports" / "zero" / "report.json").read_text())
    forced = [item["forced"]["merged"] for item in record["evaluation"]["items"]]
    assert len(forced) == 8
    assert all(f["forced_cell_accuracy"] == 0.0 and not f["greedy_exact"] for f in forced), forced
    assert all(f["n_greedy_tokens"] == 0 for f in forced)
    [skill] = [c for c in record["checks"] if c["name"] == "beats_trivial_baselines"]
    assert skill["status"] != "passed", skill

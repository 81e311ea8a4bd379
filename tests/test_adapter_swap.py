"""Adapters swapped on one loaded model (``LlamaCppModel.use_adapter``): a checkpoint sweep loads
its base once. Each swap must answer exactly as a fresh load of base + that adapter, identify
itself as that pair (so the answer cache never hands one adapter's answers to another), and a
bad adapter must be one line that leaves the model as it was."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from tiny_models import BASE, LORA, tiny

from simonsca.errors import AdapterMismatch, ModelFileError
from simonsca.models.base import GenerationRequest, LikelihoodRequest
from simonsca.models.llamacpp import LlamaCppModel

PROMPTS = ("1,0,1\n0,1,0\n", "Next generation:\n.#.\n#.#\n", "count: [[1,2],[3,")
ANSWERS = ("0,1,0\n1,0,1", "#.#\n.#.", "4]]")


def _load(lora: Path | None = None) -> LlamaCppModel:
    return LlamaCppModel(BASE, lora_path=lora, n_ctx=256, n_threads=1, n_seq=2)


def _outputs(model: LlamaCppModel) -> tuple[object, ...]:
    """Greedy answers (two decoded together) and teacher-forced likelihoods, to compare exactly."""
    requests: Sequence[GenerationRequest] = [GenerationRequest(p, max_tokens=24) for p in PROMPTS]
    answers = sorted(model.complete_many(requests), key=lambda pair: pair[0])
    forced = [LikelihoodRequest(p, a) for p, a in zip(PROMPTS, ANSWERS)]
    likelihoods = sorted(model.likelihood_many(forced, n_seq=2), key=lambda pair: pair[0])
    return tuple(answers), tuple(likelihoods)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two adapters that move the tiny model differently: the shipped one and a weaker other."""
    other = tiny.write_tiny_lora(
        tmp_path_factory.mktemp("adapters") / "other-lora.gguf", BASE, relative=0.3, seed=7
    )
    return Path(LORA), Path(other)


def test_swapped_adapters_answer_as_fresh_loads(adapters: tuple[Path, Path]) -> None:
    a, b = adapters
    expected = {}
    for lora in (None, a, b):
        with _load(lora) as fresh:
            expected[lora] = _outputs(fresh)
    assert len({repr(v) for v in expected.values()}) == 3  # each adapter moves the model
    with _load() as model:
        for lora in (a, b, None, b, a):  # there and back: no state is left behind
            model.use_adapter(lora)
            assert _outputs(model) == expected[lora], f"after use_adapter({lora})"


def test_what_identifies_the_model_follows_the_adapter(adapters: tuple[Path, Path]) -> None:
    from simonsca.runner import _identity

    a, b = adapters
    with _load(a) as fresh_a, _load(b) as fresh_b, _load() as plain:
        identities = {}
        with _load() as model:
            assert model.info == plain.info and model.name == plain.name
            for lora, fresh in ((a, fresh_a), (b, fresh_b), (None, plain)):
                model.use_adapter(lora)
                assert model.lora_path == lora
                assert (model.name, model.info) == (fresh.name, fresh.info)
                identities[lora] = repr(_identity(model))
                assert identities[lora] == repr(_identity(fresh))  # the answer cache's key
                assert repr(model) == repr(fresh)
        assert len(set(identities.values())) == 3
        assert fresh_a.info.adapter_sha256 != fresh_b.info.adapter_sha256


def test_a_cached_answer_for_one_adapter_is_not_reused_for_another(
    adapters: tuple[Path, Path], tmp_path: Path
) -> None:
    from simonsca.cache import open_cache
    from simonsca.dataset import eval_items
    from simonsca.noise import NOISE_ITEMS
    from simonsca.runner import generate

    a, b = adapters
    items = eval_items(NOISE_ITEMS)[:2]
    cache = open_cache(True, tmp_path / "answers.sqlite")
    assert cache is not None
    with LlamaCppModel(BASE, lora_path=b, n_ctx=512, n_threads=1) as fresh:
        want_b = generate(fresh, items, cache=None, progress=False, early_stop=False).texts
    with LlamaCppModel(BASE, lora_path=a, n_ctx=512, n_threads=1) as model:
        with_a = generate(model, items, cache=cache, progress=False, early_stop=False)
        model.use_adapter(b)
        with_b = generate(model, items, cache=cache, progress=False, early_stop=False)
        assert not any(p.cached for p in with_b.predictions)
        assert with_b.texts == want_b != with_a.texts
        model.use_adapter(a)
        again = generate(model, items, cache=cache, progress=False, early_stop=False)
        assert all(p.cached for p in again.predictions) and again.texts == with_a.texts
    cache.close()


def test_a_bad_adapter_is_one_line_and_leaves_the_model_as_it_was(
    adapters: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = adapters
    wider = tiny.write_tiny_model(
        tmp_path / "wider.gguf", cfg=tiny.TinyConfig(n_embd=128, n_ff=256)
    )
    misfit = tiny.write_tiny_lora(tmp_path / "misfit-lora.gguf", wider)
    text = tmp_path / "notes-lora.gguf"
    text.write_text("not a GGUF\n")
    with _load(a) as fresh, _load(a) as model:
        want = _outputs(fresh)
        for bad, error in (
            (tmp_path / "missing.gguf", ModelFileError),
            (text, ModelFileError),
            (misfit, AdapterMismatch),
        ):
            with pytest.raises(error) as raised:
                model.use_adapter(bad)
            assert str(bad) in str(raised.value) and "\n" not in str(raised.value)
            assert (model.lora_path, model.info) == (a, fresh.info)
        assert _outputs(model) == want

"""The LoRA recipe's torch-free parts: item selection, loss masks, the training record.

Training itself needs the ``train`` extra (torch, transformers, peft); those tests skip with a
reason when torch is absent, so the default ``pytest tests/`` stays light.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from simonsca import dataset
from simonsca.errors import DatasetError
from simonsca.finetune import data, record
from simonsca.finetune.cli import build_parser
from simonsca.gguf_file import file_sha256
from simonsca.tasks import Task

FIXTURE = (
    Path(__file__).resolve().parent.parent / "simonsca" / "controls" / "gemma3-270m-simonsca-lora"
)


# ------------------------------------------------------------------- which items are trained on


def test_training_range_is_disjoint_from_eval_and_from_the_seed_run():
    assert data.EVAL_SEED_START == dataset.EVAL_SEED_START
    assert data.TRAIN_SEED_RANGE.stop <= dataset.EVAL_SEED_START
    assert data.TRAIN_SEED_RANGE.start >= dataset.V5_MAX_ITEMS  # the seed's run used < 50,000


@pytest.mark.parametrize("start", [0, 19_586, 99_999, 900_000, 1_000_000, 5_000_000])
def test_seed_start_outside_the_training_range_is_refused(start):
    with pytest.raises(DatasetError, match="outside the training range"):
        next(data.training_items(start, data.ItemFilter()))


def test_training_items_are_v5_items_that_pass_the_filter():
    flt = data.ItemFilter(min_side=5, max_side=6, tasks=(Task.NEXT,))
    items = list(itertools.islice(data.training_items(100_000, flt), 12))
    assert len(items) == 12
    seeds = [it.seed for it in items]
    assert seeds == sorted(seeds) and len(set(seeds)) == 12
    for it in items:
        assert 5 <= it.height <= 6 and 5 <= it.width <= 6 and it.task is Task.NEXT
        assert it == dataset.make_item(it.seed)  # simonsca's own v5 generator, unchanged
    # every skipped seed in between really fails the filter
    kept = set(seeds)
    for seed in range(seeds[0], seeds[-1]):
        if seed not in kept:
            assert not flt.accepts(dataset.make_item(seed))


def test_training_items_are_deterministic():
    flt = data.ItemFilter(max_side=8)
    first = [it.seed for it in itertools.islice(data.training_items(123_456, flt), 20)]
    again = [it.seed for it in itertools.islice(data.training_items(123_456, flt), 20)]
    assert first == again


def test_no_training_prompt_equals_a_default_eval_prompt():
    flt = data.ItemFilter(max_side=8)
    train = {it.prompt for it in itertools.islice(data.training_items(100_000, flt), 200)}
    evals = {it.prompt for it in dataset.eval_items(200)}
    assert not train & evals


@pytest.mark.parametrize(
    "kwargs", [{"min_side": 4}, {"max_side": 16}, {"min_side": 9, "max_side": 8}, {"tasks": ()}]
)
def test_bad_filters_are_refused(kwargs):
    with pytest.raises(DatasetError):
        data.ItemFilter(**kwargs)


def test_parse_tasks():
    assert data.parse_tasks("next,count") == (Task.NEXT, Task.COUNT)
    assert data.parse_tasks(" next ") == (Task.NEXT,)
    with pytest.raises(DatasetError, match="--tasks"):
        data.parse_tasks("next,life")


def test_the_answer_target_ends_with_the_stop_string():
    item = dataset.make_item(100_004)
    assert data.answer_text(item) == item.output + "\n\n"
    assert item.prompt + data.answer_text(item) == item.training_text


# ---------------------------------------------------------------------------- the loss mask


def test_loss_mask_covers_exactly_the_answer_tokens():
    prompt, answer = [2, 11, 12, 13], [21, 22, 23]
    ex = data.build_example(prompt, answer)
    assert ex.input_ids == (2, 11, 12, 13, 21, 22, 23)
    assert ex.labels == (data.IGNORE_INDEX,) * 4 + (21, 22, 23)
    # the positions whose logits predict the answer: the last prompt token and all but the last
    # answer token
    assert ex.answer_positions == [3, 4, 5]
    assert [ex.input_ids[p + 1] for p in ex.answer_positions] == answer


def test_loss_mask_with_a_prompt_token_equal_to_an_answer_token():
    ex = data.build_example([5, 5, 5], [5])
    assert ex.labels == (data.IGNORE_INDEX,) * 3 + (5,)
    assert ex.answer_positions == [2]


@pytest.mark.parametrize("prompt,answer", [([], [1]), ([1], [])])
def test_empty_prompt_or_answer_is_refused(prompt, answer):
    with pytest.raises(DatasetError):
        data.build_example(prompt, answer)


def test_padding_keeps_masks_and_labels_aligned():
    a = data.build_example([2, 7], [8, 9, 10])
    b = data.build_example([2, 7, 7, 7], [8])
    ids, mask, labels = data.pad_batch([a, b], pad_id=0)
    assert [len(r) for r in ids] == [5, 5] and [len(r) for r in labels] == [5, 5]
    assert mask == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    c = data.build_example([2], [3])
    ids, mask, labels = data.pad_batch([a, c], pad_id=0)
    assert ids[1] == [2, 3, 0, 0, 0]
    assert mask[1] == [1, 1, 0, 0, 0]
    assert labels[1] == [data.IGNORE_INDEX, 3] + [data.IGNORE_INDEX] * 3


# ----------------------------------------------------------------------- the training record


def _minimal_record(**overrides):
    doc = {
        "schema": record.SCHEMA,
        "command": "python -m simonsca.finetune --out x --steps 2",
        "argv": ["--out", "x", "--steps", "2"],
        "base_model": {"path": "b.gguf", "file": "b.gguf", "sha256": "0" * 64, "size_bytes": 1},
        "adapter": {"file": "adapter.gguf", "sha256": "1" * 64, "size_bytes": 2},
        "data": {"seed_range": [100_000, 900_000], "seeds": [100_001, 100_002]},
        "training": {"steps": 2, "steps_done": 2},
        "loss_curve": [1.0, 0.5],
        "final_loss": 0.75,
        "wall_time_s": {"total": 1.0},
        "versions": {"python": "3.11"},
        "started_utc": "2026-01-01T00:00:00+00:00",
    }
    doc.update(overrides)
    return doc


def test_a_well_formed_record_validates():
    assert record.validate_record(_minimal_record()) == []


@pytest.mark.parametrize(
    "overrides,problem",
    [
        ({"loss_curve": [1.0]}, "steps_done"),
        ({"data": {"seed_range": [100_000, 900_000], "seeds": [1_000_001]}}, "outside"),
        ({"data": {"seed_range": [0, 2_000_000], "seeds": [5]}}, "evaluation seeds"),
        ({"schema": "other/9"}, "schema"),
        ({"final_loss": "low"}, "final_loss"),
    ],
)
def test_malformed_records_are_named(overrides, problem):
    problems = record.validate_record(_minimal_record(**overrides))
    assert any(problem in p for p in problems), problems


def test_a_missing_key_is_named():
    doc = _minimal_record()
    del doc["command"]
    assert record.validate_record(doc) == ["missing key 'command'"]


def test_write_record_refuses_a_malformed_record(tmp_path):
    with pytest.raises(ValueError, match="malformed"):
        record.write_record(_minimal_record(loss_curve=[]), tmp_path / "r.json")
    record.write_record(_minimal_record(), tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["final_loss"] == 0.75


def test_the_shipped_fixture_record_is_well_formed():
    path = FIXTURE / "training_record.json"
    if not path.is_file():
        pytest.skip(f"no trained adapter fixture at {FIXTURE}")
    doc = json.loads(path.read_text())
    assert record.validate_record(doc) == []
    adapter = FIXTURE / doc["adapter"]["file"]
    assert adapter.stat().st_size == doc["adapter"]["size_bytes"] <= 16 * 1024 * 1024
    assert file_sha256(adapter) == doc["adapter"]["sha256"]
    assert (FIXTURE / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["command"].startswith("python -m simonsca.finetune ")
    assert all(100_000 <= s < 900_000 for s in doc["data"]["seeds"])


# ---------------------------------------------------------------------------- the CLI surface


def test_cli_defaults_are_the_documented_recipe():
    args = build_parser().parse_args(["--out", "x"])
    assert (args.rank, args.batch_size, args.min_side, args.max_side) == (16, 4, 5, 8)
    assert args.tasks == "next,count" and args.seed_start == 100_000 and args.device == "auto"


def test_cli_refuses_an_eval_seed_start_before_loading_anything(tmp_path, capsys):
    from simonsca.finetune.cli import main

    code = main(
        [
            "--out",
            str(tmp_path / "o"),
            "--seed-start",
            "1000000",
            "--base-gguf",
            str(tmp_path / "missing.gguf"),
        ]
    )
    assert code == 2
    assert "simonsca.finetune:" in capsys.readouterr().err


# ---------------------------------------------------------------- with torch (train extra only)


def test_lr_schedule_warms_up_then_decays_to_a_tenth():
    pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from simonsca.finetune.train import TrainConfig, lr_at

    cfg = TrainConfig(steps=100, lr=1e-3, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(99, cfg) == pytest.approx(1e-4, rel=0.05)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def test_answer_loss_only_sees_answer_positions():
    torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from simonsca.finetune.train import answer_loss

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(16, 4)

        def forward(self, input_ids, attention_mask):
            class Out:
                pass

            out = Out()
            out.last_hidden_state = self.embed(input_ids)
            return out

    class CausalLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Decoder()
            self.lm_head = torch.nn.Linear(4, 16, bias=False)
            self.config = type("C", (), {"final_logit_softcapping": None})()
            self.seen = 0
            self.lm_head.register_forward_hook(
                lambda m, i, o: setattr(self, "seen", self.seen + i[0].shape[0])
            )

    class Wrapper:
        def __init__(self):
            self.inner = CausalLM()

        def get_base_model(self):
            return self.inner

    model = Wrapper()
    batch = [data.build_example([1, 2, 3], [4, 5]), data.build_example([1], [6, 7, 8])]
    loss = answer_loss(model, batch, pad_id=0, device="cpu")
    assert model.inner.seen == 5  # 2 + 3 answer tokens, no prompt or padding positions
    assert torch.isfinite(loss)


def _converter_or_skip() -> Path:
    from simonsca.finetune import export

    given = os.environ.get("SIMONSCA_LLAMA_CPP_DIR")
    cached = export._cache_root() / export.llama_cpp_python_version() / export.CONVERTER
    if given and (Path(given) / export.CONVERTER).is_file():
        return Path(given)
    if cached.is_file():
        return cached.parent
    pytest.skip(
        "no llama.cpp converter at hand (set SIMONSCA_LLAMA_CPP_DIR or run the recipe "
        "once so that it is cached); not fetched by the tests"
    )


def test_the_recipe_end_to_end_on_the_tiny_model(tmp_path):
    """Items -> tokens -> LoRA -> 2 steps -> GGUF adapter -> record, on fixtures/tiny (~1 min)."""
    for name in ("torch", "transformers", "peft", "matplotlib"):
        pytest.importorskip(name, reason="the train extra (torch, transformers, peft) is absent")
    llama_cpp_dir = _converter_or_skip()
    from simonsca.finetune.cli import main

    tiny = Path(__file__).resolve().parent.parent / "fixtures" / "tiny" / "tiny-llama-q8_0.gguf"
    out = tmp_path / "run"
    code = main(
        [
            "--out",
            str(out),
            "--base-gguf",
            str(tiny),
            "--steps",
            "2",
            "--batch-size",
            "1",
            "--rank",
            "2",
            "--max-side",
            "5",
            "--tasks",
            "next",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--llama-cpp-dir",
            str(llama_cpp_dir),
        ]
    )
    assert code == 0
    doc = json.loads((out / "training_record.json").read_text())
    assert record.validate_record(doc) == []
    assert doc["training"]["steps_done"] == 2 and len(doc["data"]["seeds"]) == 2
    assert doc["data"]["items_by_task"] == {"next": 2}
    assert (out / "adapter.gguf").stat().st_size == doc["adapter"]["size_bytes"]
    assert (out / "loss.png").is_file()


@pytest.mark.parametrize(
    "flag,value", [("--steps", "0"), ("--batch-size", "0"), ("--rank", "0"), ("--lr", "0")]
)
def test_cli_refuses_nonsense_budgets(tmp_path, capsys, flag, value):
    from simonsca.finetune.cli import main

    assert main(["--out", str(tmp_path / "o"), flag, value]) == 2
    assert flag in capsys.readouterr().err

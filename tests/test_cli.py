"""The ``simonsca`` command line: file writing, refusals and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from simonsca import dataset
from simonsca.cli import main


def test_generate_train_writes_the_seed_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "train_data.txt"
    assert (
        main(["generate", "--count", "5", "--seed-start", "0", "--format", "v5", "--out", str(out)])
        == 0
    )
    expected = "".join(dataset.render_items((dataset.make_item(s) for s in range(5)), "v5"))
    assert out.read_text() == expected
    assert "wrote 5 train items" in capsys.readouterr().out


def test_generate_eval_writes_held_out_items(tmp_path: Path) -> None:
    out = tmp_path / "eval.jsonl"
    assert (
        main(
            [
                "generate",
                "--split",
                "eval",
                "--count",
                "7",
                "--family",
                "generalization",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = out.read_text().splitlines()
    assert len(lines) == 7 and '"seed": 1000000' in lines[0]


def test_generate_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine.jsonl"
    out.write_text("keep me")
    assert main(["generate", "--count", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"simonsca generate: error: {out} already exists; pass --force to replace it"]
    assert out.read_text() == "keep me"


def test_eval_split_needs_a_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--split", "eval", "--out", str(tmp_path / "x")]) == 2
    assert "--split eval needs --count N" in capsys.readouterr().err


def test_unknown_family_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(
            [
                "generate",
                "--split",
                "eval",
                "--count",
                "2",
                "--family",
                "huge",
                "--out",
                str(tmp_path / "x"),
            ]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--family: invalid choice: 'huge'" in err[0]


def test_compare_missing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(tmp_path / "a.gguf"), str(tmp_path / "b.gguf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.gguf" in err[0]


def test_compare_rejects_a_text_file_posing_as_gguf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model\n" * 100)
    assert main(["compare", str(fake), str(fake)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.gguf" in err[0] and "GGUF" in err[0]


def test_diff_needs_merged_or_lora(capsys: pytest.CaptureFixture[str]) -> None:
    tiny = Path(__file__).resolve().parents[1] / "fixtures" / "tiny" / "tiny-llama-q8_0.gguf"
    assert main(["diff", str(tiny)]) == 2
    assert "give either MERGED.gguf or --lora" in capsys.readouterr().err


def test_merge_then_diff_on_the_tiny_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = Path(__file__).resolve().parents[1] / "fixtures" / "tiny"
    out = tmp_path / "merged.gguf"
    assert (
        main(["merge", str(tiny / "tiny-llama-q8_0.gguf"), str(tiny / "tiny-lora.gguf"), str(out)])
        == 0
    )
    assert (
        main(["merge", str(tiny / "tiny-llama-q8_0.gguf"), str(tiny / "tiny-lora.gguf"), str(out)])
        == 2
    )
    assert "--force" in capsys.readouterr().err
    assert main(["diff", str(tiny / "tiny-llama-q8_0.gguf"), str(out)]) == 0
    assert "14 of 21 shared tensors differ" in capsys.readouterr().out

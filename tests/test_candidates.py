"""A reference and N candidates: who is compared (names, folders of checkpoints in step order),
how verdicts control error across candidates, and one run of a sweep -- the CLI's verdict lines
and exit status, the pytest ids, the adapters swapped on one loaded base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simonsca import options
from simonsca import settings as settings_module
from simonsca.contenders import resolve_contenders
from simonsca.errors import ConfigError
from simonsca.multiplicity import candidate_levels
from simonsca.plan import plan
from tests.cli_run import cli
from tests.tiny_models import BASE, tiny

pytest_plugins = ["pytester"]
EVALS = Path(__file__).resolve().parents[1] / "simonsca" / "evals" / "test_finetune.py"


def _settings(tmp_path: Path, **given: object) -> settings_module.Settings:
    raw = {"n_ctx": "512", "reports_dir": str(tmp_path / "reports"), **given}
    return options.resolve(raw, {})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training run's folder as llama.cpp finetune leaves it: three numbered LoRA checkpoints
    (the update grows with the step), a log and a model file that are not checkpoints."""
    folder = tmp_path_factory.mktemp("run")
    for step, relative in ((30, 0.6), (10, 0.05), (20, 0.3)):
        tiny.write_tiny_lora(folder / f"checkpoint-{step}.gguf", BASE, relative=relative, seed=step)
    (folder / "train.log").write_text("loss 1.0\n")
    return folder


# --------------------------------------------------------------------------- who is compared


def test_one_candidate_is_still_called_merged(tmp_path: Path) -> None:
    _, found = resolve_contenders(_settings(tmp_path, base_model=str(BASE), lora=[str(BASE)]))
    assert [c.name for c in found] == ["merged"]


def test_a_folder_of_checkpoints_expands_in_step_order(tmp_path: Path, sweep: Path) -> None:
    p = plan(_settings(tmp_path, base_model=str(BASE), lora=[str(sweep)]))
    assert [(c.name, c.step) for c in p.candidates] == [
        ("checkpoint-10", 10),
        ("checkpoint-20", 20),
        ("checkpoint-30", 30),
    ]
    assert p.reference is not None and p.reference.name == "base"
    assert all(c.spec.path == BASE and c.spec.lora is not None for c in p.candidates)
    assert "3 candidate(s): checkpoint-10, checkpoint-20, checkpoint-30" in p.describe()


def test_name_equals_path_names_a_candidate(tmp_path: Path, sweep: Path) -> None:
    p = plan(
        _settings(
            tmp_path,
            base_model=str(BASE),
            lora=[f"early={sweep / 'checkpoint-10.gguf'}", f"late={sweep / 'checkpoint-30.gguf'}"],
        )
    )
    assert [(c.name, c.step) for c in p.candidates] == [("early", 10), ("late", 30)]


@pytest.mark.parametrize(
    ("loras", "expected"),
    [
        (["a={x}", "a={y}"], "two candidates are both named 'a': name them with NAME=PATH"),
        (["base={x}"], "candidate name 'base' is taken"),
        (["all-dead={x}"], "candidate name 'all-dead' is taken"),
    ],
)
def test_names_that_would_collide_are_one_line(
    tmp_path: Path, sweep: Path, loras: list[str], expected: str
) -> None:
    x, y = sweep / "checkpoint-10.gguf", sweep / "checkpoint-20.gguf"
    given = [v.format(x=x, y=y) for v in loras]
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        resolve_contenders(_settings(tmp_path, base_model=str(BASE), lora=given))


def test_a_folder_with_no_checkpoint_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    with pytest.raises(ConfigError, match="neither an adapter nor a folder of adapter checkpoints"):
        resolve_contenders(_settings(tmp_path, base_model=str(BASE), lora=[str(empty)]))
    with pytest.raises(ConfigError, match="no numbered GGUF models"):
        resolve_contenders(_settings(tmp_path, base_model=str(BASE), merged_model=[str(empty)]))


def test_a_folder_of_checkpoint_models_expands(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for step in (200, 100):
        tiny.write_tiny_model(folder / f"checkpoint-{step}.gguf", seed=step)
    _, found = resolve_contenders(
        _settings(tmp_path, base_model=str(BASE), merged_model=[str(folder)])
    )
    assert [(c.name, c.step) for c in found] == [("checkpoint-100", 100), ("checkpoint-200", 200)]


def test_the_base_in_its_own_checkpoint_folder_is_the_reference_not_a_candidate(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for step in (0, 100, 200):
        tiny.write_tiny_model(folder / f"step-{step}.gguf", seed=step + 1)
    base = folder / "step-0.gguf"
    _, found = resolve_contenders(
        _settings(tmp_path, base_model=str(base), merged_model=[str(folder)])
    )
    assert [(c.name, c.step) for c in found] == [("step-100", 100), ("step-200", 200)]


def test_lora_with_several_merged_models_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ambiguous"):
        _settings(tmp_path, base_model="b.gguf", merged_model=["x.gguf", "y.gguf"], lora=["l"])


def test_repeatable_options_from_pyproject_are_lists_read_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.simonsca]\nlora = ["a=ckpt/one.gguf", "ckpt/two.gguf"]\ncompare_to = "last-week"\n'
    )
    read = options.read_pyproject(tmp_path)
    s = options.resolve({}, read)
    assert s.lora == (f"a={tmp_path / 'ckpt/one.gguf'}", str(tmp_path / "ckpt/two.gguf"))
    assert s.compare_to == "last-week"  # a run id, not a path


# --------------------------------------------------------------------------- multiplicity


def test_holm_steps_down_and_stops_at_the_first_miss() -> None:
    p = {"a": 0.01, "b": 0.04, "c": 0.03}
    holm = candidate_levels(p, 0.05, "holm")
    assert holm["a"] == pytest.approx(0.05 / 3)  # 0.01 <= 0.0167: significant, step down
    assert holm["c"] == pytest.approx(0.05 / 2)  # 0.03 > 0.025: the first miss
    assert holm["b"] == pytest.approx(0.05 / 3)  # after a miss: never looser than Bonferroni
    assert candidate_levels(p, 0.05, "bonferroni") == pytest.approx(dict.fromkeys(p, 0.05 / 3))
    assert candidate_levels(p, 0.05, "none") == dict.fromkeys(p, 0.05)
    for method in ("holm", "bonferroni", "none"):
        assert candidate_levels({"merged": 0.2}, 0.05, method) == {"merged": 0.05}


def test_holm_is_never_stricter_than_bonferroni_and_never_looser_than_alpha() -> None:
    import itertools

    for ps in itertools.product((0.001, 0.01, 0.02, 0.04, 0.2), repeat=4):
        p = {f"c{k}": v for k, v in enumerate(ps)}
        holm, bonf = candidate_levels(p, 0.05, "holm"), candidate_levels(p, 0.05, "bonferroni")
        assert all(bonf[k] <= holm[k] <= 0.05 for k in p)


# --------------------------------------------------------------------------- one run, N candidates


@pytest.mark.model
def test_swapped_adapters_answer_as_separate_loads(tmp_path: Path, sweep: Path) -> None:
    """The sweep loads the base once and swaps adapters; every answer and score equals the run
    of that adapter alone."""
    from simonsca.suite import evaluate_plan

    common = {"base_model": str(BASE), "eval_size": "3", "forced_size": "4", "cache": False}
    together = evaluate_plan(
        plan(_settings(tmp_path, lora=[str(sweep)], run_id="together", **common)),
        say=lambda _: None,
    ).evaluation
    for step in (10, 30):
        alone = evaluate_plan(
            plan(
                _settings(
                    tmp_path,
                    lora=[str(sweep / f"checkpoint-{step}.gguf")],
                    run_id=f"alone-{step}",
                    **common,
                )
            ),
            say=lambda _: None,
        ).evaluation
        name = f"checkpoint-{step}"
        for a, b in zip(together.items, alone.items):
            assert (a.answers.get(name) is None) == (b.answers.get("merged") is None)
            if name in a.answers:
                assert a.answers[name].text == b.answers["merged"].text
            assert a.forced[name].nll == b.forced["merged"].nll
        assert together.noise == alone.noise  # the reference's floor, whoever is compared


@pytest.mark.model
def test_a_sweep_gives_a_verdict_per_candidate_and_pytest_agrees(
    pytester: pytest.Pytester,
    tmp_path: Path,
    sweep: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))
    common = [
        f"--base-model={BASE}",
        f"--lora={sweep}",
        "--n-ctx=512",
        "--eval-size=3",
        "--forced-size=6",
        "--min-cell-gain=0.5",  # no tiny random adapter gains 50 pp: every candidate fails it
    ]
    run = cli(capfd, "compare", *common, "--no-progress", f"--reports-dir={tmp_path / 'r'}")
    assert run.rc == 1, run.err
    names = ("checkpoint-10", "checkpoint-20", "checkpoint-30")
    for name in names:
        assert f"verdict {name}: " in run.out
        assert f"test_cell_accuracy_gain_meets_threshold[{name}]" in run.out
    folder = next(p for p in (tmp_path / "r").iterdir() if p.name != "latest")
    assert (folder / "curve.csv").is_file()
    report = json.loads((folder / "report.json").read_text())
    assert [c["name"] for c in report["evaluation"]["candidates"]] == list(names)
    assert [c["step"] for c in report["evaluation"]["candidates"]] == [10, 20, 30]
    checks = {(c["name"], c["candidate"]): c["status"] for c in report["checks"]}

    pytester.makepyfile(test_simonsca_evals=EVALS.read_text())
    result = pytester.runpytest(
        *common,
        "--no-simonsca-progress",
        "-v",
        "-p",
        "no:cacheprovider",
        f"--simonsca-reports-dir={tmp_path / 'p'}",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = result.stdout.lines
    from simonsca.checks import CHECKS

    for check in CHECKS:
        for name in names:
            line = next(x for x in lines if f"::{check.test}[{name}] " in x)
            status = checks[(check.name, name)]
            word = {"xfailed": "XFAIL"}.get(status, status.upper())
            assert word in line, (check.test, name, line)


@pytest.mark.model
def test_compare_to_a_stored_run_pairs_with_its_answers_and_gates(
    tmp_path: Path, sweep: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Last week's run is the reference: no model runs for it, the new check gates on it, and a
    stored run of other items is one line before any model work."""
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))
    reports = tmp_path / "r"
    common = [f"--base-model={BASE}", "--n-ctx=512", "--eval-size=3", "--forced-size=6"]
    common += ["--no-progress", f"--reports-dir={reports}"]
    first = cli(capfd, "compare", *common, f"--lora={sweep / 'checkpoint-20.gguf'}", "--run-id=w1")
    assert first.rc in (0, 1), first.err
    again = cli(
        capfd,
        "compare",
        *common,
        f"--lora={sweep / 'checkpoint-20.gguf'}",
        "--compare-to=w1",
        "--max-drop-vs-stored=0",
        "--run-id=w2",
    )
    assert "loading base model" not in again.err  # the stored side is read, not re-run
    assert "test_no_drop_vs_stored_run" in again.out
    report = json.loads((reports / "w2" / "report.json").read_text())
    assert report["evaluation"]["reference"] == "stored-w1"
    outcome = next(c for c in report["checks"] if c["name"] == "no_drop_vs_stored")
    assert outcome["status"] == "passed", outcome["message"]  # the same model: no drop
    assert "delta +0.0 pp" in outcome["message"]

    import simonsca.answering

    def no_model(*_: object, **__: object) -> None:
        raise AssertionError("a model was loaded before the items were checked")

    monkeypatch.setattr(simonsca.answering, "open_model", no_model)
    other = cli(
        capfd,
        "compare",
        *common,
        f"--lora={sweep / 'checkpoint-20.gguf'}",
        "--compare-to=w1",
        "--eval-seed=1000100",
        "--run-id=w3",
    )
    other.only_line(
        "--compare-to w1: stored run w1 was not run on the items of this run",
        "first seed (--eval-seed) 1000000 vs 1000100",
    )


@pytest.mark.model
def test_confirm_best_measures_the_best_checkpoint_on_fresh_items(
    tmp_path: Path, sweep: Path
) -> None:
    from simonsca.report.terminal import render_terminal
    from simonsca.suite import evaluate_plan

    common = {"base_model": str(BASE), "lora": [str(sweep)], "eval_size": "2", "cache": False}
    record = evaluate_plan(
        plan(_settings(tmp_path, forced_size="4", confirm_best=True, **common)),
        say=lambda _: None,
    )
    curve = record.evaluation.curve
    assert curve is not None and curve.best is not None
    confirmed = curve.best.confirmed
    assert confirmed is not None and "on 4 fresh held-out items (seeds from 1,000,004)" in confirmed
    assert f"confirmed: {confirmed}" in render_terminal(record)
    # the confirmation is the run of the best alone (one pre-chosen candidate: no correction)
    # on the items from the next seed
    best = curve.best.name
    alone = {**common, "lora": [f"{best}={sweep / best}.gguf"]}
    fresh = evaluate_plan(
        plan(_settings(tmp_path, forced_size="4", eval_seed="1000004", run_id="fresh", **alone)),
        say=lambda _: None,
    ).evaluation
    comparison = fresh.comparison_of(best)
    assert comparison is not None and comparison.alpha == 0.05
    assert f"verdict there {comparison.verdict.word}" in confirmed
    with pytest.raises(ConfigError, match="--confirm-best answers the reference on fresh items"):
        _settings(tmp_path, confirm_best=True, compare_to="last-week")

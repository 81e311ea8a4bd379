"""Speed of judging a model: greedy generation (single and batched, with and without early stop)
and teacher forcing, against the plain llama-cpp-python loop a user would write -- on the same
items, in one run.

Run: ``.venv/bin/pytest benchmarks/test_bench_models.py -q -p no:cacheprovider
--benchmark-columns=median`` (add ``--benchmark-autosave`` / ``--benchmark-compare`` to follow
changes). Each case runs once per round on the real Gemma 3 270M (no answer cache); items/s and
tokens/s go to ``benchmark.extra_info``. The last test prints the table of ratios and the cost
against grid side, and writes ``benchmarks/model-cost.png``. Nothing asserts a speed: timings
on a shared machine vary too much to gate on (measure on an idle machine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from simonsca import dataset
from simonsca.models.base import max_tokens_for
from simonsca.tasks import Item

N_ITEMS = 8
N_CTX = 2048
RESULTS: dict[str, dict[str, float]] = {}
SIDES = (5, 10, 15, 20, 30)
PNG = Path(__file__).with_name("model-cost.png")


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return dataset.eval_items(N_ITEMS, fam=dataset.families("v5-small"))


@pytest.fixture(scope="module")
def gemma() -> Path:
    from simonsca.default_models import gemma_base_path

    return gemma_base_path()


def _run(benchmark: Any, name: str, work: Callable[[], tuple[int, int]]) -> None:
    """Time ``work`` (returns items, tokens) once per round; keep items/s and tokens/s."""
    out: list[tuple[int, int]] = []
    seconds: list[float] = []

    def timed() -> None:
        start = time.perf_counter()
        out.append(work())
        seconds.append(time.perf_counter() - start)

    benchmark.pedantic(timed, rounds=1, iterations=1, warmup_rounds=0)
    n_items, n_tokens = out[-1]
    wall = min(seconds)
    RESULTS[name] = {
        "items_per_s": n_items / wall,
        "tokens_per_s": n_tokens / wall,
        "tokens": n_tokens,
        "seconds": wall,
    }
    benchmark.extra_info.update(RESULTS[name])


def test_plain_llama_cpp_python_loop(benchmark: Any, gemma: Path, items: list[Item]) -> None:
    """What a user writes: ``Llama(...)`` and one ``create_completion`` per item, greedy."""
    import llama_cpp

    llm = llama_cpp.Llama(
        str(gemma),
        n_ctx=N_CTX,
        n_batch=64,
        n_ubatch=64,
        n_threads=os.cpu_count(),
        n_threads_batch=os.cpu_count(),
        verbose=False,
    )
    budgets = [max_tokens_for(len(llm.tokenize(i.output.encode(), add_bos=False))) for i in items]

    def work() -> tuple[int, int]:
        tokens = 0
        for item, budget in zip(items, budgets):
            llm.reset()
            out: Any = llm.create_completion(
                item.prompt, max_tokens=budget, temperature=0.0, top_k=1, stop=["\n\n"]
            )
            tokens += int(out["usage"]["completion_tokens"])
        return len(items), tokens

    try:
        _run(benchmark, "plain llama-cpp-python loop", work)
    finally:
        llm.close()


def _generate(
    gemma: Path, items: list[Item], n_seq: int, early_stop: bool, n_ctx: int = N_CTX
) -> tuple[int, int]:
    from simonsca.models.llamacpp import LlamaCppModel
    from simonsca.runner import generate

    with LlamaCppModel(gemma, n_ctx=n_ctx, n_seq=n_seq) as model:
        run = generate(model, items, cache=None, progress=False, early_stop=early_stop)
    return len(items), sum(p.n_tokens for p in run.predictions)


@pytest.mark.parametrize(
    ("n_seq", "early_stop"), [(1, False), (4, False), (8, False), (1, True), (8, True)]
)
def test_simonsca_generate(
    benchmark: Any, gemma: Path, items: list[Item], n_seq: int, early_stop: bool
) -> None:
    name = f"simonsca generate, batch {n_seq}" + (", early stop" if early_stop else "")
    _run(benchmark, name, lambda: _generate(gemma, items, n_seq, early_stop))


def _force(
    model_path: Path, items: list[Item], n_seq: int = 1, n_ctx: int = N_CTX
) -> tuple[int, int]:
    from simonsca.models.llamacpp import LlamaCppModel
    from simonsca.runner import teacher_force

    with LlamaCppModel(model_path, n_ctx=n_ctx, n_seq=n_seq) as model:
        run = teacher_force(model, items, cache=None, progress=False)
    return len(items), sum(lik.n_tokens for lik in run.likelihoods)


def test_simonsca_teacher_forced(benchmark: Any, gemma: Path, items: list[Item]) -> None:
    """One sequence at a time, 256 tokens per decode call (groups of 4 sequences measured
    0.92x as fast on 2 cores, so the backend does not group them)."""
    _run(benchmark, "simonsca teacher-forced", lambda: _force(gemma, items))


def _tiny() -> Path:
    return Path(__file__).resolve().parents[1] / "fixtures" / "tiny" / "tiny-llama-q8_0.gguf"


def test_tiny_generate_and_teacher_forced(benchmark: Any, items: list[Item]) -> None:
    """The tiny fixture model, where the output layer is not most of the work."""
    tiny = _tiny()
    _run(benchmark, "tiny: simonsca generate, batch 1", lambda: _generate(tiny, items, 1, False))
    _run(_NoBench(), "tiny: simonsca teacher-forced", lambda: _force(tiny, items))


def test_cost_against_grid_side(benchmark: Any, gemma: Path) -> None:
    """Seconds per item for one item of each side, both scoring modes (generation to the
    expected answer's budget, early stop on)."""
    for side in SIDES:
        fam = dataset.Families(
            name=f"side-{side}", tasks=(dataset.Task.NEXT,), min_side=side, max_side=side
        )
        one = [dataset.make_eval_item(dataset.EVAL_SEED_START, fam)]
        _run(
            benchmark if side == SIDES[0] else _NoBench(),
            f"side {side}: teacher-forced",
            lambda one=one: _force(gemma, one, n_ctx=8192),
        )
        if side <= 20:
            _run(
                _NoBench(),
                f"side {side}: generate",
                lambda one=one: _generate(gemma, one, 1, True, n_ctx=8192),
            )


class _NoBench:
    """Times one call like ``benchmark.pedantic`` (pytest-benchmark allows one per test)."""

    def __init__(self) -> None:
        self.extra_info: dict[str, Any] = {}

    def pedantic(self, fn: Callable[[], None], **_: Any) -> None:
        fn()


def test_print_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    if not RESULTS:
        pytest.skip("run the whole file")
    plain = RESULTS.get("plain llama-cpp-python loop", {}).get("items_per_s")
    single = RESULTS.get("simonsca generate, batch 1", {}).get("items_per_s")
    lines = ["", f"{'case':45} {'items/s':>8} {'tok/s':>8} {'vs plain':>9} {'vs gen 1':>9}"]
    for name, r in RESULTS.items():
        vs_plain = f"{r['items_per_s'] / plain:.2f}x" if plain else "-"
        vs_single = f"{r['items_per_s'] / single:.2f}x" if single else "-"
        lines.append(
            f"{name:45} {r['items_per_s']:8.3f} {r['tokens_per_s']:8.1f} {vs_plain:>9} "
            f"{vs_single:>9}"
        )
    with capsys.disabled():
        print("\n".join(lines))
    _plot()


def _plot() -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for mode in ("teacher-forced", "generate"):
        xs = [s for s in SIDES if f"side {s}: {mode}" in RESULTS]
        ys = [RESULTS[f"side {s}: {mode}"]["seconds"] for s in xs]
        ax.plot(xs, ys, marker="o", label=mode)
    ax.set_xlabel("grid side (cells)")
    ax.set_ylabel("seconds per item")
    ax.set_title("Gemma 3 270M, one next-generation item, 2 CPU cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PNG, dpi=100)
    plt.close(fig)

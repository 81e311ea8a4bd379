"""Every setting, declared once: its ``[tool.simonsca]`` key, command-line flag, default, parser.

:class:`Settings` is the one table. Each field carries (in its metadata) the flag, help text and
the parser that turns a value from the command line or from ``pyproject.toml`` into its type --
one parser per kind (:mod:`simonsca.parsers`), so ``0.9`` and ``90%`` mean the same rate
everywhere. The pytest plugin and the ``simonsca`` commands register their options from this
table (as pytest-benchmark does for its display options; :mod:`simonsca.options`), so the two can
never drift; :mod:`simonsca.checks` reads the thresholds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from simonsca.parsers import (
    choice,
    flag,
    gain,
    integer,
    model_ref,
    rate,
    run_id,
    significance,
    text,
)

#: Largest number of items one run may ask for (items are built in memory before any model runs;
#: 100,000 greedy answers of a 270M model take about two days on two CPU cores).
MAX_ITEMS = 100_000
#: Evaluation seeds start here (lower seeds are the v5 training items) and stay below this.
EVAL_SEED_START = 1_000_000
EVAL_SEED_END = 10**15

Group = Literal["models", "items", "backend", "checks", "output"]


def setting(
    default: Any,
    parse: Callable[[Any], Any],
    help: str,
    *,
    group: Group,
    metavar: str | None = None,
    action: Literal["store_true", "store_false", "append"] | None = None,
    plugin_flag: str | None = None,
    cli: bool = True,
    pyproject: bool = True,
) -> Any:
    """A field of :class:`Settings` with its command-line face.

    ``action="append"`` makes a repeatable option: its value is a tuple, each element parsed by
    ``parse`` (in ``[tool.simonsca]`` one value or a list). ``plugin_flag`` renames the option under pytest where the plain flag is too generic to claim
    in every pytest run (the CLI accepts both spellings). ``cli=False`` keeps a setting off the
    ``simonsca`` commands (``pytest``-only); ``pyproject=False`` off ``[tool.simonsca]``.
    """
    return field(
        default=default,
        metadata={
            "parse": parse,
            "help": help,
            "group": group,
            "metavar": metavar,
            "action": action,
            "plugin_flag": plugin_flag,
            "cli": cli,
            "pyproject": pyproject,
        },
    )


@dataclass(frozen=True)
class Settings:
    # A field's help text says what its command-line flag does: for the flags that switch a
    # default off (``--no-cache``), what switching it off does.
    """What one evaluation depends on; the same settings + the same files => the same report."""

    # -- which models
    base_model: str | None = setting(
        None,
        model_ref,
        "base model: a GGUF file or a server URL (default: built-in Gemma 3 270M)",
        group="models",
        metavar="GGUF|URL",
    )
    merged_model: tuple[str, ...] = setting(
        (),
        model_ref,
        "a candidate: a finetuned (merged) GGUF file, a folder of checkpoint GGUFs (taken in "
        "step order) or a server URL; NAME=PATH names it; repeat for several candidates",
        group="models",
        metavar="GGUF|URL",
        action="append",
    )
    lora: tuple[str, ...] = setting(
        (),
        text,
        "an adapter applied at load (GGUF LoRA, PEFT or MLX folder, llama.cpp lora.bin or "
        "checkpoint-N.gguf), or a folder of adapter checkpoints (taken in step order); NAME=PATH "
        "names it. Without --merged-model each one is a candidate: base + adapter (repeat for "
        "several, all applied to one loaded base); with one --merged-model: applied to it",
        group="models",
        metavar="ADAPTER",
        action="append",
    )
    compare_to: str | None = setting(
        None,
        text,
        "a stored run (its folder, its report.json, or a run id under the reports folder) as "
        "the reference: the candidates are paired item by item with its stored answers, and "
        "no reference model is run",
        group="models",
        metavar="RUN",
    )
    merged_from_lora: str | None = setting(
        None,
        text,
        "the adapter merged into --merged-model (any format --lora takes): also run base + "
        "adapter and check the merged file answers the same",
        group="models",
        metavar="ADAPTER",
    )
    # -- which items and how they are put
    eval_size: int = setting(
        16,
        integer(1, MAX_ITEMS),
        "held-out items answered by greedy generation",
        group="items",
        metavar="N",
    )
    forced_size: int = setting(
        32,
        integer(1, MAX_ITEMS),
        "held-out items scored by teacher forcing (the first "
        "--eval-size of them are the generated ones)",
        group="items",
        metavar="N",
    )
    eval_seed: int = setting(
        EVAL_SEED_START,
        integer(EVAL_SEED_START, EVAL_SEED_END),
        f"first held-out seed (>= {EVAL_SEED_START:,}; lower seeds are training items)",
        group="items",
        metavar="S",
    )
    eval_family: str = setting(
        "v5-small",
        choice("v5-small", "v5", "next-small", "generalization"),
        "item family: v5-small (the seed's puzzles, sides 5-8), v5 (5-15), next-small, "
        "generalization",
        group="items",
        metavar="NAME",
    )
    scoring: str = setting(
        "both",
        choice("generate", "teacher-forced", "both"),
        "greedy answers, teacher-forced answer likelihood, or both",
        group="items",
        metavar="MODE",
    )
    prompt_mode: str = setting(
        "raw",
        choice("raw", "chat", "both"),
        "raw training text, the model's chat template (what chat apps send), or both",
        group="items",
        metavar="MODE",
    )
    early_stop: bool = setting(
        True,
        flag,
        "run every greedy answer to its token budget (default: stop it once it can no "
        "longer change its score)",
        group="items",
        action="store_false",
    )
    confirm_best: bool = setting(
        False,
        flag,
        "with checkpoints: answer the best one and the reference again on as many fresh "
        "held-out items (the seeds after this run's), so the best is not measured on the items "
        "it was picked on",
        group="items",
        action="store_true",
    )
    chat_template: str | None = setting(
        None,
        choice("gemma", "llama3", "chatml"),
        "fallback chat template for a model without one: gemma, llama3 or chatml",
        group="items",
        metavar="NAME",
    )
    # -- how models run
    n_ctx: int = setting(
        2048,
        # Generous on purpose: the real limit is the model's own (checked against its GGUF
        # before loading, with that number in the message); this bound only stops the absurd.
        integer(64, 1 << 27),
        "context window per sequence, in tokens",
        group="backend",
        metavar="N",
    )
    n_threads: int | None = setting(
        None,
        integer(1, 1024),
        "CPU threads for llama.cpp (default: all cores)",
        group="backend",
        metavar="N",
    )
    n_gpu_layers: int | None = setting(
        None,
        integer(-1, 100_000),
        "layers offloaded to a GPU (default: all where the "
        "llama.cpp build has GPU support, else 0; -1 = all)",
        group="backend",
        metavar="N",
    )
    batch_size: int = setting(
        1,
        integer(1, 256),
        "sequences llama.cpp decodes together (answers can differ from "
        "batch size 1 in near-ties; part of the cache key)",
        group="backend",
        metavar="N",
    )
    concurrency: int | None = setting(
        None,
        integer(1, 1024),
        "requests in flight to a model server (default: its slots)",
        group="backend",
        metavar="N",
    )
    request_timeout: float = setting(
        600.0,
        lambda v: float(integer(1, 86_400)(v)),
        "seconds to wait for one server answer",
        group="backend",
        metavar="S",
    )
    cache: bool = setting(
        True,
        flag,
        "neither read nor write cached answers ($SIMONSCA_CACHE, default ~/.cache/simonsca)",
        group="backend",
        action="store_false",
        plugin_flag="--no-simonsca-cache",
    )
    # -- what passes
    min_exact_gain: float | None = setting(
        None,
        gain,
        "fail unless merged - base exact match >= X (0.05 or 5%%)",
        group="checks",
        metavar="X",
    )
    min_cell_gain: float | None = setting(
        None,
        gain,
        "fail unless merged - base cell accuracy >= X",
        group="checks",
        metavar="X",
    )
    max_family_regression: float = setting(
        0.10,
        rate,
        "fail when one family's cell accuracy drops by more than X",
        group="checks",
        metavar="X",
    )
    min_parse_rate: float | None = setting(
        None,
        rate,
        "fail when a smaller share of the merged answers parses",
        group="checks",
        metavar="X",
    )
    require_skill: bool = setting(
        False,
        flag,
        "fail (not xfail) when the merged model shows no skill beyond the trivial baselines",
        group="checks",
        action="store_true",
    )
    min_merge_agreement: float = setting(
        0.9,
        rate,
        "with --merged-from-lora: the share of items where the merged file must "
        "answer exactly like base + adapter",
        group="checks",
        metavar="X",
    )
    min_chat_gain_share: float = setting(
        0.5,
        rate,
        "with --prompt-mode both: the share of the raw cell-accuracy gain the chat "
        "format must keep",
        group="checks",
        metavar="X",
    )
    max_drop_vs_stored: float | None = setting(
        None,
        rate,
        "with --compare-to: fail when a candidate's primary cell accuracy is lower than the "
        "stored run's by more than X (0.02 or 2%%)",
        group="checks",
        metavar="X",
    )
    alpha: float = setting(
        0.05,
        significance,
        "significance level of every test and (1 - alpha) CI",
        group="checks",
        metavar="A",
    )
    correction: str = setting(
        "holm",
        choice("holm", "bonferroni", "none"),
        "how verdicts control false positives across several candidates: holm (step-down), "
        "bonferroni (alpha / N each) or none (each candidate at alpha)",
        group="checks",
        metavar="METHOD",
    )
    # -- where results go
    reports_dir: str | None = setting(
        "reports",
        text,
        "where reports go (a folder per run, and latest/)",
        group="output",
        metavar="DIR",
        plugin_flag="--simonsca-reports-dir",
    )
    run_id: str | None = setting(
        None,
        run_id,
        "name of this run's report folder (default: UTC time + a unique suffix)",
        group="output",
        metavar="ID",
        plugin_flag="--simonsca-run-id",
        pyproject=False,
    )
    progress: bool = setting(
        True,
        flag,
        "hide the progress bars (items done, rate, ETA)",
        group="output",
        action="store_false",
        plugin_flag="--no-simonsca-progress",
        pyproject=False,
    )

    @property
    def scoring_modes(self) -> tuple[str, ...]:
        return ("generate", "teacher-forced") if self.scoring == "both" else (self.scoring,)

    @property
    def prompt_modes(self) -> tuple[str, ...]:
        return ("raw", "chat") if self.prompt_mode == "both" else (self.prompt_mode,)

    @property
    def n_items(self) -> int:
        """Items built: enough for every scoring mode that runs."""
        sizes = [self.eval_size] if "generate" in self.scoring_modes else []
        if "teacher-forced" in self.scoring_modes:
            sizes.append(self.forced_size)
        return max(sizes)

"""Fuzzing every ``simonsca`` command with the values people really type.

Hypothesis draws option values -- negative, zero, huge, non-numeric, empty, and paths that are
files, folders, missing, or cannot be written (root ignores permissions, so: a path under a
regular file, or under /proc) -- for generate, prepare, eval, compare, diff, doctor and merge,
with the tiny real GGUF fixtures as the models. Each example starts from a command line that
works and spoils up to two of its options (so that every refusal is reached, and so are real
runs). Whatever is drawn, the command ends with exit status 0 or 1 (a result) or 2 (a usage
error); stderr holds at most one error line, and otherwise only simonsca's one-line notes
(``simonsca: ...``, ``simonsca CMD: warning: ...``); there is no traceback anywhere; and no file
or folder of the user's changes unless ``--force`` said so.

Each example runs in this process (``simonsca.cli.main``; llama.cpp's log is already kept off
the terminal). Valid values are drawn only where they finish fast: ``--eval-size`` and friends
stay small, llama.cpp gets one thread (the machine is shared), ``--no-cache`` and
``--no-progress`` are always given, and ``diff --logit-items`` is drawn valid only as 0 (a
positive count runs both models on every core). ``hypothesis --hypothesis-show-statistics``
shows which exits and errors the examples reached.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tiny_models import BASE, LORA

from simonsca.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED_LOG = ROOT / "fixtures" / "seed-v5" / "finetune.log"


# ------------------------------------------------------------------------------ the user's disk


@dataclass
class Disk:
    """A folder of the user's: files and folders to point options at, and a check that nothing
    in it changed."""

    root: Path
    fresh: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        from simonsca import dataset

        r = self.root
        (r / "notes.txt").write_text("the user's notes\n")
        (r / "folder").mkdir()
        (r / "folder" / "keep.txt").write_text("keep me\n")
        (r / "empty.txt").write_text("")
        (r / "garbage.gguf").write_bytes(b"GGUF" + b"\x07" * 64)
        (r / "text.gguf").write_text("this is not a model\n")
        (r / "truncated.gguf").write_bytes(BASE.read_bytes()[:5000])
        (r / "binary.txt").write_bytes(b"\xff\xfe\x00\x01" * 16)
        dataset.write_items(dataset.v5_items(4), r / "train_data.txt", "v5")
        self.snapshot = self._state()

    WATCHED = (
        "notes.txt",
        "folder/keep.txt",
        "empty.txt",
        "garbage.gguf",
        "text.gguf",
        "truncated.gguf",
        "binary.txt",
        "train_data.txt",
    )

    def _state(self) -> dict[str, bytes]:
        state = {name: (self.root / name).read_bytes() for name in self.WATCHED}
        state["folder/"] = " ".join(
            sorted(p.name for p in (self.root / "folder").iterdir())
        ).encode()
        state["BASE"] = BASE.read_bytes()
        state["LORA"] = LORA.read_bytes()
        return state

    def unchanged(self) -> None:
        assert self._state() == self.snapshot

    def path(self, kind: str) -> str:
        """An input path of a kind: a real model or adapter, or something that is not one."""
        return {
            "model": str(BASE),
            "adapter": str(LORA),
            "missing": str(self.root / "missing.gguf"),
            "folder": str(self.root / "folder"),
            "garbage": str(self.root / "garbage.gguf"),
            "text": str(self.root / "text.gguf"),
            "truncated": str(self.root / "truncated.gguf"),
            "empty file": str(self.root / "empty.txt"),
            "binary": str(self.root / "binary.txt"),
            "notes": str(self.root / "notes.txt"),
            "train file": str(self.root / "train_data.txt"),
            "seed log": str(SEED_LOG),
            "under a file": str(self.root / "notes.txt" / "x.gguf"),
            "proc": "/proc/simonsca/x.gguf",
            "empty": "",
            "no server": "http://127.0.0.1:9/v1",  # nothing listens there: refused at once
            "bad url": "http://[::1/v1#x",
        }[kind]

    def output(self, kind: str) -> str:
        """An output path of a kind; "existing" is a fresh file of the user's (see
        :meth:`existing_intact`)."""
        n = next(self.fresh)
        if kind == "existing":
            existing = self.root / f"existing-{n}.txt"
            existing.write_text(f"the user's file {n}\n")
            return str(existing)
        return {
            "new": str(self.root / "out" / f"new-{n}.out"),
            "folder": str(self.root / "folder"),
            "under a file": str(self.root / "notes.txt" / f"out-{n}"),
            "proc": f"/proc/simonsca-{n}/out",
            "empty": "",
        }[kind]

    def reports(self, kind: str) -> str:
        return {
            "fresh": str(self.root / "reports" / f"r{next(self.fresh)}"),
            "shared": str(self.root / "reports" / "shared"),
            "file": str(self.root / "notes.txt"),
            "under a file": str(self.root / "notes.txt" / "reports"),
            "proc": "/proc/simonsca-reports",
            "empty": "",
        }[kind]


#: The module's Disk, for strategies (which cannot take fixtures); set by the fixture below.
DISK: list[Disk] = []


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Disk:
    made = Disk(tmp_path_factory.mktemp("user"))
    DISK[:] = [made]
    return made


@pytest.fixture(autouse=True)
def _here(disk: Disk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(disk.root)  # no pyproject.toml of ours; relative paths land here
    monkeypatch.setenv("SIMONSCA_CACHE", str(disk.root / "cache"))


def inputs(*kinds: str) -> st.SearchStrategy[str]:
    return st.sampled_from(kinds).map(lambda kind: DISK[0].path(kind))


def outputs(*kinds: str) -> st.SearchStrategy[str]:
    return st.sampled_from(kinds).map(lambda kind: DISK[0].output(kind))


def reports(*kinds: str) -> st.SearchStrategy[str]:
    return st.sampled_from(kinds).map(lambda kind: DISK[0].reports(kind))


NOT_MODELS = (
    "no server",
    "bad url",
    "adapter",
    "missing",
    "folder",
    "garbage",
    "text",
    "truncated",
    "empty file",
    "under a file",
    "proc",
    "empty",
)
NOT_ADAPTERS = ("model", "missing", "folder", "garbage", "truncated", "empty", "under a file")
BAD_OUTPUTS = ("existing", "folder", "under a file", "proc", "empty")


# ------------------------------------------------------------------------------ value strategies

#: Text that is no number, or a number in a form the parsers refuse.
JUNK = (
    "",
    " ",
    "abc",
    "1e3",
    "2.5",
    "nan",
    "inf",
    "-inf",
    "0x10",
    "1,000",
    "½",
    "--",
    "None",
    "true",
)


def outside(low: int, high: int) -> st.SearchStrategy[str]:
    """A whole number outside ``[low, high]`` (negative, zero, huge), or junk."""
    numbers = st.one_of(
        st.integers(max_value=low - 1),
        st.integers(min_value=high + 1),
        st.sampled_from([low - 1, high + 1, 10**9, 10**30, -(10**30)]),
    )
    return st.one_of(numbers.map(str), st.sampled_from(JUNK))


def shares() -> st.SearchStrategy[str]:
    """Rates and gains, good and bad: ``5%``, ``-2%``, ``150%``, ``nan``, any float."""
    return st.one_of(
        st.sampled_from(["0", "0.05", "5%", "-2%", "1", "90%", "100%", "150%", "-1.5", "2", "-0"]),
        st.sampled_from(JUNK),
        st.floats(allow_nan=True, allow_infinity=True).map(str),
    )


def words(*good: str) -> st.SearchStrategy[str]:
    return st.sampled_from(good)


@dataclass(frozen=True)
class Opt:
    """An option: ``fine`` draws values that work and finish fast (None: leave it out), ``bad``
    values that should be refused (or are valid but odd). A flag option has ``flag=True``."""

    fine: st.SearchStrategy[str | None]
    bad: st.SearchStrategy[str | None]
    flag: bool = False


def absent_or(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), strategy)


def switch() -> Opt:
    return Opt(st.sampled_from([None, "on"]), st.just("on"), flag=True)


@st.composite
def command_line(
    draw: st.DrawFn, table: Mapping[str, Opt], always: Sequence[str] = ()
) -> list[str]:
    """Every option of ``table`` drawn from its working values, except up to two spoiled ones;
    an option named ``"#1"``, ``"#2"`` is positional."""
    spoiled = draw(st.sets(st.sampled_from(sorted(table)), max_size=2))
    for name in sorted(spoiled):
        event(f"spoiled {name}")
    args: list[str] = []
    positional: list[str] = []
    for name, opt in table.items():
        value = draw(opt.bad if name in spoiled else opt.fine)
        if value is None:
            continue
        if name.startswith("#"):
            positional.append(value)
        elif opt.flag:
            args.append(name)
        elif value.startswith("-"):  # as a user writes a negative number: --flag=-5
            args.append(f"{name}={value}")
        else:
            args += [name, value]
    return [*always, *positional, *args]


# ------------------------------------------------------------------------------ running a command


def is_note(line: str) -> bool:
    """simonsca's one-line status notes and warnings (not errors)."""
    if line.startswith("simonsca: "):
        return True
    head, sep, rest = line.partition(": ")
    return head.startswith("simonsca ") and sep != "" and rest.startswith("warning: ")


def check(capfd: pytest.CaptureFixture[str], argv: Sequence[str], disk: Disk) -> int:
    """Run ``argv``; assert the contract; return the exit status."""
    existing = [Path(a) for a in argv if Path(a).name.startswith("existing-")]
    try:
        rc = main(list(argv))
    except SystemExit as exit_:  # argparse
        rc = exit_.code if isinstance(exit_.code, int) else 2
    out, err = capfd.readouterr()
    shown = f"simonsca {' '.join(map(repr, argv))}\n--- stdout\n{out[-2000:]}\n--- stderr\n{err}"
    assert "Traceback" not in out + err, shown
    assert rc in (0, 1, 2), shown
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if not is_note(line)]
    if rc == 2:
        assert len(errors) == 1, shown
        assert errors[0].startswith(f"simonsca {argv[0]}: error: "), shown
    else:
        assert errors == [], shown
    event(f"exit {rc}" + (f": {errors[0].split(': error: ')[-1][:50]}" if errors else ""))
    disk.unchanged()
    if "--force" not in argv or rc != 0:
        for path in existing:
            n = path.name.split("-")[1].split(".")[0]
            assert path.read_text() == f"the user's file {n}\n", shown
    return rc


#: Examples per command; ``SIMONSCA_FUZZ_EXAMPLES=300`` for a thorough run (about 15 minutes).
EXAMPLES = int(os.environ.get("SIMONSCA_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ------------------------------------------------------------------------------ generate, prepare

GENERATE = {
    "--split": Opt(absent_or(words("train", "eval")), words("test", "", "EVAL")),
    "--count": Opt(words("1", "3"), outside(1, 10_000_000)),
    "--seed-start": Opt(absent_or(words("1000000", "1000123")), outside(0, 10**15)),
    "--family": Opt(
        absent_or(words("v5-small", "v5", "next-small", "generalization")), words("nope", "", "V5")
    ),
    "--format": Opt(absent_or(words("jsonl", "v5", "mlx")), words("csv", "", "JSONL")),
    "--out": Opt(outputs("new"), outputs(*BAD_OUTPUTS)),
    "--force": switch(),
}


@FUZZ
@given(argv=command_line(GENERATE, ["generate"]))
def test_generate(capfd: pytest.CaptureFixture[str], disk: Disk, argv: list[str]) -> None:
    if check(capfd, argv, disk) == 0:
        assert Path(argv[argv.index("--out") + 1]).is_file()


PREPARE = {
    "--format": Opt(absent_or(words("jsonl", "v5", "mlx")), words("xml", "")),
    "--out": Opt(outputs("new"), outputs(*BAD_OUTPUTS)),
    "--force": switch(),
}


@settings(
    FUZZ, max_examples=max(2, EXAMPLES // 4)
)  # a working prepare writes the seed's 19,587 items: 2 s
@given(argv=command_line(PREPARE, ["prepare"]))
def test_prepare(capfd: pytest.CaptureFixture[str], disk: Disk, argv: list[str]) -> None:
    check(capfd, argv, disk)


# ------------------------------------------------------------------------------ eval, compare

RUN = {
    "--eval-size": Opt(words("1", "2"), outside(1, 100_000)),
    "--forced-size": Opt(words("1", "2"), outside(1, 100_000)),
    "--n-ctx": Opt(
        words("512", "400"),
        st.one_of(outside(64, 1 << 27), words("64", "100", "513", "4194304", "100000000")),
    ),
    "--n-threads": Opt(words("1"), outside(1, 1024)),
    "--eval-seed": Opt(absent_or(words("1000000", str(10**15 - 10))), outside(1_000_000, 10**15)),
    "--eval-family": Opt(
        absent_or(words("v5-small", "next-small")), words("v6", "", "generalization", "v5")
    ),
    "--scoring": Opt(absent_or(words("generate", "teacher-forced", "both")), words("all", "")),
    "--prompt-mode": Opt(absent_or(words("raw")), words("chat", "both", "html", "")),
    "--chat-template": Opt(absent_or(words("gemma", "llama3", "chatml")), words("mistral", "")),
    "--batch-size": Opt(absent_or(words("1", "2")), outside(1, 256)),
    "--n-gpu-layers": Opt(absent_or(words("0", "-1")), outside(-1, 100_000)),
    "--concurrency": Opt(absent_or(words("1")), outside(1, 1024)),
    "--request-timeout": Opt(absent_or(words("5")), outside(1, 86_400)),
    "--min-exact-gain": Opt(absent_or(words("0", "5%", "-2%")), shares()),
    "--min-cell-gain": Opt(absent_or(words("0.05")), shares()),
    "--max-family-regression": Opt(absent_or(words("10%")), shares()),
    "--min-parse-rate": Opt(absent_or(words("0.9")), shares()),
    "--min-merge-agreement": Opt(absent_or(words("90%")), shares()),
    "--min-chat-gain-share": Opt(absent_or(words("0.5")), shares()),
    "--alpha": Opt(absent_or(words("0.05", "1%")), shares()),
    "--reports-dir": Opt(
        reports("fresh", "shared"), reports("file", "under a file", "proc", "empty")
    ),
    "--run-id": Opt(st.none(), words("latest", "..", ".", "a/b", "", " ", "taken", "x" * 300)),
    "--require-skill": switch(),
    "--no-early-stop": switch(),
}
ALWAYS = ["--no-cache", "--no-progress"]


@pytest.fixture(autouse=True)
def _a_taken_run_id(disk: Disk) -> None:
    """``--run-id taken`` names a run that already exists in every reports folder drawn."""
    (disk.root / "reports" / "shared" / "taken").mkdir(parents=True, exist_ok=True)


@FUZZ
@given(
    argv=command_line(
        {
            "#1": Opt(inputs("model"), inputs(*NOT_MODELS)),
            "--lora": Opt(absent_or(inputs("adapter")), inputs(*NOT_ADAPTERS)),
            **RUN,
        },
        ["eval"],
    )
)
def test_eval(capfd: pytest.CaptureFixture[str], disk: Disk, argv: list[str]) -> None:
    check(capfd, [*argv, *ALWAYS], disk)


@FUZZ
@given(
    argv=command_line(
        {
            "#1": Opt(inputs("model"), inputs(*NOT_MODELS)),
            "#2": Opt(absent_or(inputs("model")), inputs(*NOT_MODELS)),
            "--lora": Opt(inputs("adapter"), inputs(*NOT_ADAPTERS)),
            "--base-model": Opt(st.none(), st.one_of(inputs("model"), inputs(*NOT_MODELS))),
            "--merged-model": Opt(st.none(), st.one_of(inputs("model"), inputs(*NOT_MODELS))),
            "--merged-from-lora": Opt(
                st.none(), st.one_of(inputs("adapter"), inputs(*NOT_ADAPTERS))
            ),
            **RUN,
        },
        ["compare"],
    )
)
def test_compare(capfd: pytest.CaptureFixture[str], disk: Disk, argv: list[str]) -> None:
    check(capfd, [*argv, *ALWAYS], disk)


# ------------------------------------------------------------------------------ diff, doctor, merge

MERGE_TYPES = ("Q8_0", "Q6_K", "Q4_K", "F16", "F32", "q8_0", "Q4_0")


DIFF = {
    "#1": Opt(inputs("model"), inputs(*NOT_MODELS)),
    "--merge-type": Opt(absent_or(words(*MERGE_TYPES)), words("NOPE", "", "IQ2_XXS", "q9")),
    "--logit-items": Opt(absent_or(words("0")), outside(0, 10_000)),
    "--json": switch(),
}


@FUZZ
@given(
    argv=st.one_of(
        command_line(  # diff BASE MERGED
            {
                **DIFF,
                "#2": Opt(inputs("model"), inputs(*NOT_MODELS)),
                "--lora": Opt(st.none(), inputs("adapter", *NOT_ADAPTERS)),
            },
            ["diff"],
        ),
        command_line(  # diff BASE --lora ADAPTER
            {
                **DIFF,
                "#2": Opt(st.none(), inputs("model", *NOT_MODELS)),
                "--lora": Opt(inputs("adapter"), inputs(*NOT_ADAPTERS)),
            },
            ["diff"],
        ),
    )
)
def test_diff(capfd: pytest.CaptureFixture[str], disk: Disk, argv: list[str]) -> None:
    check(capfd, argv, disk)


@FUZZ
@given(
    argv=command_line(
        {
            "--train-data": Opt(
                inputs("train file"),
                inputs(
                    "notes",
                    "empty file",
                    "binary",
                    "folder",
                    "missing",
                    "under a file",
                    "proc",
                    "empty",
                    "model",
                ),
            ),
            "--model": Opt(inputs("model"), inputs(*NOT_MODELS)),
            "--ctx": Opt(absent_or(words("16", "64", "512", str(1 << 22))), outside(16, 1 << 22)),
            "--sample-start": Opt(absent_or(words("<s>")), words("", "\n", "# Input", "x" * 1000)),
            "--train-log": Opt(
                absent_or(inputs("seed log")),
                inputs("notes", "folder", "missing", "binary", "empty file", "empty"),
            ),
            "--merge-base": Opt(
                absent_or(words("Meta-Llama-3-8B-Instruct-Q6_K.gguf")),
                st.one_of(words("", "x.gguf"), inputs(*NOT_MODELS)),
            ),
            # valid sizes beyond a few items take seconds each: spoiled values stay out of range
            "--eval-size": Opt(absent_or(words("0", "1", "5")), outside(0, 100_000)),
            "--json": switch(),
        },
        ["doctor"],
    )
)
def test_doctor(capfd: pytest.CaptureFixture[str], disk: Disk, argv: list[str]) -> None:
    check(capfd, argv, disk)


@FUZZ
@given(
    argv=command_line(
        {
            "#1": Opt(inputs("model"), inputs(*NOT_MODELS)),
            "#2": Opt(inputs("adapter"), inputs(*NOT_ADAPTERS)),
            "#3": Opt(outputs("new"), outputs(*BAD_OUTPUTS)),
            "--requantize": Opt(
                absent_or(words("Q8_0", "Q4_0", "F16", "F32", "q8_0")),
                words("Q6_K", "NOPE", "", "IQ2_XXS"),
            ),
            "--force": switch(),
        },
        ["merge"],
    )
)
def test_merge(capfd: pytest.CaptureFixture[str], disk: Disk, argv: list[str]) -> None:
    rc = check(capfd, argv, disk)
    out = Path(argv[3])
    if rc == 0:
        from simonsca.gguf_file import open_gguf

        assert open_gguf(out, "merged model").tensors
    if argv[3] and out.parent.is_dir():
        assert not list(out.parent.glob(".*.tmp"))

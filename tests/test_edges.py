"""Nothing a user types, and nothing a disk does, ends in a traceback or loses their files.

One test (or a few) per row of the issue, on the tiny real GGUF fixtures: the command line
through :func:`simonsca.cli.main` (a real process where one matters: kill -9, a lock held by
another process, two runs at once), the pytest face through ``pytester`` running the packaged
``evals/`` file. Every error is one line naming the file or option and what was expected, exit
status 2 (``ERROR: simonsca: ...`` under pytest), before any model work where it can be known
then, and nothing the user wrote is deleted or overwritten.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_run import Run, cli
from tiny_models import BASE, LORA, tiny

from simonsca import cache as cache_module
from simonsca.errors import ConfigError, DatasetError, OutputExistsError
from simonsca.gguf_file import open_gguf

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EVALS = ROOT / "simonsca" / "evals" / "test_finetune.py"
#: Options that keep a run on the tiny model to about a second (one thread: the machine is shared).
FAST = [
    "--n-ctx",
    "512",
    "--n-threads",
    "1",
    "--eval-size",
    "2",
    "--forced-size",
    "2",
    "--no-progress",
]
PLUGIN_FAST = [
    "--n-ctx=512",
    "--n-threads=1",
    "--eval-size=2",
    "--forced-size=2",
    "--no-simonsca-progress",
    "--no-simonsca-cache",
    "-p",
    "no:cacheprovider",
]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in its own folder (no pyproject.toml of ours), with its own answer cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_simonsca_evals=EVALS.read_text())
    return pytester


def pytest_usage_error(result: pytest.RunResult, *needles: str) -> str:
    """One ``ERROR: simonsca: ...`` line, a usage error, no test ran, no traceback."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text
    lines = [line for line in result.stderr.lines if line.startswith("ERROR: simonsca:")]
    assert len(lines) == 1, result.stderr.str()
    assert text.count("simonsca:") == text.count("simonsca: comparing") + 1, text
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    try:
        outcomes = result.parseoutcomes()
    except ValueError:  # no summary line: the session stopped before collecting any test
        outcomes = {}
    assert not outcomes.get("errors") and not outcomes.get("error"), outcomes
    return lines[0]


def with_chat_template(src: Path, dst: Path, template: str) -> Path:
    """A copy of the GGUF ``src`` with ``tokenizer.chat_template`` set to ``template``."""
    header = open_gguf(src, "model")
    assert header.chat_template is None
    data = src.read_bytes()
    key, value = b"tokenizer.chat_template", template.encode("utf-8")
    record = (
        struct.pack("<Q", len(key))
        + key
        + struct.pack("<I", 8)
        + struct.pack("<Q", len(value))
        + value
    )
    kv_end = 24 + len(header.kv_bytes)
    head = b"GGUF" + struct.pack("<IQQ", header.version, len(header.tensors), header.n_kv + 1)
    body = head + header.kv_bytes + record + data[kv_end : header.header_end]
    body += b"\0" * (-len(body) % header.alignment)
    dst.write_bytes(body + data[header.data_offset :])
    assert open_gguf(dst, "model").chat_template == template
    return dst


@pytest.fixture(scope="module")
def other_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real LoRA for a tiny model of another width: it does not fit the tiny base."""
    folder = tmp_path_factory.mktemp("other")
    narrow = tiny.write_tiny_model(
        folder / "narrow.gguf", cfg=tiny.TinyConfig(n_embd=32, n_head=4, n_head_kv=2, n_ff=64)
    )
    return Path(tiny.write_tiny_lora(folder / "narrow-lora.gguf", narrow))


def run_folders(reports: Path) -> list[Path]:
    return sorted(
        p
        for p in reports.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".") and p.name != "latest"
    )


def no_leftovers(reports: Path) -> None:
    names = [p.name for p in reports.iterdir()]
    assert not [
        n
        for n in names
        if n.startswith((".partial-", ".latest-", ".simonsca-probe-")) and n != ".partial-mine"
    ], names
    ours = [p for p in reports.iterdir() if (p / ".simonsca-run").is_file()]
    assert not [t for run in ours for t in run.rglob("*.tmp")]


# --------------------------------------------------------------------------- row: --eval-size 10**9


def test_huge_eval_size_is_refused_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    for command in (["eval", BASE], ["compare", BASE, "--lora", LORA]):
        run = cli(capfd, *command, "--eval-size", "1000000000", "--no-cache")
        run.error_line("--eval-size", "1000000000", "100000")
        assert not run.model_work_started
    run = cli(capfd, "eval", BASE, "--forced-size", "10" * 9)
    run.error_line("--forced-size")
    assert time.monotonic() - started < 5


def test_huge_eval_size_in_pyproject_is_refused(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.simonsca]\neval_size = 1000000000\n")
    run = cli(capfd, "eval", BASE, "--no-cache")
    run.error_line("pyproject.toml", "eval_size", "1000000000")


def test_huge_eval_size_under_pytest_is_one_usage_error(suite: pytest.Pytester) -> None:
    result = suite.runpytest(
        f"--base-model={BASE}", f"--lora={LORA}", *PLUGIN_FAST, "--eval-size=1000000000"
    )
    pytest_usage_error(result, "--eval-size", "1000000000")


# --------------------------------------------------------------------------- row: --reports-dir


@pytest.fixture
def bad_reports_dirs(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("the user's own notes")
    return {
        "an existing file": a_file,
        "a folder under a file": a_file / "reports",
        "a place that cannot be written": Path("/proc/simonsca-reports"),
    }


@pytest.mark.parametrize(
    "kind", ["an existing file", "a folder under a file", "a place that cannot be written"]
)
def test_bad_reports_dir_is_refused_before_model_work(
    kind: str,
    bad_reports_dirs: dict[str, Path],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    target = bad_reports_dirs[kind]
    for command in (["eval", BASE], ["compare", BASE, "--lora", LORA]):
        run = cli(capfd, *command, *FAST, "--no-cache", "--reports-dir", target)
        run.error_line(str(target), "--reports-dir")
        assert not run.model_work_started
    assert (tmp_path / "notes.txt").read_text() == "the user's own notes"


@pytest.mark.parametrize(
    "kind", ["an existing file", "a folder under a file", "a place that cannot be written"]
)
def test_bad_reports_dir_under_pytest_is_one_usage_error(
    kind: str, bad_reports_dirs: dict[str, Path], suite: pytest.Pytester, tmp_path: Path
) -> None:
    target = bad_reports_dirs[kind]
    result = suite.runpytest(
        f"--base-model={BASE}", f"--lora={LORA}", f"--simonsca-reports-dir={target}", *PLUGIN_FAST
    )
    pytest_usage_error(result, str(target), "--simonsca-reports-dir")
    assert (tmp_path / "notes.txt").read_text() == "the user's own notes"


def test_reports_that_cannot_be_written_after_the_run_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A disk that fills while the report is written: one line, no partial folder."""
    from simonsca.report import files

    real_fsync = os.fsync

    def full(fd: int) -> None:
        real_fsync(fd)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    reports = tmp_path / "reports"
    run = cli(capfd, "eval", BASE, *FAST, "--no-cache", "--reports-dir", reports)
    run.error_line(str(reports), "No space left on device")
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert run_folders(reports) == []
    no_leftovers(reports)


# --------------------------------------------------------------------------- row: the answer cache


def _broken_caches(folder: Path) -> dict[str, bytes | None]:
    """A good cache, then the ways a disk (or a user) can break it. None: a folder."""
    good = folder / "good.sqlite3"
    db = sqlite3.connect(good)
    db.execute(
        "CREATE TABLE completions (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
        "n_tokens INTEGER NOT NULL, finish_reason TEXT NOT NULL, created REAL NOT NULL)"
    )
    db.executemany(
        "INSERT INTO completions VALUES (?, ?, 1, 'stop', 0)",
        [(str(k), "x" * 2000) for k in range(300)],
    )
    db.commit()
    db.close()
    data = good.read_bytes()
    damaged = bytearray(data)
    damaged[8192:60000] = b"\xff" * (60000 - 8192)
    return {
        "garbage": b"this is not a database\n" * 50,
        "truncated": data[: len(data) // 3],
        "damaged pages": bytes(damaged),
        "a directory": None,
    }


@pytest.mark.parametrize("kind", ["garbage", "truncated", "damaged pages", "a directory"])
def test_a_broken_cache_is_moved_aside_and_the_run_goes_on(
    kind: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    content = _broken_caches(tmp_path)[kind]
    path = cache_dir / "completions.sqlite3"
    if content is None:
        path.mkdir()
        (path / "mine.txt").write_text("kept")
    else:
        path.write_bytes(content)
    run = cli(capfd, "eval", BASE, *FAST, "--reports-dir", tmp_path / "reports")
    run.clean()
    assert run.rc == 0
    assert "Traceback" not in run.err
    warnings = [line for line in run.err_lines if "answer cache" in line]
    assert len(warnings) == 1 and "moved it to" in warnings[0], run.err
    [aside] = [p for p in cache_dir.iterdir() if ".broken-" in p.name and "-journal" not in p.name]
    if content is None:
        assert (aside / "mine.txt").read_text() == "kept"
    else:
        assert aside.read_bytes() == content  # nothing the disk left is deleted
    # the fresh cache works: a second run reads every answer back
    again = cli(capfd, "eval", BASE, *FAST, "--reports-dir", tmp_path / "reports")
    again.clean()
    assert again.rc == 0 and "answer cache" not in again.err
    assert len(cache_module.AnswerCache(path)) > 0


@pytest.fixture
def locked_cache(tmp_path: Path) -> Iterator[Path]:
    """The answer cache with an exclusive lock held by another process."""
    path = tmp_path / "cache" / "completions.sqlite3"
    path.parent.mkdir()
    cache_module.AnswerCache(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sqlite3, sys, time\n"
                "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "db.execute('BEGIN EXCLUSIVE')\n"
                "print('locked', flush=True)\n"
                "time.sleep(120)\n"
            ),
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield path
    finally:
        holder.kill()
        holder.wait()


def test_a_locked_cache_is_one_line_and_no_cache_runs(
    locked_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cache_module, "LOCK_NOTICE_SECONDS", 0.2)
    monkeypatch.setattr(cache_module, "LOCK_GIVE_UP_SECONDS", 0.5)
    started = time.monotonic()
    run = cli(capfd, "eval", BASE, *FAST, "--reports-dir", tmp_path / "reports")
    line = run.error_line(str(locked_cache), "locked", "--no-cache")
    assert run.err_lines[-1] == line
    assert time.monotonic() - started < 15
    assert not run.model_work_started  # the cache is opened before any model loads
    # --no-cache: the same run, the lock still held, goes through
    run = cli(capfd, "eval", BASE, *FAST, "--no-cache", "--reports-dir", tmp_path / "reports")
    run.clean()
    assert run.rc == 0
    assert locked_cache.is_file()


def test_the_cache_folder_cannot_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("mine")
    monkeypatch.setenv("SIMONSCA_CACHE", str(tmp_path / "a-file" / "cache"))
    run = cli(capfd, "eval", BASE, *FAST, "--reports-dir", tmp_path / "reports")
    run.error_line("cache", "SIMONSCA_CACHE", "--no-cache")
    assert (tmp_path / "a-file").read_text() == "mine"


def test_the_help_says_where_the_cache_is_and_how_to_turn_it_off(
    capfd: pytest.CaptureFixture[str],
) -> None:
    for command in ("eval", "compare"):
        run = cli(capfd, command, "--help")
        assert run.rc == 0
        text = " ".join(run.out.split())
        assert "SIMONSCA_CACHE" in text and "--no-cache" in text


# --------------------------------------------------------------------------- row: two runs, one second


def test_run_ids_made_in_the_same_second_differ() -> None:
    from simonsca.suite import make_run_id

    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    ids = {make_run_id(moment) for _ in range(10)}
    assert len(ids) == 10
    assert all(i.startswith("20260102-030405-") for i in ids)


def test_two_compare_runs_started_together_both_write_their_reports(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    command = [
        sys.executable,
        "-m",
        "simonsca.cli",
        "compare",
        str(BASE),
        "--lora",
        str(LORA),
        *FAST,
        "--reports-dir",
        str(reports),
    ]
    env = {**os.environ, "SIMONSCA_CACHE": str(tmp_path / "cache")}
    runs = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in runs]
    for rc, out, err in results:
        Run(rc, out, err).clean()
    assert results[0][0] == results[1][0]
    folders = run_folders(reports)
    assert len(folders) == 2
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == [
            ".simonsca-run",
            "report.html",
            "report.json",
            "summary.md",
        ]
    no_leftovers(reports)


def test_run_id_onto_an_existing_run_is_refused_before_model_work(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    first = cli(
        capfd, "eval", BASE, *FAST, "--no-cache", "--reports-dir", reports, "--run-id", "mine"
    )
    first.clean()
    assert first.rc == 0
    before = {p.name: p.read_bytes() for p in (reports / "mine").iterdir()}
    for command in (["eval", BASE], ["compare", BASE, "--lora", LORA]):
        run = cli(
            capfd, *command, *FAST, "--no-cache", "--reports-dir", reports, "--run-id", "mine"
        )
        run.error_line("mine", "already exists", "--run-id")
        assert not run.model_work_started
    assert {p.name: p.read_bytes() for p in (reports / "mine").iterdir()} == before


def test_a_run_id_claimed_by_a_live_run_is_refused_before_model_work(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Two runs given one --run-id at once: the one that plans second is refused at once (the
    first run's claim names a live process); a claim whose process is gone is taken over."""
    reports = tmp_path / "reports"
    reports.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        (reports / ".claim-mine").write_text(f"{other.pid}\n")
        run = cli(
            capfd, "eval", BASE, *FAST, "--no-cache", "--reports-dir", reports, "--run-id", "mine"
        )
        run.error_line("mine", "another simonsca", str(other.pid), "--run-id")
        assert not run.model_work_started and not (reports / "mine").exists()
    finally:
        other.kill()
        other.wait()
    run = cli(
        capfd, "eval", BASE, *FAST, "--no-cache", "--reports-dir", reports, "--run-id", "mine"
    )
    run.clean()
    assert run.rc == 0 and (reports / "mine" / "report.json").is_file()
    assert not list(reports.glob(".claim-*"))  # released once the folder is written


@pytest.mark.parametrize("bad", ["latest", "..", "a/b", "", " "])
def test_run_ids_that_are_not_folder_names_are_refused(
    bad: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = cli(capfd, "eval", BASE, *FAST, "--reports-dir", tmp_path / "r", "--run-id", bad)
    run.error_line("--run-id")


def test_run_id_onto_an_existing_run_under_pytest_is_one_usage_error(
    suite: pytest.Pytester,
) -> None:
    (suite.path / "reports" / "taken").mkdir(parents=True)
    result = suite.runpytest(
        f"--base-model={BASE}", f"--lora={LORA}", "--simonsca-run-id=taken", *PLUGIN_FAST
    )
    pytest_usage_error(result, "taken", "already exists", "--simonsca-run-id")


# --------------------------------------------------------------------------- row: reports/latest


@pytest.mark.parametrize("kind", ["folder", "file", "symlink elsewhere"])
def test_a_latest_of_the_users_is_left_alone(
    kind: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    latest = reports / "latest"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.txt").write_text("mine")
    if kind == "folder":
        latest.mkdir()
        (latest / "mine.txt").write_text("mine")
    elif kind == "file":
        latest.write_text("mine")
    else:
        latest.symlink_to(elsewhere)
    run = cli(capfd, "eval", BASE, *FAST, "--no-cache", "--reports-dir", reports)
    run.clean()
    assert run.rc == 0
    assert "Traceback" not in run.err
    [warning] = [line for line in run.err_lines if "latest" in line]
    assert "left it alone" in warning
    [folder] = run_folders(reports)
    assert (folder / "report.html").is_file()
    assert str(folder) in warning
    if kind == "folder":
        assert (latest / "mine.txt").read_text() == "mine" and not latest.is_symlink()
    elif kind == "file":
        assert latest.read_text() == "mine"
    else:
        assert os.readlink(latest) == str(elsewhere)
    assert (elsewhere / "mine.txt").read_text() == "mine"


def test_latest_follows_the_newest_run_when_it_is_ours(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    for run_id in ("first", "second"):
        run = cli(
            capfd, "eval", BASE, *FAST, "--no-cache", "--reports-dir", reports, "--run-id", run_id
        )
        run.clean()
        assert run.rc == 0 and "latest" not in run.err, run.err
        assert os.readlink(reports / "latest") == run_id


# --------------------------------------------------------------------------- rows: chat templates


MALFORMED = "{% if %}"
RUNAWAY = (
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    "{{ messages[0]['content'] }}"
)


def test_a_malformed_chat_template_leaves_raw_mode_alone_and_is_one_line_in_chat_mode(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    model = with_chat_template(BASE, tmp_path / "malformed.gguf", MALFORMED)
    raw = cli(capfd, "eval", model, *FAST, "--no-cache", "--reports-dir", tmp_path / "r")
    raw.clean()
    assert raw.rc == 0
    for mode in ("chat", "both"):
        run = cli(
            capfd,
            "eval",
            model,
            *FAST,
            "--no-cache",
            "--reports-dir",
            tmp_path / "r",
            "--prompt-mode",
            mode,
        )
        run.error_line(str(model), "chat template", "malformed", "--prompt-mode raw")
        assert not run.model_work_started


def test_a_malformed_chat_template_under_pytest_is_one_usage_error(
    suite: pytest.Pytester, tmp_path: Path
) -> None:
    model = with_chat_template(BASE, tmp_path / "malformed.gguf", MALFORMED)
    result = suite.runpytest(
        f"--base-model={model}", f"--lora={LORA}", "--prompt-mode=chat", *PLUGIN_FAST
    )
    pytest_usage_error(result, "malformed.gguf", "malformed")


def test_a_runaway_chat_template_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from simonsca.models import chat_template

    monkeypatch.setattr(chat_template, "TEMPLATE_SECONDS", 0.3)
    monkeypatch.setattr(chat_template, "TEMPLATE_RANGE_STEPS", 10**12)  # the clock stops it here
    model = with_chat_template(BASE, tmp_path / "runaway.gguf", RUNAWAY)
    started = time.monotonic()
    run = cli(
        capfd,
        "eval",
        model,
        *FAST,
        "--no-cache",
        "--reports-dir",
        tmp_path / "r",
        "--prompt-mode",
        "chat",
    )
    run.error_line(str(model), "took longer than 0.3 s")
    assert time.monotonic() - started < 10
    raw = cli(capfd, "eval", model, *FAST, "--no-cache", "--reports-dir", tmp_path / "r")
    raw.clean()
    assert raw.rc == 0


def test_a_runaway_chat_template_is_stopped_outside_the_main_thread_too() -> None:
    """SIGALRM only reaches the main thread; the loop-step budget stops a runaway anywhere,
    and leaves a template that loops a little alone."""
    from simonsca.models.chat_template import TEMPLATE_RANGE_STEPS, ChatTemplate

    looping = ChatTemplate(
        "{% for i in range(3) %}{{ i }}{% endfor %}{{ range(5)|length }}{{ range(4)[2] }}"
        "[{{ messages[0]['content'] }}]",
        path=Path("x.gguf"),
        bos="",
        eos="",
    )
    runaway = ChatTemplate(RUNAWAY, path=Path("runaway.gguf"), bos="", eos="")
    outcome: dict[str, object] = {}

    def render_both() -> None:
        outcome["looping"] = looping.render("hi")
        try:
            runaway.render("hi")
        except ConfigError as error:
            outcome["error"] = str(error)

    worker = threading.Thread(target=render_both)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert outcome["looping"] == "01252[hi]"
    error = str(outcome["error"])
    assert "runaway.gguf" in error and f"{TEMPLATE_RANGE_STEPS:,} loop steps" in error
    assert "\n" not in error


def test_the_template_time_limit_gives_back_an_outer_alarm() -> None:
    from simonsca.models.chat_template import ChatTemplate

    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        template = ChatTemplate(
            "[{{ messages[0]['content'] }}]", path=Path("x.gguf"), bos="", eos=""
        )
        assert template.render("hi") == "[hi]"
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25.0 < left <= 30.0  # the outer alarm is still set, with its own time
        assert signal.getsignal(signal.SIGALRM) is not None and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_chat_mode_without_any_template_is_refused_before_model_work(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = cli(
        capfd,
        "eval",
        BASE,
        *FAST,
        "--no-cache",
        "--reports-dir",
        tmp_path / "r",
        "--prompt-mode",
        "chat",
    )
    run.error_line(str(BASE), "no chat template", "--chat-template")
    assert not run.model_work_started
    ok = cli(
        capfd,
        "eval",
        BASE,
        *FAST,
        "--no-cache",
        "--reports-dir",
        tmp_path / "r",
        "--prompt-mode",
        "chat",
        "--chat-template",
        "chatml",
    )
    ok.clean()
    assert ok.rc == 0


# --------------------------------------------------------------------------- row: diff, merge, --force


def test_diff_logit_items_negative_is_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    run = cli(capfd, "diff", BASE, "--lora", LORA, "--logit-items", "-1")
    run.error_line("--logit-items", "-1")


def test_diff_unknown_merge_type_is_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    run = cli(capfd, "diff", BASE, "--lora", LORA, "--merge-type", "NOPE")
    run.error_line("--merge-type", "NOPE")


def test_diff_of_an_adapter_as_a_model_is_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    run = cli(capfd, "diff", LORA, BASE)
    run.error_line(str(LORA), "LoRA adapter", "--lora")


@pytest.mark.parametrize("command", ["merge", "generate", "prepare"])
def test_force_onto_a_folder_is_refused_and_the_folder_kept(
    command: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "outputs"
    folder.mkdir()
    (folder / "mine.txt").write_text("mine")
    args = {
        "merge": ["merge", BASE, LORA, folder, "--force"],
        "generate": ["generate", "--count", "2", "--out", folder, "--force"],
        "prepare": ["prepare", "--out", folder, "--force"],
    }[command]
    run = cli(capfd, *args)
    run.error_line(str(folder), "folder")
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    assert (folder / "mine.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["merge", "generate"])
def test_an_output_under_a_file_is_one_line(
    command: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    out = mine / "out.gguf"
    args = {
        "merge": ["merge", BASE, LORA, out],
        "generate": ["generate", "--count", "2", "--out", out],
    }[command]
    run = cli(capfd, *args)
    run.error_line(str(mine), "is a file, not a folder")
    assert mine.read_text() == "mine"


def test_library_writers_refuse_a_folder_even_with_force(tmp_path: Path) -> None:
    from simonsca import dataset
    from simonsca.merge import merge_adapter

    folder = tmp_path / "outputs"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        merge_adapter(BASE, LORA, folder, overwrite=True)
    with pytest.raises(DatasetError, match="is a folder"):
        dataset.write_items(dataset.v5_items(2), folder, "jsonl", force=True)
    with pytest.raises(OutputExistsError):
        dataset.write_items(dataset.v5_items(2), BASE, "jsonl")
    assert list(folder.iterdir()) == []


# --------------------------------------------------------------------------- row: generate --count


@pytest.mark.parametrize("count", ["-5", "0", "abc", "2.5", ""])
def test_generate_bad_count_is_refused_and_writes_nothing(
    count: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "items.jsonl"
    for split in ("train", "eval"):
        run = cli(capfd, "generate", "--split", split, "--count", count, "--out", out)
        run.error_line("--count")
        assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_generate_a_large_eval_split_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Eval items are made a batch at a time (a huge --count does not build them all first)."""
    from simonsca import settings

    monkeypatch.setattr(settings, "MAX_ITEMS", 3)
    out = tmp_path / "eval.jsonl"
    run = cli(capfd, "generate", "--split", "eval", "--count", "7", "--out", out)
    run.clean()
    assert run.rc == 0
    seeds = [line.split('"seed": ')[1].split(",")[0] for line in out.read_text().splitlines()]
    assert seeds == [str(1_000_000 + k) for k in range(7)]


# --------------------------------------------------------------------------- row: --n-ctx


def test_huge_n_ctx_is_refused_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    run = cli(capfd, "eval", BASE, "--n-ctx", "100000000", "--no-cache")
    run.error_line("--n-ctx 100000000", "512 tokens", BASE.name)  # the model's own limit
    assert not run.model_work_started
    absurd = cli(capfd, "eval", BASE, "--n-ctx", "1000000000000", "--no-cache")
    absurd.error_line("--n-ctx", "1000000000000")  # refused by the parser
    assert time.monotonic() - started < 5


def test_n_ctx_beyond_the_models_training_is_refused_before_loading(
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = cli(capfd, "eval", BASE, "--n-ctx", "4096", "--no-cache")
    run.error_line("--n-ctx 4096", "512", BASE.name)
    assert not run.model_work_started


def test_n_ctx_too_small_for_the_prompts_is_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = cli(
        capfd, "eval", BASE, *FAST, "--n-ctx", "64", "--no-cache", "--reports-dir", tmp_path / "r"
    )
    run.error_line("--n-ctx")


# --------------------------------------------------------------------------- row: adapter mismatch


def test_an_adapter_that_does_not_fit_is_refused_before_model_work(
    other_lora: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    for args in (
        ["compare", BASE, "--lora", other_lora],
        ["eval", BASE, "--lora", other_lora],
        ["compare", BASE, BASE, "--merged-from-lora", other_lora],
    ):
        run = cli(capfd, *args, *FAST, "--no-cache", "--reports-dir", tmp_path / "r")
        run.error_line(str(other_lora), "does not fit", str(BASE))
        assert not run.model_work_started
    assert not (tmp_path / "r").exists() or run_folders(tmp_path / "r") == []


def test_an_adapter_that_does_not_fit_under_pytest_is_one_usage_error(
    other_lora: Path, suite: pytest.Pytester
) -> None:
    result = suite.runpytest(f"--base-model={BASE}", f"--lora={other_lora}", *PLUGIN_FAST)
    pytest_usage_error(result, other_lora.name, "does not fit")
    assert "passed" not in result.stdout.str()


# --------------------------------------------------------------------------- row: a backtick name


def test_a_model_name_with_backticks_and_html_stays_text_in_the_reports(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hostile = tmp_path / "tiny`<img src=x onload=alert(1)>`&amp;|*x*.gguf"
    shutil.copyfile(BASE, hostile)
    reports = tmp_path / "reports"
    run = cli(capfd, "eval", hostile, *FAST, "--no-cache", "--reports-dir", reports)
    run.clean()
    assert run.rc == 0
    [folder] = run_folders(reports)
    summary = (folder / "summary.md").read_text()
    assert "<img" not in summary
    assert "&lt;img src=x onload=alert\\(1\\)&gt;" in summary
    named = [line for line in summary.splitlines() if "onload" in line]
    assert named
    for line in named:
        # every backtick of the name is escaped: no code span can open or close on it
        assert line.count("`") == line.count("\\`"), line
        assert "&amp;amp;" in line  # the name's own "&amp;" is text, not an entity
    html = (folder / "report.html").read_text()
    assert "<img src=x" not in html


# --------------------------------------------------------------------------- row: kill -9


CHILD = r"""
import os, pathlib, sys, time
from simonsca.report import files

root, phase = pathlib.Path(sys.argv[1]), sys.argv[2]

def pause(*args, **kwargs):
    print("ready", flush=True)
    time.sleep(120)

if phase == "before the marker":
    real_write_text = pathlib.Path.write_text
    def write_text(self, *args, **kwargs):
        if self.name == files.MARKER:
            pause()
        return real_write_text(self, *args, **kwargs)
    pathlib.Path.write_text = write_text
elif phase == "mid-file":
    real_fsync = os.fsync
    calls = []
    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            pause()
        return real_fsync(fd)
    os.fsync = fsync
elif phase == "pointing latest":
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        pause()
    os.replace = replace
files.write_run(root, "second", {"report.json": "{}", "summary.md": "x" * (1 << 22),
                                 "report.html": "<html>"})
"""


@pytest.mark.parametrize("phase", ["before the marker", "mid-file", "pointing latest"])
def test_kill_9_during_a_report_leaves_no_partial_folder_after_the_next_prepare(
    phase: str, tmp_path: Path
) -> None:
    from simonsca.report.files import prepare_reports_dir, write_run

    reports = tmp_path / "reports"
    reports.mkdir()
    first = write_run(reports, "first", {"report.json": "{}", "summary.md": "# first"})
    (reports / "notes.txt").write_text("the user's")
    (reports / ".partial-mine").mkdir()  # the user's own, unmarked: never touched
    (reports / ".partial-mine" / "draft.md").write_text("the user's draft")
    (first / ".report.json.x1.tmp").write_text("half")  # a temporary file of ours
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(reports), phase],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    left = [p.name for p in reports.iterdir()]
    assert any(n.startswith((".partial-second", ".latest-")) for n in left), left

    prepare_reports_dir(reports, warn=lambda message: pytest.fail(message))

    no_leftovers(reports)
    assert (reports / "notes.txt").read_text() == "the user's"
    assert (reports / ".partial-mine" / "draft.md").read_text() == "the user's draft"
    assert (first / "summary.md").read_text() == "# first"
    assert os.readlink(reports / "latest") == "first"
    if phase == "pointing latest":  # the run folder was complete before the kill
        assert len((reports / "second" / "summary.md").read_text()) == 1 << 22
    else:
        assert not (reports / "second").exists()
        write_run(reports, "second", {"report.json": "{}"})  # the id is free again
        assert os.readlink(reports / "latest") == "second"


# --------------------------------------------------------------------------- found by the fuzzing


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--count=--", "--out", "items.jsonl"],
        ["generate", "--count", "2", "--out=--"],
        ["eval", str(BASE), "--eval-size=--"],
        ["doctor", "--train-data", "t.txt", "--model", str(BASE), "--ctx=--"],
        ["diff", str(BASE), "--logit-items=--"],
    ],
)
def test_an_option_whose_value_is_a_double_dash_is_refused(
    argv: list[str], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Python 3.11's argparse hands `--count=--` to the command as an empty list."""
    run = cli(capfd, *argv)
    [flag] = [a.split("=")[0] for a in argv if a.endswith("=--")]
    run.error_line("expected one argument", flag)
    assert list(tmp_path.iterdir()) == []


def test_a_line_break_in_a_file_name_stays_on_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = cli(capfd, "eval", tmp_path / "two\nlines.gguf", "--no-cache")
    run.error_line("two\\nlines.gguf")


def test_an_error_during_the_run_under_pytest_is_reported_once(suite: pytest.Pytester) -> None:
    """--n-ctx 64 fits no prompt: found when the first answer is asked for, reported once."""
    result = suite.runpytest(f"--base-model={BASE}", f"--lora={LORA}", *PLUGIN_FAST, "--n-ctx=64")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text
    assert text.count("needs") == 1 and "--n-ctx" in text, text


def test_a_model_llama_cpp_cannot_load_is_one_line_with_llama_cpps_own_reason(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp logs the cause ("unknown model architecture") before its summary ("failed to
    load model"): the one line carries the cause."""
    from simonsca.finetune.scratch import gguf_llama  # the GGUF writer the tiny fixtures use

    monkeypatch.setattr(gguf_llama, "ARCH", "zzyzx")
    model = tiny.write_tiny_model(tmp_path / "zzyzx.gguf")
    run = cli(capfd, "eval", model, *FAST)
    line = run.error_line("zzyzx.gguf", "unknown model architecture: 'zzyzx'")
    assert "failed to load model" not in line


def _pytest_pyargs(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pytest --pyargs simonsca.evals`` as a user runs it from a project folder, with absolute
    model paths elsewhere: pytest takes them for path arguments and picks its rootdir from them
    (their common folder), not from the project."""
    models = project.parent / "models"
    models.mkdir(exist_ok=True)
    base, lora = (shutil.copy(p, models / p.name) for p in (BASE, LORA))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "simonsca.evals", "-p", "no:cacheprovider"]
        + ["--base-model", str(base), "--lora", str(lora), *PLUGIN_FAST[:-3], *args],
        check=False,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SIMONSCA_CACHE": str(project / "cache")},
    )


def test_pytest_reads_the_projects_pyproject_from_any_rootdir(tmp_path: Path) -> None:
    """Both faces find ``[tool.simonsca]`` the same way (the nearest pyproject.toml from the
    current folder up): a bad key is one usage error under pytest, as under `simonsca compare`."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[tool.simonsca]\nmin_cell_gian = 0.1\n")
    for folder in (project, project / "sub"):
        result = _pytest_pyargs(folder)
        text = result.stdout + result.stderr
        assert result.returncode == pytest.ExitCode.USAGE_ERROR, text
        assert "Traceback" not in text
        [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("ERROR: simonsca:")]
        assert str(project / "pyproject.toml") in line and "min_cell_gian" in line, line


def test_pytest_writes_reports_under_the_current_folder_not_the_rootdir(tmp_path: Path) -> None:
    """Relative report folders are read from the current folder (command line and default) or
    from the pyproject.toml's folder (a value written there), never from pytest's rootdir."""
    project = tmp_path / "project"
    project.mkdir()
    result = _pytest_pyargs(project)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert (project / "reports" / "latest" / "report.json").is_file(), result.stdout
    (project / "pyproject.toml").write_text('[tool.simonsca]\nreports_dir = "out/reports"\n')
    (project / "sub").mkdir()
    result = _pytest_pyargs(project / "sub")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert (project / "out" / "reports" / "latest" / "report.json").is_file(), result.stdout
    assert not (project / "sub" / "out").exists()

"""pytest plugin: the settings as options, the ``simonsca_result`` fixture, and the summary.

Thin on purpose (as Hypothesis's plugin is): the library is imported lazily inside hooks and
fixtures, so loading pytest stays fast for every project that has simonsca installed. Options
come from the one settings table (:mod:`simonsca.settings`); defaults from ``[tool.simonsca]``
in the nearest pyproject.toml from the current folder up (as for the CLI). Everything is checked at collection, before any model loads:
a bad option or file is one ``ERROR: simonsca: ...`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_RESULT = pytest.StashKey[Any]()
_PLAN = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    from simonsca import options

    group = parser.getgroup("simonsca", "simonsca: evaluate a finetuned model against its base")
    options.add_options(
        group.addoption, ("models", "items", "backend", "checks", "output"), plugin=True
    )


def _uses_simonsca(items: list[pytest.Item]) -> bool:
    return any("simonsca_result" in getattr(item, "fixturenames", ()) for item in items)


def _plan(config: pytest.Config) -> Any:
    """The checked plan for this session, built once (every file and folder checked here)."""
    if _PLAN not in config.stash:
        from simonsca import options, suite

        command_line = {o.key: config.getoption(options.dest(o.key)) for o in options.options()}
        # From the current folder, as `simonsca compare` does (options.find_pyproject), never
        # from the rootdir: pytest derives that from the paths on its command line, so absolute
        # model paths make it "/" (and reports would land in /reports).
        pyproject = options.read_pyproject(Path.cwd())
        config.stash[_PLAN] = suite.plan(options.resolve(command_line, pyproject))
    return config.stash[_PLAN]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every check runs once per candidate: ``test_x[checkpoint-20]`` (``test_x[merged]``)."""
    if "simonsca_candidate" not in metafunc.fixturenames:
        return
    from simonsca.errors import SimonscaError

    try:
        names = [c.name for c in _plan(metafunc.config).candidates]
    except SimonscaError:
        names = ["merged"]  # the plan's error is reported once, at the end of collection
    metafunc.parametrize("simonsca_candidate", names, ids=names)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not _uses_simonsca(items):
        return
    from simonsca.errors import SimonscaError

    try:
        checked = _plan(config)
    except SimonscaError as error:
        raise pytest.UsageError(f"simonsca: {error}") from None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"simonsca: comparing {checked.describe()}")


@pytest.fixture(scope="session")
def simonsca_result(request: pytest.FixtureRequest) -> Any:
    """The evaluation of the reference and every candidate, run once per session and shared by
    every test."""
    config = request.config
    if _RESULT not in config.stash:
        from simonsca.errors import SimonscaError
        from simonsca.suite import SuiteResult, evaluate_plan

        try:
            checked = _plan(config)
            record = evaluate_plan(checked)
            report_dir = None
            if checked.reports_dir is not None:
                from simonsca.report import write_reports

                report_dir = write_reports(record, checked.reports_dir)
            config.stash[_RESULT] = SuiteResult(record, report_dir)
        except SimonscaError as error:
            # One line, once: stop the session rather than repeat the error in every test.
            pytest.exit(f"simonsca: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
    return config.stash[_RESULT]


def enforce(result: Any, check: str, candidate: str | None = None) -> None:
    """Turn one check's outcome for ``candidate`` into this test's outcome: pass, skip, xfail or
    fail."""
    from simonsca.outcome import Status

    outcome = result.record.check(check, candidate)
    if outcome.status is Status.SKIPPED:
        pytest.skip(outcome.message)
    if outcome.status is Status.XFAILED:
        pytest.xfail(outcome.message)
    if outcome.status is Status.FAILED:
        pytest.fail(outcome.message + "\n" + _context(result, candidate), pytrace=False)


def _context(result: Any, candidate: str | None) -> str:
    from simonsca.report.tables import verdict_line

    record = result.record
    lines = [verdict_line(record, candidate) or "", f"compared: {record.evaluation.compared}"]
    lines += [f"finding [{f.code}]: {f.title}" for f in record.evaluation.findings]
    if result.report_dir is not None:
        lines.append(f"report: {result.report_dir / 'report.html'}")
    return "\n".join(line for line in lines if line)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    result = config.stash.get(_RESULT, None)
    if result is None:
        return
    from simonsca.report.terminal import render_terminal

    terminalreporter.section("simonsca")
    for line in render_terminal(result.record).splitlines():
        terminalreporter.write_line(line)
    if result.report_dir is not None:
        terminalreporter.write_line(
            f"reports: {result.report_dir}/report.html (summary.md, report.json)"
        )

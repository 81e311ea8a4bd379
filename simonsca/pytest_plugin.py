"""pytest plugin: ``--base-model``/``--merged-model``/``--lora`` and the ``simonsca_result`` fixture.

Thin on purpose (as Hypothesis's plugin is): the library is imported lazily inside hooks and
fixtures, so loading pytest stays fast for every project that has simonsca installed.
Thresholds come from ``[tool.simonsca]`` in the rootdir's pyproject.toml; every one can be
overridden on the command line.
"""

from __future__ import annotations

from typing import Any

import pytest

_RESULT = pytest.StashKey[Any]()
_CONFIG = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    from simonsca import options

    group = parser.getgroup("simonsca", "simonsca: evaluate a finetuned GGUF against its base")
    for table in (options.MODEL_OPTIONS, options.EVAL_OPTIONS, options.GATE_OPTIONS):
        options.add_options(group.addoption, table, dest_prefix="simonsca_")
    # "--reports-dir" is too generic a flag to claim in every pytest run.
    options.add_options(
        group.addoption, options.REPORT_OPTIONS, flag_prefix="simonsca-", dest_prefix="simonsca_"
    )
    group.addoption(
        "--require-skill",
        dest="simonsca_require_skill",
        action="store_true",
        default=None,
        help="fail (not xfail) when the merged model does not beat the trivial baselines",
    )
    group.addoption(
        "--no-simonsca-cache",
        dest="simonsca_cache",
        action="store_false",
        default=None,
        help="do not read or write cached completions",
    )


def _uses_simonsca(items: list[pytest.Item]) -> bool:
    return any("simonsca_result" in getattr(item, "fixturenames", ()) for item in items)


def _suite_config(config: pytest.Config) -> Any:
    """The SuiteConfig for this session, built once (file checks happen here, before loading)."""
    if _CONFIG not in config.stash:
        from simonsca import options, suite

        tables = (
            options.MODEL_OPTIONS,
            options.EVAL_OPTIONS,
            options.GATE_OPTIONS,
            options.REPORT_OPTIONS,
        )
        overrides = {
            key: config.getoption(f"simonsca_{key}") for table in tables for _, key, _ in table
        }
        overrides["require_skill"] = config.getoption("simonsca_require_skill")
        overrides["cache"] = config.getoption("simonsca_cache")
        settings = suite.read_pyproject_settings(config.rootpath)
        if overrides.get("reports_dir") is None and "reports_dir" not in settings:
            overrides["reports_dir"] = str(config.rootpath / "reports")
        suite_config = suite.build_config(settings, **overrides)
        suite.check_files(suite_config)
        config.stash[_CONFIG] = suite_config
    return config.stash[_CONFIG]


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not _uses_simonsca(items):
        return
    from simonsca.errors import SimonscaError

    try:
        suite_config = _suite_config(config)
    except SimonscaError as error:
        raise pytest.UsageError(f"simonsca: {error}") from None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"simonsca: comparing {suite_config.describe()}")


@pytest.fixture(scope="session")
def simonsca_result(request: pytest.FixtureRequest) -> Any:
    """The evaluation of base vs merged, run once per session and shared by every test."""
    config = request.config
    if _RESULT not in config.stash:
        from simonsca.errors import SimonscaError
        from simonsca.suite import run_suite

        try:
            config.stash[_RESULT] = run_suite(_suite_config(config))
        except SimonscaError as error:
            config.stash[_RESULT] = error
    result = config.stash[_RESULT]
    if isinstance(result, Exception):
        pytest.fail(f"simonsca: {result}", pytrace=False)
    return result


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    result = config.stash.get(_RESULT, None)
    if result is None or isinstance(result, Exception):
        return
    from simonsca.report import render_terminal_table

    terminalreporter.section("simonsca")
    terminalreporter.write_line(f"compared: {result.config.describe()}")
    for line in render_terminal_table(result.report).splitlines():
        terminalreporter.write_line(line)
    if result.report_dir is not None:
        terminalreporter.write_line(
            f"reports: {result.report_dir}/report.html (summary.md, report.json)"
        )

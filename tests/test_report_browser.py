"""report.html in a real headless Chromium: the forest plot is there, the filters work, nothing
hostile runs.

Needs Debian's ``chromium`` (``apt-get install chromium``; another binary through
``SIMONSCA_CHROMIUM``) and the ``playwright`` Python package, which drives that browser -- it
never downloads one of its own. Without them the test is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_report import HOSTILE, N_FORCED, N_GENERATED, build_record, build_series

from simonsca.record import EvalRecord
from simonsca.report.html import render_html

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("SIMONSCA_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    return path


def _refuse(dialog: Any, problems: list[str]) -> None:
    """An alert (or any dialog) is something the page ran that it should not have."""
    problems.append(f"dialog: {dialog.message}")
    dialog.dismiss()


def _expected_counts(record: EvalRecord) -> dict[str, int]:
    """How many items each filter should leave, counted from the record itself."""
    items = record.evaluation.items
    answered = [i for i in items if "base" in i.answers]
    return {
        "count": sum(i.facets["task"] == "count" for i in items),
        "answered": len(answered),
        "differs": sum(i.answers["base"].text != i.answers["merged"].text for i in answered),
        "count+differs": sum(
            i.facets["task"] == "count" and i.answers["base"].text != i.answers["merged"].text
            for i in answered
        ),
    }


def test_report_page_in_headless_chromium(tmp_path: Path) -> None:
    chromium = _chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    record = build_record()
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(record), encoding="utf-8")
    want = _expected_counts(record)
    assert 0 < want["count+differs"] < want["differs"] < want["answered"] < N_FORCED
    comparison = record.evaluation.comparison
    assert comparison is not None and comparison.primary is not None
    n_deltas = sum(len(m.deltas) for m in (comparison.generation, comparison.forced) if m)

    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data-dir
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("dialog", lambda d: _refuse(d, problems))
            page.goto(page_file.as_uri())

            forest = page.locator("svg.forest")
            assert forest.count() == 1 and forest.is_visible()
            assert forest.locator("g.forest-row[data-kind=delta]").count() == n_deltas
            families = forest.locator("g.forest-row[data-kind=family]").count()
            assert families == len(comparison.primary.families)
            assert forest.locator("line.zero").count() == 2
            assert forest.locator("g.family-limit").count() == 1

            def shown() -> int:
                count = page.locator("#count")
                visible = page.locator("section.item:visible").count()
                assert count.get_attribute("data-shown") == str(visible)
                assert count.inner_text() == f"{visible} of {N_FORCED} items shown"
                return visible

            assert shown() == N_FORCED  # the script ran under the page's CSP
            page.select_option("select[data-facet=task]", "count")
            assert shown() == want["count"]
            page.select_option("#show", "differs")
            assert shown() == want["count+differs"]
            page.select_option("select[data-facet=task]", "")
            assert shown() == want["differs"]
            page.select_option("#show", "answered")
            assert shown() == want["answered"] == N_GENERATED

            # the hostile answer is on the page as text, and did nothing
            assert page.locator("img").count() == 0
            assert page.get_by_text(HOSTILE, exact=True).count() >= 1

            page.screenshot(path=str(tmp_path / "report-top.png"))
            page.locator("#items").scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "report-items.png"), full_page=True)
        finally:
            browser.close()
    assert not problems, problems
    for shot in ("report-top.png", "report-items.png"):
        assert (tmp_path / shot).stat().st_size > 10_000


def test_learning_curve_in_headless_chromium(tmp_path: Path) -> None:
    """Three checkpoints: a plot per curve metric, drawn and visible, the table under them."""
    chromium = _chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(build_series()), encoding="utf-8")
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(page_file.as_uri())
            plots = page.locator("svg.curve")
            assert plots.count() == 4
            for k in range(4):
                plot = plots.nth(k)
                assert plot.is_visible()
                assert plot.locator("g.curve-point").count() == 4
                box = plot.bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 200
            assert page.locator("svg.forest").count() == 3
            assert page.locator("table.curve tbody tr").count() >= 4
            page.locator("#curve").scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "curve.png"))
        finally:
            browser.close()
    assert not problems, problems
    assert (tmp_path / "curve.png").stat().st_size > 10_000

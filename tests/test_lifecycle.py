"""`reelops run`'s stages and budgets, and its report in headless Chromium."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reelops.lifecycle.loop import OverBudget, Skipped, Stage, StageFailed, run_stages
from reelops.lifecycle.report import PLOTS, render, write_report
from tests.browser import check_page, chromium

RECORD = Path(__file__).parent / "data" / "lifecycle-record.json"


class Clock:
    """A clock the stages move on purpose (budgets without waiting)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_stage_over_its_budget_ends_with_its_reason_and_the_run_goes_on():
    clock, said, ran = Clock(), [], []

    def slow(deadline, result):
        while True:
            clock.now += 10
            deadline.check("the detector has not decided")

    def needs_slow(deadline, result):
        raise Skipped("the detector did not decide to retrain")

    def broken(deadline, result):
        raise KeyError("model.json")

    def fine(deadline, result):
        ran.append("fine")
        result.reused.append("the world")
        return "batch scored"

    def refuses(deadline, result):
        raise StageFailed("the pipeline ended FAILED; its log: x.log")

    stages = [Stage("drift", 30, "d"), Stage("retrain", 60, "r"), Stage("canary", 60, "c"), Stage("batch", 60, "b"),
              Stage("shadow", 60, "s")]
    results = run_stages(stages, {"drift": slow, "retrain": needs_slow, "canary": broken, "batch": fine,
                                  "shadow": refuses}, say=said.append, clock=clock)
    outcomes = {r.name: (r.outcome, r.note) for r in results}
    assert outcomes["drift"] == ("over budget", "over its budget of 0:30: the detector has not decided")
    assert results[0].seconds == 30
    assert outcomes["retrain"] == ("skipped", "the detector did not decide to retrain")
    assert outcomes["canary"] == ("failed", "KeyError: 'model.json'")
    assert outcomes["batch"] == ("done", "batch scored") and ran == ["fine"]
    assert outcomes["shadow"] == ("failed", "the pipeline ended FAILED; its log: x.log")
    assert any("reused: the world" in line for line in said)
    assert issubclass(OverBudget, StageFailed)


def test_an_interrupted_run_keeps_the_stages_it_reached():
    results = []

    def stop(deadline, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stages([Stage("world", 5, "w"), Stage("train", 5, "t")], {"world": lambda d, r: "ok", "train": stop},
                   say=lambda line: None, results=results)
    assert [(r.name, r.outcome) for r in results] == [("world", "done"), ("train", "interrupted")]


def test_the_report_of_a_real_run_has_every_section_and_embeds_everything(tmp_path):
    record = json.loads(RECORD.read_text())
    page = render(record)
    for heading in ("Quality over time", "Drift, window by window", "Traffic split", "Canary analysis", "Shadow",
                    "Gate decisions and lineage", "Alias history", "Batch scoring", "Stages and their budgets"):
        assert f"<h2>{heading}</h2>" in page
    # Nothing the page could fetch: no script, no external source or style sheet.
    assert "<script" not in page and "http://" not in page.replace("http://127.0.0.1", "") and "https://" not in page
    assert page.count("src='data:image/png;base64,") == len(PLOTS)
    for version in record["versions"]:
        assert version["git_commit"][:10] in page and version["dataset_version"] in page


def _browser_check(report: Path, screenshot: Path, expect_data: bool) -> None:
    if chromium() is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium as root)")
    seen = check_page(report, screenshot)
    assert seen.console_errors == []
    assert seen.requests == []
    assert sorted(f["name"] for f in seen.figures) == sorted(PLOTS)
    assert all(f["drawn"] and f["width"] > 0 for f in seen.figures), seen.figures
    if expect_data:
        assert not [f["name"] for f in seen.figures if f["empty"]], seen.figures
    assert screenshot.stat().st_size > 20_000


def test_the_report_opens_in_chromium_without_errors_requests_or_missing_plots(tmp_path):
    report = write_report(json.loads(RECORD.read_text()), tmp_path / "report.html")
    screenshot = Path(os.environ.get("REELOPS_SCREENSHOT_DIR", tmp_path)) / "lifecycle-report.png"
    _browser_check(report, screenshot, expect_data=True)


@pytest.mark.skipif(not os.environ.get("REELOPS_RUN_REPORT"), reason="REELOPS_RUN_REPORT names a report of make run "
                    "(.ci/run sets it after make run)")
def test_the_report_make_run_wrote_opens_in_chromium(tmp_path):
    report = Path(os.environ["REELOPS_RUN_REPORT"])
    _browser_check(report, report.with_name("report-screenshot.png"), expect_data=True)


def test_the_browser_check_sees_errors_requests_and_broken_plots(tmp_path):
    if chromium() is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium as root)")
    page = tmp_path / "bad.html"
    page.write_text("<html><body><img src='http://127.0.0.1:9/x.png'><script>console.error('boom');</script>"
                    "<figure data-plot='quality' data-empty='false'><img src='data:image/png;base64,AAAA'></figure>"
                    "</body></html>")
    seen = check_page(page, tmp_path / "bad.png")
    assert "boom" in seen.console_errors
    assert seen.requests == ["http://127.0.0.1:9/x.png"]
    assert seen.figures == [{"name": "quality", "empty": False, "drawn": False, "width": 0}]


def test_a_bad_budget_is_refused_before_anything_starts(tmp_path):
    from tests.processes import reelops

    done = reelops(tmp_path, "run", "--budget", "drift=soon", check=False)
    assert done.returncode == 1, done.stderr
    assert "--budget 'drift=soon': expected STAGE=SECONDS" in done.stderr
    done = reelops(tmp_path, "run", "--budget", "coffee=30", check=False)
    assert done.returncode == 1 and "the stage must be one of" in done.stderr
    assert not (tmp_path / "lifecycle").exists()

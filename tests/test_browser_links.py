"""Issue 21 in a real browser: `engine app` served to Debian's chromium through playwright.

The progress count after a quickstart-like study with a screened-out candidate, links that
carry the study and the trial through a reload, the user's zoom kept while the page refreshes
itself, and Resume training the study chosen in the sidebar (a copy, not its original).

Skipped, with the reason, where `chromium` is not installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import optuna
import pytest

from storage import DriverInfo, load_study, open_storage, schema, write_study
from tests._app_helpers import (
    BROWSER_MARKS,
    CHROMIUM_ARGS,
    app_server,
    chromium_path,
    seed_study,
    tiny_search_yaml,
    wait_chart,
)
from tests.conftest import ROOT

pytestmark = BROWSER_MARKS



@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`engine app` on `alpha` (older), `quick` (12 of 12 trained, one screened out) and
    `live` (a running trial after epoch 1 of 3, a live driver: the newest)."""
    root = tmp_path_factory.mktemp("links")
    url = f"sqlite:///{root / 'app.db'}"
    seed_study(url, "alpha", families=("wavemix", "cxv"), n_done=6, seed=1)
    quick = seed_study(url, "quick", n_done=12, n_trials=12, over_cap=None, seed=4)
    quick.add_trial(optuna.trial.create_trial(  # screened out over the cap: never trained
        params={}, distributions={}, values=[0.0, 45.0], constraints={"gpu_ram_mb": 5.0},
        user_attrs={schema.TRIAL_TRAINED: False, schema.TRIAL_PEAK_MEMORY_MB: 45.0}))
    seed_study(url, "live", n_done=5, running=1, driver_eta_s=300.0, seed=2)
    with app_server(url, root / "runs", root) as (proc, port):
        yield {"url": url, "port": port, "root": root}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def pg(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def _open(pg, site, path: str = "") -> None:
    pg.goto(f"http://127.0.0.1:{site['port']}/{path}")
    pg.locator("[data-testid=stSidebar] input[aria-label=Study]").wait_for()


def _study(pg) -> str:
    return pg.locator("[data-testid=stSidebar] input[aria-label=Study]").input_value()


def _sidebar(pg) -> str:
    return pg.locator("[data-testid=stSidebar]").inner_text()


def _go(pg, name: str) -> None:
    pg.locator("[data-testid=stSidebarNavLink]").filter(
        has_text=re.compile(f"^{re.escape(name)}$")).click()


def _choose(pg, name: str) -> None:
    pg.locator("[data-testid=stSidebar]").get_by_role("combobox", name="Study").click()
    pg.get_by_role("option", name=name, exact=True).click()
    pg.wait_for_function("n => document.querySelector('[data-testid=stSidebar] "
                         "input[aria-label=Study]').value === n", arg=name)


def test_the_progress_counts_a_screened_out_candidate_out(pg, site):
    _open(pg, site, "?study=quick")
    pg.get_by_text("12 of 12 trials").wait_for()
    assert "13 of 12" not in _sidebar(pg)


def test_a_link_carries_study_page_and_trial_through_a_reload(pg, site):
    _open(pg, site, "trial?study=alpha&trial=2")  # not the newest study, not the first page
    pg.get_by_role("heading", level=2, name=re.compile(r"^Trial 2:")).wait_for()
    assert _study(pg) == "alpha"
    pg.reload()
    pg.get_by_role("heading", level=2, name=re.compile(r"^Trial 2:")).wait_for()
    assert _study(pg) == "alpha"
    _choose(pg, "quick")  # the URL follows the sidebar
    pg.wait_for_function("() => location.search.includes('study=quick')")
    _go(pg, "Pareto front")
    wait_chart(pg)
    pg.wait_for_function("() => location.search.includes('study=quick')")
    pg.reload()
    wait_chart(pg)
    assert _study(pg) == "quick"


def _frame(pg):
    """The live chart's frame (app/live_chart), once its chart is drawn."""
    wait_chart(pg)
    return next(f for f in pg.frames if "wavesearch_live_chart" in f.url)


def _x_range(pg) -> list[float]:
    return _frame(pg).evaluate("() => document.querySelector('.js-plotly-plot')"
                               "._fullLayout.xaxis.range")


def _ys(pg) -> list:
    return _frame(pg).evaluate("() => document.querySelector('.js-plotly-plot').data"
                               ".flatMap(t => t.y || []).filter(y => y !== null)")


def test_a_zoom_survives_the_live_refresh(pg, site):
    url = site["url"]
    study = load_study(url, "live")
    now = time.time()  # the driver beats again: the study is live
    write_study(study, driver=DriverInfo(id="seeded", host="h", pid=1, started_at=now - 60,
                                         heartbeat_at=now, state="running", eta_s=300.0,
                                         running_trials=1))
    _open(pg, site, "?study=live")
    pg.get_by_text("Live: refreshing").wait_for()
    before = _x_range(pg)
    box = _frame(pg).locator(".nsewdrag").first.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2
    pg.mouse.move(x0, y0)
    pg.mouse.down()
    pg.mouse.move(x0 + box["width"] * 0.4, y0 + box["height"] * 0.5, steps=8)
    pg.mouse.up()
    _frame(pg).wait_for_function("r => document.querySelector('.js-plotly-plot')"
                                 "._fullLayout.xaxis.range[0] !== r[0]", arg=before)
    zoomed = _x_range(pg)
    running = next(t for t in study.trials if t.state.name == "RUNNING")
    open_storage(url).set_trial_intermediate_value(running._trial_id, 2, 0.777)  # epoch 2
    deadline = time.time() + 30
    while 0.777 not in _ys(pg):  # the page refreshed itself with the new epoch
        assert time.time() < deadline, "the page never showed the new epoch"
        pg.wait_for_timeout(300)
    assert _x_range(pg) == pytest.approx(zoomed)  # the user's zoom is still there


def test_resume_trains_the_study_chosen_in_the_sidebar(pg, site, tmp_path):
    url = site["url"]
    spec = tmp_path / "orig.yaml"
    spec.write_text(tiny_search_yaml("orig", n_trials=1, epochs=1))
    done = subprocess.run([sys.executable, "-m", "engine.cli", "search", str(spec),
                           "--storage", url], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT),
                                            "RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 0, done.stderr[-3000:]
    optuna.copy_study(from_study_name="orig", from_storage=open_storage(url),
                      to_storage=open_storage(url), to_study_name="copied")
    def complete(name: str) -> int:
        return sum(t.state.name == "COMPLETE" for t in load_study(url, name).trials)

    before = {n: complete(n) for n in ("orig", "copied")}
    _open(pg, site, "new_search?study=copied")
    pg.get_by_role("tab", name="Resume a study").click()
    pg.get_by_text("Resume study copied").wait_for()
    total = pg.get_by_label("Total trials")
    assert total.input_value() == "2"  # 1 of 1 trained: one more
    pg.get_by_role("button", name="Resume", exact=True).click()
    deadline = time.time() + 300
    while not re.search(r"\b2 of 2 trials\b", _sidebar(pg)):
        assert time.time() < deadline, _sidebar(pg)
        pg.wait_for_timeout(1000)
    assert _study(pg) == "copied"
    assert complete("copied") > before["copied"]
    assert complete("orig") == before["orig"]  # the original is untouched


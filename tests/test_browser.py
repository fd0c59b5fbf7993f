"""The app as a user drives it: `engine app` served to Debian's chromium through playwright.

Every page is loaded and screenshotted (the folder is printed), pages and studies are switched
back and forth, a tiny search is started from the New search page and watched until it ends,
its best trial is downloaded and loaded with `engine.load_model`, a second search is stopped
midway, and killing `engine app` by its pid stops the search it started.

Skipped, with the reason, where `chromium` is not installed (`.ci/run` installs it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import time
from pathlib import Path

import pytest

from app.runs import session_pids
from storage import load_study
from tests._app_helpers import (
    BROWSER_MARKS,
    CHROMIUM_ARGS,
    app_server,
    chromium_path,
    port_open,
    seed_study,
    tiny_search_yaml,
    wait_chart,
)
from tests.conftest import descendants

pytestmark = BROWSER_MARKS

PAGES = ["Pareto front", "Learning curves", "Search analysis", "Compare trials", "Trial",
         "Export", "New search"]
TITLES = {"Export": "Export a model"}


@pytest.fixture(scope="module")
def shots(request) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="wavesearch-screenshots-"))
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown even while output is captured
        print(f"\nbrowser screenshots: {folder}", flush=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`engine app` on a storage with two seeded studies (alpha older, beta newer)."""
    root = tmp_path_factory.mktemp("site")
    url = f"sqlite:///{root / 'app.db'}"
    seed_study(url, "alpha", families=("wavemix", "cxv"), n_done=6, seed=1)
    seed_study(url, "beta", n_done=4, seed=2)
    with app_server(url, root / "runs", root) as (proc, port):
        yield {"url": url, "port": port, "root": root, "proc": proc}


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(f"http://127.0.0.1:{site['port']}/")
    # The Pareto page (its chart only once a trial has a result: a stopped study may have none).
    pg.get_by_role("heading", level=1, name="Pareto front").wait_for(timeout=90_000)
    # The first run done (its last sidebar widget drawn, the storage URL filled in): a page
    # switch during the first run could reach the server before the sidebar's widgets did.
    pg.get_by_text("Live refresh").wait_for(timeout=90_000)
    pg.wait_for_function("() => (document.querySelector('[data-testid=stSidebar] "
                         "input[aria-label=\"Storage URL\"]') || {}).value")
    yield pg
    context.close()


def go(pg, name: str) -> None:
    """Open a page from the sidebar and wait for its title."""
    link = pg.locator("[data-testid=stSidebarNavLink]").filter(
        has_text=re.compile(f"^{re.escape(name)}$"))
    heading = pg.get_by_role("heading", level=1, name=TITLES.get(name, name))
    link.click()
    try:
        heading.wait_for(timeout=20_000)
    except Exception:  # the click landed while the page refreshed itself: once more
        link.click()
        heading.wait_for()


def study_box(pg):
    return pg.locator("[data-testid=stSidebar]").get_by_role("combobox", name="Study")


def chosen_study(pg) -> str:
    return study_box(pg).input_value()


def open_studies(pg) -> list[str]:
    """The study names the sidebar offers (opens its list and closes it again)."""
    study_box(pg).click()
    pg.get_by_role("listbox").wait_for()
    names = pg.get_by_role("option").all_inner_texts()
    pg.keyboard.press("Escape")
    return [n.strip() for n in names]


def choose_study(pg, name: str) -> None:
    study_box(pg).click()
    pg.get_by_role("option", name=name, exact=True).click()
    pg.wait_for_function(
        "n => document.querySelector('[data-testid=stSidebar] input[aria-label=Study]')"
        ".value === n", arg=name)


def sidebar_text(pg) -> str:
    return pg.locator("[data-testid=stSidebar]").inner_text()


def wait_sidebar(pg, pattern: str, timeout_s: float, absent: bool = False) -> str:
    """Wait (no reload: the page refreshes itself) until the sidebar matches ``pattern``
    (or, with ``absent``, no longer does)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        text = sidebar_text(pg)
        if bool(re.search(pattern, text)) != absent:
            return text
        pg.wait_for_timeout(500)
    raise AssertionError(f"sidebar {'still' if absent else 'never'} showed {pattern!r}; it "
                         f"shows:\n{sidebar_text(pg)}")


def wait_content(pg, name: str) -> None:
    """Wait for what each page draws."""
    if name in ("Pareto front", "Learning curves", "Compare trials"):
        wait_chart(pg)
    elif name == "Search analysis":
        pg.wait_for_function("document.querySelectorAll('[data-testid=stMain] .js-plotly-plot')"
                             ".length >= 4")
    elif name == "Trial":
        pg.get_by_role("heading", level=2, name=re.compile(r"^Trial \d+:")).wait_for()
    elif name == "Export":
        pg.get_by_role("button", name="Export checkpoint").wait_for()
    else:  # the editor, its template checked like `engine validate`
        pg.get_by_text("Valid: study").wait_for(timeout=60_000)


def test_pages_load_and_the_selection_survives_switching(page, site, shots):
    pg = page
    assert chosen_study(pg) == "beta"  # the most recently active, not the first by name
    for name in PAGES:
        go(pg, name)
        wait_content(pg, name)
        pg.screenshot(path=str(shots / f"{name.replace(' ', '_').lower()}.png"), full_page=True)
    assert pg.get_by_text("Deploy", exact=True).count() == 0  # client.toolbarMode viewer
    choose_study(pg, "alpha")
    for i in range(2 * len(PAGES)):  # back and forth, twice through every page
        name = PAGES[i % len(PAGES)] if i < len(PAGES) else PAGES[::-1][i % len(PAGES)]
        go(pg, name)
        wait_content(pg, name)
        assert pg.get_by_role("textbox", name="Storage URL").input_value() == site["url"], name
        assert chosen_study(pg) == "alpha", name
    go(pg, "Pareto front")
    wait_content(pg, "Pareto front")
    counts = [int(v) for v in pg.locator("[data-testid=stMetricValue]").all_inner_texts()]
    assert sum(counts) == len(load_study(site["url"], "alpha").trials)  # alpha's, not beta's


def test_new_studies_appear_and_errors_show_literally(page, site, shots):
    pg = page
    seed_study(site["url"], "gamma", n_done=2, seed=3)  # started elsewhere, page already open
    deadline = time.time() + 20
    while True:
        if "gamma" in open_studies(pg):
            break
        assert time.time() < deadline, "the new study never appeared"
        pg.wait_for_timeout(700)
    bad = site["root"] / "__init__" / "**x**.db"
    box = pg.get_by_role("textbox", name="Storage URL")
    box.fill(f"sqlite:///{bad}")
    box.press("Enter")
    warning = pg.locator("[data-testid=stMain] [data-testid=stAlert]")
    warning.wait_for()
    assert f"no database file at {bad}" in warning.inner_text()  # __init__ and **x** verbatim
    assert warning.locator("strong").count() == 0
    assert not bad.exists() and not bad.parent.exists()
    pg.screenshot(path=str(shots / "missing_storage.png"), full_page=True)
    box.fill(site["url"])
    box.press("Enter")
    wait_chart(pg)


def _run(site, study: str) -> dict:
    """The registry's record of the search the app launched for ``study``."""
    runs = json.loads((site["root"] / "runs" / "runs.json").read_text())
    return next(r for r in runs if r["study"] == study)


def _log(run: dict) -> str:
    return (Path(run["folder"]) / "search.log").read_text(errors="replace")[-3000:]


def wait_search(pg, site, study: str, pattern: str, timeout_s: float) -> str:
    """Wait (no reload: the page refreshes itself) until the sidebar matches ``pattern``; fail
    at once, with the search's log, if the search has ended without getting there."""
    deadline = time.time() + timeout_s
    while True:
        text = sidebar_text(pg)
        if re.search(pattern, text):
            return text
        run = _run(site, study)
        ended = not _alive(run["pid"])
        if ended or time.time() > deadline:
            pg.wait_for_timeout(3000)  # one last refresh
            if re.search(pattern, sidebar_text(pg)):
                return sidebar_text(pg)
            raise AssertionError(f"search {study} {'ended' if ended else 'still runs'} and the "
                                 f"sidebar never showed {pattern!r}:\n{sidebar_text(pg)}\n"
                                 f"--- search log ---\n{_log(run)}")
        pg.wait_for_timeout(500)


def _start_search(pg, yaml_text: str, study: str) -> None:
    go(pg, "New search")
    editor = pg.get_by_label("Spec (YAML): edit or paste")
    editor.fill(yaml_text)
    editor.press("Control+Enter")
    pg.get_by_text(f"Valid: study {study}").wait_for(timeout=60_000)
    pg.get_by_role("button", name="Start search").click()
    pg.locator("[data-testid=stExpander]", has_text=f"{study}: running").wait_for()


def test_start_watch_export_and_stop_searches(page, site, shots, tmp_path):
    import engine

    pg = page
    t0 = time.time()

    def step(what: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {what}", flush=True)

    _start_search(pg, tiny_search_yaml("web1", n_trials=2, epochs=1), "web1")
    pg.reload()  # a new session: the registry still lists the search, its log still grows
    pg.get_by_role("heading", level=1, name="New search").wait_for()
    log = pg.locator("[data-testid=stExpander]", has_text="web1: running").locator("code")
    pg.wait_for_function("() => [...document.querySelectorAll('[data-testid=stExpander] code')]"
                         ".some(e => e.innerText.includes('data: digits'))")
    assert "engine.cli search" in log.inner_text()
    step("web1 launched")
    go(pg, "Pareto front")
    wait_sidebar(pg, r"Live: refreshing", 30)
    wait_search(pg, site, "web1", r"\b2 of 2 trials\b", 180)  # watched live, never reloaded
    step("web1: 2 of 2 trials")
    assert chosen_study(pg) == "web1"  # the launched study was selected when it appeared
    text = wait_sidebar(pg, r"Live: refreshing", 30, absent=True)  # refreshing stops at the end
    assert "2 of 2 trials" in text
    wait_chart(pg)
    pg.screenshot(path=str(shots / "web1_finished.png"), full_page=True)

    go(pg, "Export")
    pg.get_by_text("Measure test accuracy").click()  # off: quicker
    pg.get_by_role("button", name="Export checkpoint").click()
    pg.get_by_text("ready").wait_for(timeout=120_000)
    with pg.expect_download() as dl:
        pg.get_by_role("button", name="Download checkpoint").click()
    assert dl.value.suggested_filename == "web1-trial{}.safetensors".format(
        dl.value.suggested_filename.split("trial")[1].split(".")[0])  # what the file is
    path = tmp_path / "web1.safetensors"
    dl.value.save_as(path)
    model = engine.load_model(path)
    study = load_study(site["url"], "web1")
    best = max(study.best_trials, key=lambda t: t.values[0])
    assert sum(p.numel() for p in model.parameters()) == best.user_attrs["param_count"]
    step("exported and loaded")

    _start_search(pg, tiny_search_yaml("web2", n_trials=2, epochs=4), "web2")
    go(pg, "Learning curves")
    wait_search(pg, site, "web2", r"[12] running", 120)  # trials are training
    step("web2 running")
    go(pg, "New search")
    panel = pg.locator("[data-testid=stExpander]", has_text="web2: running")
    panel.get_by_role("button", name="Stop").click()
    pg.locator("[data-testid=stExpander]", has_text="web2: stopped").wait_for(timeout=90_000)
    step("web2 stopped")
    run = _run(site, "web2")
    deadline = time.time() + 20
    while session_pids(run["pid"]) and time.time() < deadline:
        time.sleep(0.5)
    assert not session_pids(run["pid"]), "the stopped search left processes behind"
    states = [t.state.name for t in load_study(site["url"], "web2").trials]
    assert "RUNNING" not in states, states
    pg.screenshot(path=str(shots / "web2_stopped.png"), full_page=True)


def test_killing_the_app_stops_the_search_it_started(page, site):
    """Last: it ends the module's app server."""
    pg, proc, port = page, site["proc"], site["port"]
    _start_search(pg, tiny_search_yaml("web3", n_trials=2, epochs=4), "web3")
    search = _run(site, "web3")["pid"]
    deadline = time.time() + 60
    while len(session_pids(search)) < 2 and time.time() < deadline:  # Ray is starting
        time.sleep(0.5)
    server = descendants(proc.pid)
    assert search in server
    os.kill(proc.pid, signal.SIGTERM)  # `kill PID` of engine app
    deadline = time.time() + 10
    while port_open(port) and time.time() < deadline:
        time.sleep(0.2)
    assert not port_open(port), "the app still serves after SIGTERM"
    proc.wait(timeout=60)
    assert not session_pids(search), "the app's search outlived the app"
    assert not [p for p in server if _alive(p)], "a process of the app outlived it"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"

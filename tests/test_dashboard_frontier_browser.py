"""The dashboard's Frontier view in Debian's headless chromium (selenium through
/usr/bin/chromedriver), against a real `routeyard serve` with the simulator behind it.

Known traffic through the openai SDK: decision `everyday` draws uniformly between `large` and
`small` (ema with ε=1, so each choice's probability is logged), and every answer gets feedback:
`large` 0.82 on average, `small` 0.80 (97.6% of it) at 1% of the cost. So `small` must be on
the frontier, and the page must show the suggestion to move the best model's (`large`'s)
traffic to it, word for word as the API says. (With exactly equal quality, `large` would be
off the frontier, and advise suggests a move only away from the busiest or the best model.)
`coding` gets two feedback records only: its view shows the waiting state.

Run as a script to write docs/img/dashboard-frontier.png:
    python tests/test_dashboard_frontier_browser.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import ADMIN_KEY, LARGE_PRICE, SMALL_PRICE, USER_KEY, openai_client
from routerproc import RouterProcess, start_router
from simproc import start_simulator
from test_dashboard_browser import CHROMEDRIVER, CHROMIUM, chrome, log_in, show_tab, wait_for

EVERYDAY = [{"role": "user", "content": "Tell me about rate limits please."}]
CODING = [{"role": "user", "content": "Write a python function that reverses a list."}]
REQUESTS = 80  # uniform over two models: each gets >= 20 (the estimate's floor) but rarely
SCORES = {"large": (0.80, 0.84), "small": (0.78, 0.82)}  # alternating: means 0.82 and 0.80


def frontier_config(sim_url: str) -> dict[str, Any]:
    return {
        "server": {"admin_keys": [ADMIN_KEY], "api_keys": [USER_KEY], "watch_config_s": 0},
        "models": [{"name": "large", "pricing": LARGE_PRICE, "endpoints": [{"base_url": sim_url}]},
                   {"name": "small", "pricing": SMALL_PRICE, "endpoints": [{"base_url": sim_url}]}],
        "decisions": [{"name": "coding", "priority": 10, "when": {"keywords_any": ["python"]},
                       "candidates": ["small", "large"]}],
        "default": {"name": "everyday", "candidates": ["large", "small"], "algorithm": "ema",
                    "algorithm_options": {"epsilon": 1.0, "seed": 3}},
        "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
    }


@contextmanager
def serving(tmp: Path) -> Iterator[RouterProcess]:
    with start_simulator("--model", "large", "--model", "small", "--ttft-ms", "1",
                         "--tpot-ms", "0", "--output-tokens", "20") as sim, \
            start_router(frontier_config(sim.base_url), tmp) as router:
        yield router


def send_traffic(router: RouterProcess) -> httpx.Client:
    """REQUESTS on everyday and 4 on coding, with the openai SDK; feedback on every everyday
    answer and on two coding ones. Returns an admin client once every record is readable."""
    client = openai_client(router, USER_KEY)
    user = {"authorization": f"Bearer {USER_KEY}"}
    picked: dict[str, int] = {}
    for i in range(REQUESTS + 4):
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=EVERYDAY if i < REQUESTS else CODING, max_tokens=8)
        request_id = raw.headers["x-routeyard-request-id"]
        model = raw.headers["x-routeyard-model"]
        if i >= REQUESTS + 2:
            continue
        picked[model] = picked.get(model, 0) + 1
        httpx.post(f"{router.base_url}/feedback", headers=user, json={
            "request_id": request_id, "score": SCORES[model][picked[model] % 2]}).raise_for_status()
    assert min(picked.get("large", 0), picked.get("small", 0)) >= 20, picked
    admin = httpx.Client(base_url=router.url, timeout=60,
                         headers={"authorization": f"Bearer {ADMIN_KEY}"})
    deadline = time.monotonic() + 10
    while (total := admin.get("/v1/stats").json()["total"])["requests"] < REQUESTS + 4 \
            or total["feedback"]["count"] < REQUESTS + 2:
        assert time.monotonic() < deadline, "the records or the feedback were not written"
        time.sleep(0.05)
    return admin


pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists(),
                                reason=f"needs Debian's chromium ({CHROMIUM}) and chromedriver "
                                       f"({CHROMEDRIVER}): apt-get install chromium "
                                       "chromium-driver")


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with serving(tmp_path_factory.mktemp("frontier")) as process:
        yield process


@pytest.fixture(scope="module")
def admin(router: RouterProcess) -> httpx.Client:
    return send_traffic(router)


@pytest.fixture(scope="module")
def driver(router: RouterProcess, admin: httpx.Client) -> Iterator[Any]:
    found = chrome()
    try:
        log_in(found, router)
        yield found
    finally:
        found.quit()


def test_the_frontier_view_shows_the_models_and_the_suggestion(driver: Any,
                                                               admin: httpx.Client) -> None:
    from selenium.webdriver.common.by import By

    show_tab(driver, "frontier")
    table = wait_for(lambda: driver.find_element(
        By.CSS_SELECTOR, ".frontier[data-decision='everyday'] #frontier-table"), timeout=30)
    rows = {row.get_attribute("data-model"): row
            for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert set(rows) == {"large", "small"}
    assert rows["small"].find_element(By.CSS_SELECTOR, "td.frontier").text == "on the frontier"
    # The chart drew: uPlot's canvas, with one legend entry per model and the frontier line.
    assert driver.find_elements(By.CSS_SELECTOR, "#frontier-chart canvas")
    legend = driver.find_element(By.CSS_SELECTOR, "#frontier-chart .u-legend").text
    assert "large" in legend and "small" in legend and "frontier" in legend
    # The page says what the API says (the same cached computation: the window is 1 hour).
    body = admin.get("/dashboard/api/frontier", params={"since": "3600s"}).json()
    everyday = next(d for d in body["data"] if d["decision"] == "everyday")
    suggestion = next(s for s in everyday["suggestions"]
                      if s["model"] == "small" and s["baseline"] == "large")
    assert 0.95 <= suggestion["kept_quality"]["low"] < 0.976 < suggestion["kept_quality"]["high"]
    assert suggestion["cost_share"]["high"] < 0.02
    shown = driver.find_element(By.CSS_SELECTOR, "#frontier-suggestions "
                                "li[data-model='small'][data-baseline='large']").text
    assert shown.startswith(suggestion["text"]), (shown, suggestion["text"])
    assert "small would keep" in shown and "of large's quality" in shown
    counts = {m["model"]: m for m in everyday["models"]}
    assert int(rows["small"].find_element(By.CSS_SELECTOR, "td.requests").text) \
        == counts["small"]["requests"]
    assert int(rows["large"].find_element(By.CSS_SELECTOR, "td.feedback").text) \
        == counts["large"]["feedback"]


def test_a_decision_without_enough_feedback_shows_the_waiting_state(driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    show_tab(driver, "frontier")
    select = wait_for(lambda: driver.find_element(By.ID, "frontier-decision"), timeout=30)
    assert {o.get_attribute("value") for o in Select(select).options} == {"everyday", "coding"}
    Select(select).select_by_value("coding")
    state = wait_for(lambda: driver.find_element(
        By.CSS_SELECTOR, ".frontier[data-decision='coding'] #frontier-state"))
    assert state.text == "no frontier yet: 2 records with feedback, needs 20 for a model"
    assert not driver.find_elements(By.CSS_SELECTOR, "#frontier-chart")
    assert driver.find_element(By.ID, "frontier-no-suggestion").text.startswith(
        "No suggestion")
    Select(driver.find_element(By.ID, "frontier-decision")).select_by_value("everyday")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#frontier-chart canvas"))


def screenshot(out: Path) -> None:
    """The Frontier view with the test's traffic, into `out`."""
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp)) as router:
        send_traffic(router)
        driver = chrome()
        try:
            driver.set_window_size(1500, 1000)
            log_in(driver, router)
            show_tab(driver, "frontier")
            wait_for(lambda: driver.find_element(By.ID, "frontier-suggestions"), timeout=30)
            time.sleep(1.0)
            driver.save_screenshot(str(out))
        finally:
            driver.quit()


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "docs" / "img" / "dashboard-frontier.png"
    screenshot(target)
    print(f"wrote {target}", file=sys.stderr)

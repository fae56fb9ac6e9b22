"""The dashboard in a real browser: Debian's headless chromium, driven by selenium through
/usr/bin/chromedriver, against a real `routeyard serve` with the simulator behind it.

Known traffic goes through the openai SDK first; then the browser logs in with the admin key
and the test reads the DOM: the counts, the model mix and the cost agree with /v1/stats and the
traffic, a new request shows in the live view within 2 s, and its detail shows the rule path.
It also checks the refusals (no key 401, a user key 403) and that no page, asset or JSON
answer of the dashboard holds a secret. scripts/dashboard_screenshots.py reuses the setup."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import ADMIN_KEY, LARGE_PRICE, SMALL_PRICE, USER_KEY, openai_client
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BACKEND_KEY = "sk-backend-secret-dashboard-7f3a9c"  # what the large model's endpoint sends
SECRETS = (ADMIN_KEY, USER_KEY, BACKEND_KEY)
CSRF = {"x-routeyard-dashboard": "1"}
EVERYDAY = [{"role": "user", "content": "Tell me about rate limits please."}]
CODING = [{"role": "user", "content": "Write a python function that reverses a list."}]
FAILOVER = [{"role": "user", "content": "failover drill, answer briefly."}]


def dashboard_config(sim: SimulatorProcess) -> dict[str, Any]:
    """`everyday` (default) → large; `coding` (python) → small; `failover` tries a dead
    model first, then small. The large model's endpoint carries a backend key."""
    return {
        "server": {"admin_keys": [ADMIN_KEY], "api_keys": [USER_KEY], "watch_config_s": 0},
        "models": [
            {"name": "large", "pricing": LARGE_PRICE,
             "endpoints": [{"base_url": sim.base_url, "api_key": BACKEND_KEY}]},
            {"name": "small", "pricing": SMALL_PRICE, "endpoints": [{"base_url": sim.base_url}]},
            {"name": "broken", "pricing": SMALL_PRICE,
             "endpoints": [{"base_url": "http://127.0.0.1:9/v1"}]},
        ],
        "decisions": [
            {"name": "coding", "priority": 10, "when": {"keywords_any": ["python"]},
             "candidates": ["small", "large"]},
            {"name": "failover", "priority": 5, "when": {"keywords_any": ["failover"]},
             "candidates": ["broken", "small"]},
        ],
        "default": {"name": "everyday", "candidates": ["large", "small"]},
        "pool": {"health_check": {"interval_s": 0}, "retry": {"max_retries": 0}},
    }


@contextmanager
def serving(tmp: Path) -> Iterator[RouterProcess]:
    with start_simulator("--model", "large", "--model", "small", "--ttft-ms", "5",
                         "--tpot-ms", "1", "--output-tokens", "40") as sim, \
            start_router(dashboard_config(sim), tmp) as router:
        yield router


def send_traffic(router: RouterProcess) -> dict[str, Any]:
    """4 whole and 2 streamed answers on everyday (large), 3 on coding (small), 1 failover
    (broken, then small); feedback on some. Waits until all 10 records are readable."""
    client = openai_client(router, USER_KEY)
    ids: list[str] = []
    for messages, times in ((EVERYDAY, 4), (CODING, 3), (FAILOVER, 1)):
        for _ in range(times):
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=messages, max_tokens=8)
            ids.append(raw.headers["x-routeyard-request-id"])
    for _ in range(2):
        with client.chat.completions.with_streaming_response.create(
                model="auto", messages=EVERYDAY, max_tokens=8, stream=True) as response:
            ids.append(response.headers["x-routeyard-request-id"])
            for _line in response.iter_lines():
                pass
    for request_id, rating in ((ids[0], 5), (ids[1], 4), (ids[4], 3), (ids[5], 2)):
        httpx.post(f"{router.base_url}/feedback", json={"request_id": request_id,
                   "rating": rating}, headers={"authorization": f"Bearer {USER_KEY}"}
                   ).raise_for_status()
    admin = httpx.Client(base_url=router.url, headers={"authorization": f"Bearer {ADMIN_KEY}"})
    deadline = time.monotonic() + 10
    while len(admin.get("/v1/decisions").json()["data"]) < len(ids):
        assert time.monotonic() < deadline, "the records were not written"
        time.sleep(0.05)
    return {"ids": ids, "admin": admin, "client": client}


def chrome() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1500,1000", "--no-first-run"):
        options.add_argument(argument)
    # The Debian driver, given by path: selenium never looks for (or downloads) another.
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(condition: Any, timeout: float = 10.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = condition()
        except Exception:  # the DOM is still rendering (stale or missing elements)
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        time.sleep(every)


def log_in(driver: Any, router: RouterProcess, key: str = ADMIN_KEY) -> None:
    from selenium.webdriver.common.by import By

    driver.get(router.url + "/dashboard")
    wait_for(lambda: driver.find_element(By.ID, "key"))
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "login-button").click()
    wait_for(lambda: driver.find_element(By.ID, "view"))


def show_tab(driver: Any, tab: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"button[data-tab='{tab}']").click()
    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, f"#view[data-view='{tab}']"))


# -- the tests -----------------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which(CHROMEDRIVER) is None,
                                reason=f"needs Debian's chromium ({CHROMIUM}) and chromedriver "
                                       f"({CHROMEDRIVER}): apt-get install chromium "
                                       "chromium-driver")


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    with serving(tmp_path_factory.mktemp("dashboard")) as process:
        yield process


@pytest.fixture(scope="module")
def traffic(router: RouterProcess) -> dict[str, Any]:
    return send_traffic(router)


@pytest.fixture(scope="module")
def driver(router: RouterProcess, traffic: dict[str, Any]) -> Iterator[Any]:
    found = chrome()
    try:
        log_in(found, router)
        yield found
    finally:
        found.quit()


def test_counts_mix_and_cost_match_the_stats(driver: Any, traffic: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    stats = traffic["admin"].get("/v1/stats", params={"group_by": "model"}).json()
    assert stats["total"]["requests"] == 10
    show_tab(driver, "traffic")
    total = wait_for(lambda: driver.find_element(By.ID, "total-requests"))
    assert total.text == "10"
    by_model = {row["model"]: row for row in stats["data"]}
    assert by_model["large"]["requests"] == 6 and by_model["small"]["requests"] == 4
    for model, row in by_model.items():
        cell = wait_for(lambda model=model: driver.find_element(
            By.CSS_SELECTOR, f"#mix-table tr[data-group='{model}'] td.requests"))
        assert int(cell.text) == row["requests"]
        share = driver.find_element(By.CSS_SELECTOR,
                                    f"#mix-table tr[data-group='{model}'] td.share").text
        assert share == f"{row['requests'] / 10 * 100:.1f}%"
    cost = driver.find_element(By.ID, "total-cost")
    assert float(cost.get_attribute("data-value")) == pytest.approx(stats["total"]["cost_usd"])
    assert cost.text.startswith("$") and stats["total"]["cost_usd"] > 0
    # The chart drew: uPlot puts a canvas in the chart box.
    assert driver.find_elements(By.CSS_SELECTOR, ".chart canvas")


def test_a_new_request_shows_live_within_two_seconds(driver: Any, router: RouterProcess,
                                                     traffic: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    show_tab(driver, "live")
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#live-table tbody tr")) >= 10)
    raw = traffic["client"].chat.completions.with_raw_response.create(
        model="auto", messages=CODING, max_tokens=8)
    answered = time.monotonic()
    request_id = raw.headers["x-routeyard-request-id"]
    row = wait_for(lambda: driver.find_element(
        By.CSS_SELECTOR, f"#live-table tr[data-request-id='{request_id}']"), timeout=5,
        every=0.02)
    assert time.monotonic() - answered < 2.0
    # Its detail: the rule path that fired, the candidates, the attempts, the cost.
    row.click()
    rule = wait_for(lambda: driver.find_element(By.ID, "detail-rule"))
    record = traffic["admin"].get(f"/v1/decisions/{request_id}").json()
    expected = record["detail"]["selection"]["rule"]
    assert "python" in expected
    wait_for(lambda: rule.text == expected)
    assert driver.find_element(By.ID, "detail-decision").text == "coding"
    candidates = driver.find_element(By.ID, "detail-candidates").text
    assert "small" in candidates and "large" in candidates
    assert "small#0" in driver.find_element(By.ID, "detail-attempts").text


def test_failover_detail_and_views_render(driver: Any, traffic: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    show_tab(driver, "live")
    failover_id = traffic["ids"][7]
    wait_for(lambda: driver.find_element(
        By.CSS_SELECTOR, f"#live-table tr[data-request-id='{failover_id}']")).click()
    wait_for(lambda: driver.find_element(By.ID, "detail").get_attribute(
        "data-request-id") == failover_id)
    attempts = driver.find_element(By.ID, "detail-attempts").text
    assert "broken#0" in attempts and "connect" in attempts and "small#0" in attempts, attempts
    show_tab(driver, "errors")
    summary = wait_for(lambda: driver.find_element(By.ID, "failover-summary"))
    counted = wait_for(lambda: (found := re.search(r"Failover: (\d+) of (\d+)", summary.text))
                       and int(found.group(2)) >= 10 and found)
    assert int(counted.group(1)) == 1  # the failover drill; every other request went through
    show_tab(driver, "quality")
    wait_for(lambda: driver.find_element(
        By.CSS_SELECTOR, "#quality-model-table tr[data-group='large'] td.count").text == "2")
    assert driver.find_elements(By.CSS_SELECTOR, "svg.scatter[data-decision='everyday'] circle")
    show_tab(driver, "signals")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#signals-table tr[data-group]"))
    show_tab(driver, "config")
    tree = wait_for(lambda: driver.find_element(By.ID, "config-tree"))
    assert "coding" in tree.text and "python" in tree.text
    driver.find_element(By.ID, "dry-run-prompt").send_keys("debug this python script")
    driver.find_element(By.ID, "dry-run-button").click()
    decision = wait_for(lambda: driver.find_element(By.ID, "dry-run-decision"))
    assert decision.text == "coding"
    assert driver.find_element(By.ID, "dry-run-model").text == "small"


def test_no_secret_reaches_the_browser(driver: Any, router: RouterProcess) -> None:
    for tab in ("live", "traffic", "config"):
        show_tab(driver, tab)
        time.sleep(0.3)
        assert not [s for s in SECRETS if s in driver.page_source]
    # The session cookie is HttpOnly: the page's scripts cannot read it.
    assert driver.execute_script("return document.cookie") == ""
    cookie = driver.get_cookie("routeyard_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert not [s for s in SECRETS if s in str(driver.get_cookies())]
    # Every answer the dashboard's code reads, fetched as the session does.
    session = httpx.Client(base_url=router.url, headers=CSRF,
                           cookies={"routeyard_dashboard": cookie["value"]})
    answers = [session.get(path) for path in (
        "/dashboard/api/session", "/dashboard/api/config", "/dashboard/api/series",
        "/dashboard/api/quality", "/dashboard/api/signals", "/dashboard/api/v1/decisions",
        "/dashboard/api/v1/stats?group_by=key", "/dashboard/api/v1/models")]
    answers.append(session.post("/dashboard/api/v1/route", json={"prompt": "hello"}))
    page = session.get("/dashboard", headers={"accept": "text/html"})
    assets = [session.get(f"/dashboard/static/{name}") for name in (
        "app.js", "lib.js", "live.js", "views.js", "quality.js", "config.js", "login.js",
        "app.css")]
    for answer in [*answers, page, *assets]:
        assert answer.status_code == 200, (answer.url, answer.text)
        assert not [s for s in SECRETS if s in answer.text], answer.url
    config = answers[1].json()
    assert [d["name"] for d in config["decisions"]] == ["coding", "failover"]
    assert "http" not in answers[1].text  # no endpoint URL either


def test_refusals(router: RouterProcess) -> None:
    http = httpx.Client(base_url=router.url)
    for path in ("/dashboard", "/dashboard/api/config", "/dashboard/api/v1/stats"):
        answer = http.get(path)
        assert answer.status_code == 401, path
        assert answer.json()["error"]["type"] == "authentication_error"
        user = http.get(path, headers={"authorization": f"Bearer {USER_KEY}", **CSRF})
        assert user.status_code == 403, path
        assert user.json()["error"]["code"] == "permission_denied"
    # A browser gets the login form with the 401, and nothing else.
    page = http.get("/dashboard", headers={"accept": "text/html"})
    assert page.status_code == 401 and 'id="login-form"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    refused = http.post("/dashboard/login", json={"key": USER_KEY}, headers=CSRF)
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert http.post("/dashboard/login", json={"key": "nope"}, headers=CSRF).status_code == 401
    # A cross-site form cannot add the header: without it, no login and no data.
    assert http.post("/dashboard/login", json={"key": ADMIN_KEY}).status_code == 403
    login = http.post("/dashboard/login", json={"key": ADMIN_KEY}, headers=CSRF)
    assert login.status_code == 200
    token = login.cookies["routeyard_dashboard"]
    assert ADMIN_KEY not in login.text and token not in login.text
    cookies = {"routeyard_dashboard": token}
    assert httpx.get(router.url + "/dashboard/api/config", cookies=cookies).status_code == 401
    assert httpx.get(router.url + "/dashboard/api/config", cookies=cookies,
                     headers=CSRF).status_code == 200
    # The cookie is the dashboard's only: the API itself still wants a key.
    assert httpx.get(router.url + "/v1/stats", cookies=cookies, headers=CSRF
                     ).status_code == 401
    assert httpx.post(router.url + "/dashboard/logout", cookies=cookies,
                      headers=CSRF).status_code == 200
    assert httpx.get(router.url + "/dashboard/api/config", cookies=cookies,
                     headers=CSRF).status_code == 401

"""Take a screenshot of each dashboard view into docs/img/dashboard-<view>.png.

It reuses the browser test's setup (tests/test_dashboard_browser.py): a simulator, a real
`routeyard serve` with an admin key, known traffic sent with the openai SDK, and Debian's
headless chromium. Run from the repository root, in the venv with the test extra:

    python scripts/dashboard_screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
VIEWS = ("live", "traffic", "cost", "latency", "errors", "cache", "quality", "signals",
         "config")


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from selenium.webdriver.common.by import By
    from test_dashboard_browser import (
        CODING,
        chrome,
        log_in,
        send_traffic,
        serving,
        show_tab,
        wait_for,
    )

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp)) as router:
        traffic = send_traffic(router)
        client = traffic["client"]
        for _ in range(3):  # a little more, spread over a few seconds, for the charts
            client.chat.completions.create(model="auto", messages=CODING, max_tokens=8)
            time.sleep(0.5)
        driver = chrome()
        try:
            driver.set_window_size(1500, 1000)
            log_in(driver, router)
            for view in VIEWS:
                show_tab(driver, view)
                if view == "live":
                    row = wait_for(lambda: driver.find_element(
                        By.CSS_SELECTOR, f"#live-table tr[data-request-id='{traffic['ids'][7]}']"))
                    row.click()
                    wait_for(lambda: driver.find_element(By.ID, "detail-attempts"))
                elif view == "config":
                    wait_for(lambda: driver.find_element(By.ID, "config-tree"))
                    driver.find_element(By.ID, "dry-run-prompt").send_keys(
                        "debug this python script")
                    driver.find_element(By.ID, "dry-run-button").click()
                    wait_for(lambda: driver.find_element(By.ID, "dry-run-decision"))
                time.sleep(1.5)  # the view's first poll and its charts
                path = OUT / f"dashboard-{view}.png"
                driver.save_screenshot(str(path))
                print(f"wrote {path.relative_to(ROOT)}")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()

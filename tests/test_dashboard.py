"""The dashboard's HTTP side, without a browser: the app in-process (httpx's ASGI transport,
a memory store). Bad parameters of every dashboard JSON endpoint are 400s in OpenAI's error
schema naming the parameter; login, session and CSRF rules; an open server keeps the dashboard
shut; a revoked key ends its session; the config view shows no secret; assets cannot be
escaped from. The browser test is tests/test_dashboard_browser.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from routeyard.api import create_app
from routeyard.api.dashboard_data import REDACTED, redact
from routeyard.config.loader import build_config
from routeyard.router import Router

ADMIN = "sk-dash-admin-0001"
USER = "sk-dash-user-0001"
BACKEND = "sk-dash-backend-0001"
CSRF = {"x-routeyard-dashboard": "1"}


def _config(**server: Any) -> dict[str, Any]:
    return {
        "models": [{"name": "m", "pricing": {"input_per_mtok": 1.0}, "endpoints": [
            {"base_url": "http://user:pw@127.0.0.1:9/v1", "api_key": BACKEND,
             "headers": {"x-token": "hdr-secret-1"}}]}],
        "decisions": [{"name": "code", "when": {"keywords_any": ["python"]},
                       "candidates": ["m"], "plugins": [{"type": "headers", "upstream_set": {
                           "authorization": "Bearer plugin-secret-1", "x-team": "a"}}]}],
        "state": {"backend": "memory"}, "server": server,
        "pool": {"health_check": {"interval_s": 0}},
    }


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    router = Router(build_config(_config(admin_keys=[ADMIN], api_keys=[USER])))
    transport = httpx.ASGITransport(app=create_app(router))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as found:
            yield found
    finally:
        await router.close()


async def _login(client: httpx.AsyncClient, key: str = ADMIN) -> None:
    answer = await client.post("/dashboard/login", json={"key": key}, headers=CSRF)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie


def _is_error(answer: httpx.Response, status: int, param: str | None = None) -> None:
    assert answer.status_code == status, (answer.url, answer.text)
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error


BAD_QUERIES = [
    ("/dashboard/api/series?buckets=0", "buckets"),
    ("/dashboard/api/series?buckets=121", "buckets"),
    ("/dashboard/api/series?buckets=ten", "buckets"),
    ("/dashboard/api/series?group_by=hour", "group_by"),
    ("/dashboard/api/series?since=yesterday", "since"),
    ("/dashboard/api/series?since=2026-01-02&until=2026-01-01", "since"),
    ("/dashboard/api/series?until=-5", "until"),
    ("/dashboard/api/series?status=fine", "status"),
    ("/dashboard/api/series?model=", "model"),
    ("/dashboard/api/series?colour=red", "colour"),
    ("/dashboard/api/series?buckets=2&buckets=3", "buckets"),
    ("/dashboard/api/quality?since=nan", "since"),
    ("/dashboard/api/quality?group_by=model", "group_by"),
    ("/dashboard/api/signals?family=x", "family"),
    ("/dashboard/api/config?all=1", "all"),
    ("/dashboard/api/v1/decisions?limit=0", "limit"),
    ("/dashboard/api/v1/decisions?cursor=not-a-cursor", "cursor"),
    ("/dashboard/api/v1/decisions?has_feedback=maybe", "has_feedback"),
    ("/dashboard/api/v1/stats?group_by=colour", "group_by"),
    ("/dashboard/api/v1/stats?since=1e400", "since"),
]


@pytest.mark.parametrize(("path", "param"), BAD_QUERIES)
async def test_bad_parameters_are_400s(client: httpx.AsyncClient, path: str,
                                       param: str) -> None:
    await _login(client)
    _is_error(await client.get(path, headers=CSRF), 400, param)


async def test_good_parameters_answer(client: httpx.AsyncClient) -> None:
    await _login(client)
    series = await client.get("/dashboard/api/series?buckets=4&group_by=decision&"
                              "since=2026-01-01T00:00:00&until=2026-01-01T01:00:00",
                              headers=CSRF)
    assert series.status_code == 200, series.text
    body = series.json()
    assert len(body["data"]) == 4 and body["step_s"] == 900.0
    assert body["data"][0]["total"]["requests"] == 0
    assert body["data"][0]["attempts"] == {"requests": 0, "failed_over": 0, "to_other_model": 0}
    for path in ("/dashboard/api/quality", "/dashboard/api/signals", "/dashboard/api/session",
                 "/dashboard/api/v1/models"):
        answer = await client.get(path, headers=CSRF)
        assert answer.status_code == 200, (path, answer.text)


async def test_login_and_session_rules(client: httpx.AsyncClient) -> None:
    for body in ([ADMIN], {"key": ADMIN, "remember": True}, "text"):
        _is_error(await client.post("/dashboard/login", json=body, headers=CSRF), 400)
    _is_error(await client.post("/dashboard/login", content=b"{", headers=CSRF), 400)
    _is_error(await client.post("/dashboard/login", json={"key": 5}, headers=CSRF), 401)
    _is_error(await client.post("/dashboard/login", json={"key": "wrong"}, headers=CSRF), 401)
    _is_error(await client.post("/dashboard/login", json={"key": USER}, headers=CSRF), 403)
    _is_error(await client.post("/dashboard/login", json={"key": ADMIN}), 403)  # no CSRF header
    assert not client.cookies
    _is_error(await client.get("/dashboard/api/config", headers=CSRF), 401)
    await _login(client)
    _is_error(await client.get("/dashboard/api/config"), 401)  # the cookie alone: no data
    assert (await client.get("/dashboard/api/config", headers=CSRF)).status_code == 200
    # A page load needs no header (it holds no data): the app shell, with a strict CSP.
    page = await client.get("/dashboard", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'id="app"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    _is_error(await client.post("/dashboard/logout"), 403)
    assert (await client.post("/dashboard/logout", headers=CSRF)).status_code == 200
    _is_error(await client.get("/dashboard/api/config", headers=CSRF), 401)
    # A forged or stale cookie is refused the same way.
    client.cookies.set("routeyard_dashboard", "forged", path="/dashboard")
    _is_error(await client.get("/dashboard/api/config", headers=CSRF), 401)


async def test_a_bearer_key_works_and_roles_hold(client: httpx.AsyncClient) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert (await client.get("/dashboard/api/config", headers=admin)).status_code == 200
    _is_error(await client.get("/dashboard/api/config",
                               headers={"authorization": f"Bearer {USER}"}), 403)
    _is_error(await client.get("/dashboard", headers={"x-api-key": USER}), 403)
    _is_error(await client.get("/dashboard"), 401)


async def test_only_read_paths_are_forwarded(client: httpx.AsyncClient) -> None:
    await _login(client)
    for method, path in (("POST", "/dashboard/api/v1/chat/completions"),
                         ("POST", "/dashboard/api/v1/feedback"),
                         ("GET", "/dashboard/api/v1/decisions/a/b"),
                         ("POST", "/dashboard/api/v1/stats"),
                         ("GET", "/dashboard/api/nothing"),
                         ("GET", "/dashboard/elsewhere")):
        answer = await client.request(method, path, headers=CSRF, json={})
        assert answer.status_code in (404, 405), (method, path, answer.text)
        _is_error(answer, answer.status_code)
    _is_error(await client.get("/dashboard/api/v1/decisions/req_none", headers=CSRF), 404)
    dry_run = await client.post("/dashboard/api/v1/route", json={"prompt": "python please"},
                                headers=CSRF)
    assert dry_run.status_code == 200 and dry_run.json()["decision"] == "code"
    _is_error(await client.post("/dashboard/api/v1/route", json={"prompt": 3}, headers=CSRF),
              400, "prompt")


@pytest.mark.parametrize("name", ["../dashboard.py", "..%2Fdashboard.py", "vendor/../../app.py",
                                  "index.html", "nothing.js", "vendor/VERSIONS", "%00.js"])
async def test_assets_cannot_be_escaped(client: httpx.AsyncClient, name: str) -> None:
    _is_error(await client.get(f"/dashboard/static/{name}"), 404)


async def test_assets_are_served_with_their_types(client: httpx.AsyncClient) -> None:
    for name, kind in (("app.js", "text/javascript"), ("vendor/preact.mjs", "text/javascript"),
                       ("vendor/uPlot.mjs", "text/javascript"), ("app.css", "text/css")):
        answer = await client.get(f"/dashboard/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
        again = await client.get(f"/dashboard/static/{name}",
                                 headers={"if-none-match": answer.headers["etag"]})
        assert again.status_code == 304


async def test_the_config_view_holds_no_secret(client: httpx.AsyncClient) -> None:
    await _login(client)
    answer = await client.get("/dashboard/api/config", headers=CSRF)
    text = answer.text
    for secret in (ADMIN, USER, BACKEND, "hdr-secret-1", "plugin-secret-1", "user:pw",
                   "127.0.0.1"):
        assert secret not in text
    body = answer.json()
    assert body["decisions"][0]["name"] == "code"
    assert body["decisions"][0]["when"] == {"keywords_any": ["python"]}
    assert body["decisions"][0]["plugins"][0]["upstream_set"] == {"authorization": REDACTED,
                                                                  "x-team": "a"}
    assert body["models"] == [{"name": "m", "kind": "chat", "endpoints": 1,
                               "pricing": body["models"][0]["pricing"]}]


def test_redact_hides_values_under_secret_names() -> None:
    found = redact({"api_key": "a", "postgres_url": "postgresql://u:p@h/db", "keywords_any":
                    ["python"], "plugins": [{"options": {"headers": {"x": "y"}, "token": None,
                                                         "auth-token": "t", "admin_keys": ["k"]}}]})
    assert found == {"api_key": REDACTED, "postgres_url": REDACTED, "keywords_any": ["python"],
                     "plugins": [{"options": {"headers": REDACTED, "token": None,
                                              "auth-token": REDACTED, "admin_keys": REDACTED}}]}


async def test_an_open_server_keeps_the_dashboard_shut() -> None:
    """No key anywhere (the embedded default): as /v1/decisions, a 401 asking for one."""
    router = Router(build_config(_config()))
    transport = httpx.ASGITransport(app=create_app(router))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            for answer in (await client.get("/dashboard"),
                           await client.get("/dashboard/api/config", headers=CSRF),
                           await client.post("/dashboard/login", json={"key": "x"},
                                             headers=CSRF)):
                _is_error(answer, 401)
                assert "server.admin_keys" in answer.json()["error"]["message"]
            assert (await client.get("/v1/decisions")).status_code == 401
    finally:
        await router.close()


async def test_a_revoked_key_ends_its_session(client: httpx.AsyncClient) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    created = await client.post("/admin/keys", json={"name": "ops", "roles": ["admin"]},
                                headers=admin)
    assert created.status_code == 201, created.text
    key, prefix = created.json()["key"], created.json()["prefix"]
    await _login(client, key)
    session = await client.get("/dashboard/api/session", headers=CSRF)
    assert session.json()["key_id"] == prefix and key not in session.text
    revoked = await client.post(f"/admin/keys/{prefix}/revoke", headers=admin)
    assert revoked.status_code == 200, revoked.text
    answer = await client.get("/dashboard/api/session", headers=CSRF)
    _is_error(answer, 401)
    assert answer.json()["error"]["code"] == "session_ended"

"""The admin API over HTTP against a real `routeyard serve` and the simulator: virtual keys
created, listed, updated, rotated, revoked, expired and deleted; tenants; roles; the audit log;
a full key shown once and never logged; bad input answered with clean 4xx errors."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from gateway_support import ADMIN_KEY, MESSAGES, USER_KEY, Admin, chat, config, openai_client
from routerproc import RouterProcess, start_router
from simproc import SimulatorProcess, start_simulator

from routeyard.catalog import build_config
from routeyard.config import ConfigError


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with start_simulator("--model", "large", "--model", "small", "--ttft-ms", "0",
                         "--tpot-ms", "0", "--output-tokens", "40") as process:
        yield process


@pytest.fixture(scope="module")
def router(sim: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RouterProcess]:
    cfg = config(sim, server={"api_keys": [USER_KEY]})
    with start_router(cfg, tmp_path_factory.mktemp("admin")) as process:
        yield process


@pytest.fixture
def admin(router: RouterProcess) -> Admin:
    return Admin(router)


def ask(router: RouterProcess, key: str) -> str:
    reply = openai_client(router, key).chat.completions.create(
        model="auto", messages=MESSAGES, max_tokens=8)
    return reply.choices[0].message.content or ""


def refused_code(router: RouterProcess, key: str) -> str | None:
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(router, key)
    body: Any = caught.value.body
    return body["code"] if isinstance(body, dict) else None


def test_a_key_through_its_whole_life(router: RouterProcess, admin: Admin) -> None:
    key, record = admin.create_key(name="ci-bot", limits={"rpm": 100}, metadata={"team": "a"})
    assert key.startswith(record["prefix"] + "-") and record["prefix"] == f"ry-{record['id']}"
    assert record["status"] == "active" and record["roles"] == ["user"]
    assert ask(router, key)

    listed = admin.get("/admin/keys").json()["data"]
    assert record["prefix"] in [k["prefix"] for k in listed]
    assert all("key" not in k and "hashes" not in k for k in listed)
    assert admin.get(f"/admin/keys/{record['prefix']}").json()["name"] == "ci-bot"
    assert admin.get(f"/admin/keys/{record['id']}").json()["name"] == "ci-bot"

    updated = admin.patch(f"/admin/keys/{record['id']}",
                          {"name": "ci-bot-2", "limits": {"rpm": 50, "tpm": 1000}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "ci-bot-2" and updated.json()["limits"]["tpm"] == 1000

    rotated = admin.post(f"/admin/keys/{record['id']}/rotate", {"overlap_s": 2})
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    new_key = rotated.json()["key"]
    assert new_key != key and new_key.startswith(record["prefix"] + "-")
    assert ask(router, new_key) and ask(router, key)  # the old one, in its overlap window
    deadline = time.monotonic() + 10
    while True:  # then the old one stops
        try:
            ask(router, key)
        except openai.AuthenticationError:
            break
        assert time.monotonic() < deadline, "the old secret outlived its overlap"
        time.sleep(0.2)
    assert ask(router, new_key)

    revoked = admin.post(f"/admin/keys/{record['id']}/revoke").json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None
    assert refused_code(router, new_key) == "revoked_api_key"
    assert admin.post(f"/admin/keys/{record['id']}/rotate").status_code == 409
    assert [k["prefix"] for k in admin.get("/admin/keys", status="revoked").json()["data"]
            ].count(record["prefix"]) == 1

    deleted = admin.delete(f"/admin/keys/{record['prefix']}").json()
    assert deleted == {"id": record["prefix"], "object": "routeyard.key", "deleted": True}
    assert admin.get(f"/admin/keys/{record['id']}").status_code == 404
    assert refused_code(router, new_key) == "invalid_api_key"


def test_rotation_without_overlap_ends_the_old_secret_at_once(router: RouterProcess,
                                                              admin: Admin) -> None:
    key, record = admin.create_key(name="no-overlap")
    assert ask(router, key)
    new_key = admin.post(f"/admin/keys/{record['id']}/rotate", {"overlap_s": 0}).json()["key"]
    assert refused_code(router, key) == "invalid_api_key"
    assert ask(router, new_key)


def test_keys_expire(router: RouterProcess, admin: Admin) -> None:
    key, record = admin.create_key(name="short", expires_in_s=1.5)
    assert record["expires_at"] == pytest.approx(record["created_at"] + 1.5)
    assert ask(router, key)
    time.sleep(1.6)
    assert refused_code(router, key) == "expired_api_key"
    assert admin.get(f"/admin/keys/{record['id']}").json()["status"] == "expired"
    # Lifting the expiry brings it back.
    assert admin.patch(f"/admin/keys/{record['id']}", {"expires_at": None}).status_code == 200
    assert ask(router, key)


def test_roles(router: RouterProcess, admin: Admin) -> None:
    viewer_key, _ = admin.create_key(name="dashboard", roles=["viewer"])
    user_key, _ = admin.create_key(name="app")
    admin_key, _ = admin.create_key(name="ops", roles=["admin"])
    viewer, user, virtual_admin = Admin(router, viewer_key), Admin(router, user_key), \
        Admin(router, admin_key)

    assert viewer.get("/admin/spend").status_code == 200
    refused = viewer.post("/admin/keys", {"name": "x"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert "'admin' role" in refused.json()["error"]["message"]
    assert viewer.get("/admin/keys").status_code == 403
    assert viewer.get("/admin/audit").status_code == 403
    with pytest.raises(openai.PermissionDeniedError):  # a viewer cannot spend on models
        ask(router, viewer_key)

    # A viewer reads the decision log: the newest record first, and each by its id.
    asked = openai.OpenAI(base_url=router.base_url, api_key=user_key).chat.completions \
        .with_raw_response.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    request_id = asked.headers["x-routeyard-request-id"]
    deadline = time.monotonic() + 5  # the log is written in batches
    while True:
        log = viewer.get("/admin/decisions", limit=5)
        assert log.status_code == 200
        if request_id in [record["request_id"] for record in log.json()["data"]]:
            break
        assert time.monotonic() < deadline, log.json()
        time.sleep(0.1)
    one = viewer.get(f"/admin/decisions/{request_id}")
    assert one.status_code == 200 and one.json()["model"]
    assert viewer.get("/admin/decisions/req_missing").status_code == 404
    assert viewer.get("/admin/decisions", limit=0).status_code == 400

    for path in ("/admin/keys", "/admin/spend", "/admin/tenants", "/admin/audit",
                 "/admin/decisions"):
        assert user.get(path).status_code == 403, path
    assert Admin(router, USER_KEY).get("/admin/spend").status_code == 403  # static user
    assert ask(router, user_key) and ask(router, USER_KEY)

    made, record = virtual_admin.create_key(name="made-by-ops")
    assert record["created_by"].startswith("ry-") and ask(router, made)
    assert ask(router, admin_key) and ask(router, ADMIN_KEY)  # admin holds user
    # No key, or a wrong one, on an admin path: 401.
    assert httpx.get(f"{router.url}/admin/keys").status_code == 401
    assert Admin(router, "ry-000000000000-nope").get("/admin/keys").status_code == 401


def test_a_full_key_is_shown_once_and_never_logged(router: RouterProcess, admin: Admin
                                                   ) -> None:
    key, record = admin.create_key(name="secret-keeper", limits={"rpm": 1})
    digest = hashlib.sha256(key.encode()).hexdigest()
    ask(router, key)
    chat(router.base_url, key)  # a 429, whose message names the key by its prefix only
    new_key = admin.post(f"/admin/keys/{record['id']}/rotate").json()["key"]
    admin.patch(f"/admin/keys/{record['id']}", {"name": "renamed"})
    secret = key[len(record["prefix"]) + 1:]
    seen = "".join(admin.get(path).text for path in (
        "/admin/keys", f"/admin/keys/{record['id']}", "/admin/audit", "/admin/spend"))
    assert record["prefix"] in seen
    for hidden in (secret, digest, new_key[len(record["prefix"]) + 1:]):
        assert hidden not in seen
        assert hidden not in "".join(router.output)


def test_tenants(router: RouterProcess, admin: Admin) -> None:
    tenant = admin.create_tenant(id="acme", name="Acme", limits={"rpm": 1000})
    assert tenant["object"] == "routeyard.tenant" and tenant["limits"]["rpm"] == 1000
    assert admin.post("/admin/tenants", {"id": "acme"}).status_code == 409
    assert "acme" in [t["id"] for t in admin.get("/admin/tenants").json()["data"]]
    patched = admin.patch("/admin/tenants/acme", {"limits": {"rpm": 500}}).json()
    assert patched["limits"]["rpm"] == 500

    key, record = admin.create_key(name="acme-app", tenant="acme")
    assert ask(router, key)
    assert admin.get("/admin/keys", tenant="acme").json()["data"][0]["prefix"] == \
        record["prefix"]
    busy = admin.delete("/admin/tenants/acme")
    assert busy.status_code == 409 and record["prefix"] in busy.json()["error"]["message"]
    admin.post(f"/admin/keys/{record['id']}/revoke")
    assert admin.delete("/admin/tenants/acme").json()["deleted"] is True
    assert admin.get("/admin/tenants/acme").status_code == 404
    assert admin.post("/admin/tenants", {"id": "acme"}).status_code == 201  # the id is free


def test_the_audit_log(router: RouterProcess, admin: Admin) -> None:
    _, record = admin.create_key(name="audited")
    target = record["prefix"]
    admin.patch(f"/admin/keys/{record['id']}", {"limits": {"rpm": 7}})
    admin.patch(f"/admin/keys/{record['id']}", {"name": "audited-2"})
    admin.post(f"/admin/keys/{record['id']}/rotate")
    admin.post(f"/admin/keys/{record['id']}/revoke")
    entries = admin.get("/admin/audit", target=target).json()["data"]
    assert [e["action"] for e in entries] == ["key.revoke", "key.rotate", "key.update",
                                              "key.limits", "key.create"]  # newest first
    assert all(e["actor"]["key_id"].startswith("static:") for e in entries)
    assert entries[-1]["time"] <= entries[0]["time"] <= time.time() + 1
    limits = entries[3]["changes"]["limits"]
    assert limits["before"]["rpm"] is None and limits["after"]["rpm"] == 7
    only = admin.get("/admin/audit", action="key.rotate", limit=1).json()["data"]
    assert [e["target"]["id"] for e in only] == [target]


@pytest.mark.parametrize(("method", "path", "body", "status", "param"), [
    ("POST", "/admin/keys", {"limits": {"rpm": "5"}}, 400, "limits.rpm"),
    ("POST", "/admin/keys", {"limits": {"rpm": 0}}, 400, "limits.rpm"),
    ("POST", "/admin/keys", {"limits": {"rpm": 1.5}}, 400, "limits.rpm"),
    ("POST", "/admin/keys", {"rmp": 5}, 400, "rmp"),
    ("POST", "/admin/keys", {"roles": ["root"]}, 400, "roles[0]"),
    ("POST", "/admin/keys", {"roles": []}, 400, "roles"),
    ("POST", "/admin/keys", {"name": 7}, 400, "name"),
    ("POST", "/admin/keys", {"tenant": "Not A Slug"}, 400, "tenant"),
    ("POST", "/admin/keys", {"tenant": "nobody"}, 400, "tenant"),
    ("POST", "/admin/keys", {"expires_at": 1, "expires_in_s": 1}, 400, None),
    ("POST", "/admin/keys", {"limits": {"budgets": [{"period": "week", "limit_usd": 1}]}},
     400, "limits.budgets[0].period"),
    ("POST", "/admin/keys", {"limits": {"budgets": [
        {"period": "day", "limit_usd": 1}, {"period": "day", "limit_usd": 2}]}},
     400, "limits.budgets"),
    ("POST", "/admin/keys", [], 400, None),
    ("POST", "/admin/keys", "not json {", 400, None),
    ("POST", "/admin/keys", None, 400, None),
    ("PATCH", "/admin/keys/ry-000000000000", {"name": "x"}, 404, None),
    ("PATCH", "/admin/keys/not-a-key-id", {"name": "x"}, 404, None),
    ("POST", "/admin/keys/ry-000000000000/rotate", {"overlap_s": -1}, 400, "overlap_s"),
    ("POST", "/admin/tenants", {"id": "ok", "limits": {"tpm": True}}, 400, "limits.tpm"),
    ("POST", "/admin/tenants", {}, 400, "id"),
    ("GET", "/admin/keys?status=bogus", None, 400, "status"),
    ("GET", "/admin/keys?limit=0", None, 400, "limit"),
    ("GET", "/admin/spend?period=week", None, 400, "period"),
    ("GET", "/admin/spend?period=day&at=2025-13-45", None, 400, "at"),
    ("GET", "/admin/spend?key=ry-000000000000", None, 404, None),
    ("PUT", "/admin/keys", {}, 405, None),
])
def test_bad_input_gets_a_clean_4xx(router: RouterProcess, admin: Admin, method: str,
                                    path: str, body: Any, status: int, param: str | None
                                    ) -> None:
    content = body if isinstance(body, str) else None
    response = admin.http.request(method, path, content=content,
                                  json=None if content is not None else body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param


def test_deeply_nested_json_is_refused(router: RouterProcess, admin: Admin) -> None:
    deep = '{"metadata": ' + "[" * 300 + "]" * 300 + "}"
    response = admin.http.post("/admin/keys", content=deep,
                               headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "json_too_deep"


def test_static_config_keys_still_work(sim: SimulatorProcess, tmp_path: Path) -> None:
    with start_router(config(sim, server={"api_keys": [USER_KEY], "admin_keys": []}),
                      tmp_path) as router:
        assert ask(router, USER_KEY)
        assert refused_code(router, "sk-wrong") == "invalid_api_key"
        by_header = anthropic.Anthropic(base_url=router.url, api_key=None, max_retries=0,
                                        default_headers={"x-api-key": USER_KEY})
        assert by_header.messages.create(model="auto", max_tokens=8, messages=MESSAGES).content
        wrong = anthropic.Anthropic(base_url=router.url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as caught:
            wrong.messages.create(model="auto", max_tokens=8, messages=MESSAGES)
        assert caught.value.body == {"type": "error", "error": {
            "type": "authentication_error", "message": "Missing or invalid API key."}}
        assert httpx.get(f"{router.url}/healthz").status_code == 200
        # No admin key configured: the admin API answers no one.
        assert Admin(router, USER_KEY).get("/admin/keys").status_code == 403


def test_the_embedded_default_stays_open(tmp_path: Path) -> None:
    with start_router(None, tmp_path) as router:
        reply = openai.OpenAI(base_url=router.base_url, api_key="anything", max_retries=0
                              ).chat.completions.create(model="auto", messages=MESSAGES)
        assert reply.choices[0].message.content
        assert httpx.post(f"{router.base_url}/chat/completions",
                          json={"model": "auto", "messages": MESSAGES}).status_code == 200
        refused = httpx.get(f"{router.url}/admin/keys")
        assert refused.status_code == 401
        assert "server.admin_keys" in refused.json()["error"]["message"]


@pytest.mark.parametrize(("gateway", "where"), [
    ({"key_cache_s": 6}, "gateway.key_cache_s"),
    ({"on_redis_down": "panic"}, "gateway.on_redis_down"),
    ({"static_key_limits": {"rmp": 5}}, "gateway.static_key_limits.rmp"),
    ({"static_key_limits": {"budgets": [{"period": "day"}]}},
     "gateway.static_key_limits.budgets[0].limit_usd"),
])
def test_the_gateway_config_is_checked(gateway: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"models": [{"name": "m", "endpoints": [{"base_url": "http://h/v1"}]}],
                      "gateway": gateway})
    assert where in [location for location, _ in caught.value.problems]

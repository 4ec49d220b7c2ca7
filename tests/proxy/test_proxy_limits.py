"""Caching, coalescing and isolation per account; rate limits per account; upstream failures and backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
from proxytools import Stack

BIND = "/v1/iot-service/api/user/bind"


@pytest.fixture
def switches(stack: Stack) -> Iterator[None]:
    yield
    stack.do(lambda: stack.cloud.set_switches(delay=0.0, rate_limit=False, rate_limit_cloudflare=False,
                                              cloudflare_block=False, server_error=0, fault_budget=None))


def test_concurrent_reads_share_one_upstream_call_and_accounts_never_mix(
    stack: Stack, http: httpx2.Client, switches: None
) -> None:
    tokens = stack.tokens()
    alice_1 = tokens.add(stack.alice_real, name="alice-1")
    alice_2 = tokens.add(stack.alice_real, name="alice-2")
    bob = tokens.add(stack.bob_real, name="bob")
    _, url = stack.proxy(tokens, mode="strict", ttls={"devices": 30.0})
    stack.do(lambda: stack.cloud.set_switches(delay=1.0))
    stack.clear()

    barrier = threading.Barrier(24)

    def get(token: str, wait: bool = True) -> httpx2.Response:
        with httpx2.Client(timeout=20.0) as client:
            if wait:
                barrier.wait(20)  # all 24 go at once
            return client.get(url + BIND, headers={"Authorization": f"Bearer {token}"})

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(get, [alice_1, alice_2] * 12))
    assert all(a.status_code == 200 for a in answers)
    outcomes = sorted(a.headers["x-cache"] for a in answers)
    # One leader; the others joined its call, or (a slow thread on a busy machine) came after it.
    assert outcomes.count("miss") == 1 and outcomes.count("coalesced") >= 12, outcomes
    assert set(outcomes) <= {"miss", "coalesced", "hit"}
    assert len(stack.requests()) == 1  # 24 dashboards of one account, one upstream call
    alice_serials = {stack.printers[0].serial, stack.printers[1].serial}
    assert all({d["dev_id"] for d in a.json()["devices"]} == alice_serials for a in answers)
    stack.do(lambda: stack.cloud.set_switches(delay=0.0))
    time.sleep(1.1)
    hit = get(alice_2, wait=False)
    assert hit.headers["x-cache"] == "hit" and int(hit.headers["age"]) >= 1
    # Another account: its own entry, its own data, whatever the path.
    other = get(bob, wait=False)
    assert other.headers["x-cache"] == "miss"
    assert {d["dev_id"] for d in other.json()["devices"]} == {stack.printers[2].serial}
    assert [q.account for q in stack.requests()] == ["alice@example.com", "bob@example.com"]
    # Different queries are different entries.
    assert http.get(url + BIND + "?page=2", headers={"Authorization": f"Bearer {bob}"}).headers["x-cache"] == "miss"


def test_rate_limit_is_per_account_not_per_custom_token(stack: Stack, http: httpx2.Client) -> None:
    tokens = stack.tokens()
    first = tokens.add(stack.alice_real, name="a1")
    second = tokens.add(stack.alice_real, name="a2")
    bob = tokens.add(stack.bob_real, name="bob")
    app, url = stack.proxy(tokens, mode="strict", cache=False, budgets={"devices": 6.0})
    stack.clear()
    statuses = [http.get(url + BIND, headers={"Authorization": f"Bearer {t}"}).status_code
                for t in [first, second] * 4]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3  # a burst of 5, shared by both tokens
    refused = http.get(url + BIND, headers={"Authorization": f"Bearer {second}"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"] == "rate_limited" and refused.json()["retry_after"] >= 1
    assert http.get(url + BIND, headers={"Authorization": f"Bearer {bob}"}).status_code == 200
    assert len(stack.requests()) == 6
    assert 'bambu_proxy_rate_limited_total{reason="rate_limited"} 4.0' in http.get(url + "/metrics").text
    assert app.limiter.rejected == 4


def test_upstream_429_backs_off_that_account_only(stack: Stack, http: httpx2.Client, switches: None) -> None:
    tokens = stack.tokens()
    alice = tokens.add(stack.alice_real, name="alice")
    bob = tokens.add(stack.bob_real, name="bob")
    _, url = stack.proxy(tokens, mode="strict", cache=False)
    stack.do(lambda: stack.cloud.set_switches(rate_limit=True, retry_after=120, fault_budget=1))
    stack.clear()
    r = http.get(url + BIND, headers={"Authorization": f"Bearer {alice}"})
    assert r.status_code == 429 and r.json()["error"] == "upstream_rate_limited"
    assert int(r.headers["retry-after"]) == 120
    again = http.get(url + BIND, headers={"Authorization": f"Bearer {alice}"})
    assert again.status_code == 429 and 110 <= int(again.headers["retry-after"]) <= 120
    assert http.get(url + BIND, headers={"Authorization": f"Bearer {bob}"}).status_code == 200
    assert [q.account for q in stack.requests()] == ["alice@example.com", "bob@example.com"]  # alice waited


def test_cloudflare_block_and_cloudflare_429_become_json(stack: Stack, http: httpx2.Client, switches: None) -> None:
    tokens = stack.tokens()
    alice = tokens.add(stack.alice_real, name="alice")
    bob = tokens.add(stack.bob_real, name="bob")
    _, url = stack.proxy(tokens, mode="full", cache=False)
    stack.do(lambda: stack.cloud.set_switches(cloudflare_block=True, fault_budget=1))
    r = http.get(url + BIND, headers={"Authorization": f"Bearer {alice}"})
    assert r.status_code == 503 and r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "upstream_blocked" and int(r.headers["retry-after"]) >= 1
    stack.do(lambda: stack.cloud.set_switches(rate_limit=True, rate_limit_cloudflare=True, retry_after=30,
                                              fault_budget=1))
    r = http.get(url + BIND, headers={"Authorization": f"Bearer {bob}"})
    assert r.status_code == 429 and r.json()["error"] == "upstream_rate_limited" and r.json()["cloudflare"]
    assert "<html" not in r.text.lower()


def test_timeouts_5xx_and_unreachable_upstream(stack: Stack, http: httpx2.Client, switches: None) -> None:
    tokens = stack.tokens()
    alice = tokens.add(stack.alice_real, name="alice")
    auth = {"Authorization": f"Bearer {alice}"}
    _, url = stack.proxy(tokens, mode="strict", cache=False, upstream_timeout=0.3)
    stack.do(lambda: stack.cloud.set_switches(delay=1.0))
    r = http.get(url + BIND, headers=auth)
    assert r.status_code == 504 and r.json()["error"] == "upstream_timeout"
    stack.do(lambda: stack.cloud.set_switches(delay=0.0, server_error=502, fault_budget=1))
    r = http.get(url + BIND, headers=auth)
    assert r.status_code == 502 and "upstream" not in r.json().get("error", "")  # the cloud's own answer
    assert http.get(url + BIND, headers=auth).status_code == 200  # no backoff for a 5xx
    _, dead = stack.proxy(tokens, mode="strict", upstream="http://127.0.0.1:9")
    r = http.get(dead + BIND, headers=auth)
    assert r.status_code == 502 and r.json()["error"] == "upstream_unreachable"
    assert stack.alice_real not in r.text
    health = http.get(dead + "/health")
    assert health.status_code == 503 and health.json()["status"] == "degraded"

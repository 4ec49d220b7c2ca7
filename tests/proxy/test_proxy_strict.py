"""Strict mode never forwards anything off its allowlist, however the request is dressed up.

A hypothesis property over methods, paths (encodings, traversal, duplicate slashes, case, trailing
slashes, overlong), smuggling headers and bodies on reads: every request the proxy refuses must
leave the fake cloud's request log empty, and every request it forwards must reach the cloud as
exactly one allowlisted method and path.
"""

from __future__ import annotations

import json

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxytools import Stack, raw_request

from bambulab.servers.proxy.app import _filter_strict, _Refusal
from bambulab.servers.proxy.rules import RULES, _PathRefused, match, normalise_path

ALLOWED = [r.pattern.replace("[A-Za-z0-9_.-]{1,64}", "123") for r in RULES if r.strict and not r.local]
FORBIDDEN = [
    "/v1/user-service/my/profile", "/v1/iot-service/api/user/ttcode", "/v1/iot-service/api/user/upload",
    "/v1/user-service/my/task", "/v1/iot-service/api/user/device/info", "/v1/user-service/user/login",
    "/v1/user-service/user/refreshtoken", "/s3/bbl-sim-uploads/x", "/admin-like", "/",
]
SEGMENT_TRICKS = ["", ".", "..", "%2e", "%2E%2e", "%2f", "%5c", "\\", "%00", "%252e", ";", "%20", "X", "BIND"]


@st.composite
def dressed_paths(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(ALLOWED + FORBIDDEN))
    parts = base.split("/")
    out: list[str] = []
    for part in parts:
        kind = draw(st.integers(0, 9))
        if kind == 0 and part:
            part = part.upper()
        elif kind == 1 and part:
            part = "".join(f"%{ord(c):02X}" if draw(st.booleans()) else c for c in part)
        elif kind == 2:
            out.append(draw(st.sampled_from(SEGMENT_TRICKS)))
        elif kind == 3:
            part += "/" * draw(st.integers(1, 3))
        out.append(part)
    path = "/".join(out)
    if draw(st.booleans()):
        path += draw(st.sampled_from(["/", "//", "/.", "/..", "%2f", "?x=1", "/%2e%2e/ttcode"]))
    if draw(st.integers(0, 20)) == 0:
        path += "/a" * 400
    return path if path.startswith("/") else "/" + path


HEADER_TRICKS = [
    {}, {"X-HTTP-Method-Override": "DELETE"}, {"X-Original-URL": "/v1/iot-service/api/user/ttcode"},
    {"X-Rewrite-URL": "/v1/user-service/my/profile"}, {"X-HTTP-Method": "PUT"}, {"X-Method-Override": "POST"},
]


def _expected_forward(method: str, raw: str) -> str | None:
    """The path the cloud may see for this request, or None when it must see nothing."""
    path = raw.split("?", 1)[0]
    try:
        canonical = normalise_path(path.encode())
    except _PathRefused:
        return None
    rule = match(method, canonical)
    return canonical if rule is not None and rule.strict and not rule.local else None


@pytest.fixture(scope="module")
def strict_proxy(stack: Stack) -> tuple[str, str]:
    tokens = stack.tokens("strict-prop.json")
    custom = tokens.add(stack.alice_real, name="prop", scope="full")
    _, url = stack.proxy(tokens, mode="strict", cache=False, rate_limit=False)
    return url, custom


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get", "TRACE"]),
       path=dressed_paths(), extra=st.sampled_from(HEADER_TRICKS), body=st.sampled_from([b"", b"{}", b"x" * 10]))
def test_strict_mode_never_forwards_off_the_allowlist(
    stack: Stack, strict_proxy: tuple[str, str], method: str, path: str, extra: dict[str, str], body: bytes
) -> None:
    url, custom = strict_proxy
    stack.clear()
    headers = {"Authorization": f"Bearer {custom}", **extra}
    status, text = raw_request(url, method, path.encode(), headers, body)  # the bytes as written
    log = stack.requests()
    expected = _expected_forward(method, path)
    refused = bool(extra) or (body != b"" and method == "GET") or expected is None
    if refused:
        assert status >= 400, (path, text)
        if status == 403 and method != "HEAD":
            reason = json.loads(text)
            assert reason["error"] == "forbidden" and reason["rule"]
        assert log == [], (method, path, extra, log)
    else:
        assert status != 0, (method, path, text)
        if status == 403:  # only the upstream's own (the fake cloud refuses a notification without a ticket)
            assert b'"rule"' not in text, (method, path, text)
        assert [(q.method, q.path) for q in log] == [(method, expected)]  # the canonical path, once


def test_refusals_name_the_rule(stack: Stack, strict_proxy: tuple[str, str], http: httpx2.Client) -> None:
    url, custom = strict_proxy
    auth = {"Authorization": f"Bearer {custom}"}
    stack.clear()
    cases = {
        "/v1/iot-service/api/user/ttcode": "not-on-allowlist",
        "/v1/iot-service/api/user%2fbind": "encoded-separator",
        "/v1/iot-service/api/user/%252e%252e/bind": "double-encoding",
        "/../v1/iot-service/api/user/bind": "traversal",
        "/v1/" + "a/" * 300: "path-too-long",
    }
    for path, rule in cases.items():
        status, text = raw_request(url, "GET", path.encode(), auth)
        assert status == 403 and json.loads(text)["rule"] == rule, (path, text)
    r = http.post(url + "/v1/iot-service/api/user/ttcode", headers=auth, json={"dev_id": "x"})
    assert r.status_code == 403 and "allowlist" in r.json()["message"]
    r = http.get(url + "/v1/iot-service/api/user/bind", headers={**auth, "X-HTTP-Method-Override": "DELETE"})
    assert r.json()["rule"] == "override-header"
    r = http.get(url + "/v1/iot-service/api/user/bind?_method=DELETE", headers=auth)
    assert r.status_code == 403 and r.json()["rule"] == "override-parameter"
    assert stack.requests() == []
    # Normalised forms of an allowed path do go through, as the canonical path.
    assert raw_request(url, "GET", b"//v1/iot-service/./api/user/%62ind/", auth)[0] == 200
    assert [q.path for q in stack.requests()] == ["/v1/iot-service/api/user/bind"]


@pytest.mark.parametrize("body", [
    b'{"devices":[{"dev_id":"1","dev_access_code":"12345678"}]}',
    b' \r\n{"devices":[{"dev_id":"1","Dev_Access_Code":"12345678"}]}',  # whitespace before the JSON
    b'\xef\xbb\xbf{"access_code":"12345678","dev_id":"1"}',  # a UTF-8 byte-order mark
    '{"accessCode":"12345678","dev_id":"1"}'.encode("utf-16"),  # JSON in UTF-16 (NUL bytes)
    b'{"dev_\\u0061ccess_code":"12345678","dev_id":"1"}',  # the key spelled with an escape
])
def test_the_strict_filter_finds_an_access_code_however_the_json_spells_it(body: bytes) -> None:
    out = _filter_strict(body)
    assert b"12345678" not in out
    assert "1" in json.dumps(json.loads(out))


def test_the_strict_filter_reaches_any_depth_and_refuses_what_it_cannot_parse() -> None:
    deep = b'{"a":' * 200 + b'{"dev_access_code":"12345678","keep":1}' + b"}" * 200
    out = _filter_strict(deep)
    assert b"12345678" not in out and b'"keep":1' in out and out.count(b'{"a":') == 200
    too_deep = b'{"a":' * 100_000 + b'{"access_code":"12345678"}' + b"}" * 100_000
    with pytest.raises(_Refusal) as refused:
        _filter_strict(too_deep)
    assert refused.value.status == 502 and refused.value.error == "upstream_unreadable"


@pytest.mark.parametrize("body", [
    b'{"devices":[{"dev_id":"1","name":"P1S"}]}',  # nothing to remove: the very same bytes come back
    b"<html>access_code</html>",  # not JSON: passes unchanged
    b'"access_code"',  # JSON, but a string, not a key
])
def test_the_strict_filter_leaves_a_body_without_access_codes_byte_for_byte(body: bytes) -> None:
    assert _filter_strict(body) is body

"""Full mode is faithful: methods, query strings, bodies, statuses, error bodies, headers, big and streamed answers."""

from __future__ import annotations

import hashlib
import json

import httpx2
import pytest
from proxytools import Stack, raw_request


@pytest.fixture(scope="module")
def echo(stack: Stack) -> tuple[str, str]:
    tokens = stack.tokens("full-echo.json")
    custom = tokens.add(stack.alice_real, name="full", scope="full")
    _, url = stack.proxy(tokens, mode="full", upstream=stack.echo_url, rate_limit=False)
    return url, custom


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_every_method_with_repeated_query_keys_and_its_body(
    stack: Stack, echo: tuple[str, str], http: httpx2.Client, method: str
) -> None:
    url, custom = echo
    body = b"" if method in ("GET", "OPTIONS") else f'{{"m": "{method}"}}'.encode()
    r = http.request(method, url + "/v1/anything/here?a=1&a=2&b=&c=%20x", content=body or None,
                     headers={"Authorization": f"Bearer {custom}", "Content-Type": "application/json",
                              "X-Custom": "kept", "Connection": "keep-alive, X-Drop", "X-Drop": "hop"})
    assert r.status_code == 200
    seen = r.json()
    assert seen["method"] == method and seen["path"] == "/v1/anything/here"
    assert seen["query"] == "a=1&a=2&b=&c=%20x"
    assert seen["query_items"] == [["a", "1"], ["a", "2"], ["b", ""], ["c", " x"]]
    assert seen["body"] == body.decode()
    assert seen["authorization"] == f"Bearer {stack.alice_real}"  # the real token replaced ours
    assert "x-custom" in seen["headers"] and "x-drop" not in seen["headers"] and "cookie" not in seen["headers"]
    # What comes back: content type, cache headers, Retry-After; no hop-by-hop, no cookie, no token.
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "max-age=7" and r.headers["retry-after"] == "3"
    assert "x-secret-hop" not in r.headers and "set-cookie" not in r.headers
    assert custom not in r.text and all(stack.alice_real not in v for v in r.headers.values())


def test_any_content_type_statuses_and_error_bodies(echo: tuple[str, str], http: httpx2.Client) -> None:
    url, custom = echo
    auth = {"Authorization": f"Bearer {custom}"}
    form = http.post(url + "/v1/form", data={"x": "1", "y": "é"}, headers=auth).json()
    assert form["content_type"] == "application/x-www-form-urlencoded" and form["body"] == "x=1&y=%C3%A9"
    files = http.post(url + "/v1/multi", files={"f": ("a.bin", b"\x00\x01\xff")}, headers=auth).json()
    assert files["content_type"].startswith("multipart/form-data; boundary=")
    empty = http.post(url + "/v1/empty", content=b"", headers={**auth, "Content-Length": "0"}).json()
    assert "content-length" in empty["headers"] and empty["body"] == ""
    for status in (201, 204, 400, 404, 409, 500, 503):
        r = http.get(url + f"/v1/status?status={status}", headers=auth)
        assert r.status_code == status
        if status != 204:
            assert r.json()["query"] == f"status={status}"  # the upstream's own (error) body


def test_large_streamed_responses_and_uploads(echo: tuple[str, str], http: httpx2.Client) -> None:
    url, custom = echo
    auth = {"Authorization": f"Bearer {custom}"}
    size = 24 * 1024 * 1024 + 17  # larger than what the proxy ever holds in memory
    expected = hashlib.sha256()
    block = bytes(range(256)) * 256
    left = size
    while left:
        part = block[: min(len(block), left)]
        expected.update(part)
        left -= len(part)
    got = hashlib.sha256()
    total = 0
    with http.stream("GET", url + f"/big?size={size}", headers=auth) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        for chunk in r.iter_bytes():
            got.update(chunk)
            total += len(chunk)
    assert total == size and got.hexdigest() == expected.hexdigest()

    def upload() -> object:
        for _ in range(64):
            yield b"u" * 65536

    r = http.put(url + "/upload", content=upload(), headers={**auth, "Content-Type": "model/3mf"})
    assert r.json() == {"received": 64 * 65536, "content_type": "model/3mf", "content_length": None}
    r = http.put(url + "/upload", content=b"z" * 300_000, headers={**auth, "Content-Type": "application/octet-stream"})
    assert r.json()["received"] == 300_000 and r.json()["content_length"] == "300000"


def test_full_mode_against_the_fake_cloud(stack: Stack, http: httpx2.Client) -> None:
    """PATCH and DELETE reach the cloud (the older proxy answered PATCH with 405); its errors come back as they are."""
    tokens = stack.tokens("full-cloud.json")
    custom = tokens.add(stack.alice_real, name="full", scope="full")
    _, url = stack.proxy(tokens, mode="full", rate_limit=False)
    auth = {"Authorization": f"Bearer {custom}"}
    serial = stack.printers[0].serial
    r = http.patch(url + "/v1/iot-service/api/user/device/info", json={"dev_id": serial, "name": "Renamed"},
                   headers=auth)
    assert r.status_code == 200, r.text
    names = {d["dev_id"]: d["name"] for d in http.get(url + "/v1/iot-service/api/user/bind?x=1",
                                                      headers=auth).json()["devices"]}
    assert names[serial] == "Renamed"
    settings = http.get(url + "/v1/iot-service/api/slicer/setting?version=01.09.00.00", headers=auth).json()
    assert settings
    missing = http.delete(url + "/v1/iot-service/api/slicer/setting/does-not-exist", headers=auth)
    assert 400 <= missing.status_code < 500 and missing.json()  # the cloud's own error body, not a 502
    nowhere = http.get(url + "/v1/no/such/endpoint", headers=auth)
    assert nowhere.status_code == 404
    # A raw, unnormalised path is forwarded as it came (full mode does not rewrite it).
    stack.clear()
    status, _ = raw_request(url, "GET", b"/v1//iot-service/api/user/bind", auth)
    assert [q.path for q in stack.requests()] == ["/v1//iot-service/api/user/bind"] and status == 404
    assert json.dumps(names)  # keep mypy quiet about unused


def test_expect_100_continue_is_answered_before_the_body_is_sent(echo: tuple[str, str]) -> None:
    """An upload that waits for ``100 Continue`` gets it (from uvicorn, when the proxy reads the body)."""
    import socket
    from urllib.parse import urlsplit

    url, custom = echo
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    body = b'{"waited": true}'
    head = (f"POST /v1/continue HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nAuthorization: Bearer {custom}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)  # a timeout here (the body never sent) fails the test
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        chunks = [interim.partition(b"\r\n\r\n")[2]]
        while data := sock.recv(65536):
            chunks.append(data)
    response = b"".join(chunks)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert json.loads(response.partition(b"\r\n\r\n")[2])["body"] == body.decode()

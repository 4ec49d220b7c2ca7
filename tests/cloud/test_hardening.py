"""Hostile or broken input to the cloud client: corrupt tokens, secrets in reprs, malformed JSON.

The server side is a canned HTTP server on 127.0.0.1 (it stands in for the real Bambu cloud,
which is the one thing tests may fake).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from cannedhttp import CannedHttp

from bambulab.cloud.auth import Token, load_token
from bambulab.cloud.client import BambuClient
from bambulab.exceptions import AuthenticationError, BambuConnectionError
from bambulab.transports.http import HttpTransport, _map_error

SECRET = "s3cr3t-Tail-Value"


# ------------------------------------------------------------------ point 2: tokens with CR/LF


def test_token_file_values_are_stripped_on_load(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"access_token": " abc.def.ghi\r\n", "refresh_token": "rrr\n"}))
    token = load_token(path)
    assert token is not None
    assert (token.access_token, token.refresh_token) == ("abc.def.ghi", "rrr")


def test_token_with_an_embedded_line_break_is_corrupt_and_not_quoted() -> None:
    with pytest.raises(ValueError, match="corrupt") as info:
        Token.from_dict({"access_token": f"abc\r\nX-Evil: {SECRET}"})
    assert SECRET not in str(info.value)


def test_corrupt_token_never_reaches_the_wire_nor_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with CannedHttp(b'{"devices": []}') as server, BambuClient(
        f"abc\r\nX-Evil: {SECRET}", api_url=server.url
    ) as client:
        with pytest.raises(AuthenticationError, match="corrupt") as info:
            client.devices()
        assert server.received == []
    assert SECRET not in str(info.value)
    assert SECRET not in caplog.text


def test_a_token_with_surrounding_whitespace_is_sent_stripped() -> None:
    with CannedHttp(b'{"devices": []}') as server, BambuClient("tok.en.value\n", api_url=server.url) as client:
        assert client.devices() == []
    assert b"Authorization: Bearer tok.en.value\r\n" in server.received[0]


def test_the_transport_refuses_a_header_that_http_cannot_carry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = HttpTransport(timeout=5)
    try:
        with CannedHttp() as server, pytest.raises(ValueError, match="Authorization header") as info:
            transport.request("GET", server.url + "/x", headers={"Authorization": f"Bearer a\r\n{SECRET}"})
    finally:
        transport.close()
    assert SECRET not in str(info.value) and SECRET not in caplog.text


def test_protocol_error_text_is_never_in_the_message() -> None:
    import httpx2

    exc = httpx2.LocalProtocolError(f"Illegal header value b'Bearer {SECRET}'")
    mapped = _map_error(exc, "GET", "https://api.example/x?sig=1", 5.0)
    assert isinstance(mapped, BambuConnectionError)
    assert SECRET not in str(mapped) and "LocalProtocolError" in str(mapped)


def test_httpcore_failure_traces_are_logged_without_the_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="httpcore2")
    logging.getLogger("httpcore2.http11").debug(
        "send_request_headers.failed exception=LocalProtocolError(LocalProtocolError(\"Illegal header value "
        f"b'Bearer {SECRET}'\"))"
    )
    assert "send_request_headers.failed exception=LocalProtocolError" in caplog.text
    assert SECRET not in caplog.text


def test_cli_names_a_corrupt_token_file_and_a_corrupt_variable(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bambulab.cli.main import cli

    path = tmp_path / "token.json"
    path.write_text(json.dumps({"access_token": f"abc\r\n{SECRET}"}))
    env = {"BAMBU_CONFIG": str(tmp_path / "config.toml"), "BAMBU_CLOUD_TOKEN": None, "BAMBU_TOKEN_FILE": None}
    result = CliRunner().invoke(cli, ["cloud", "devices", "--token-file", str(path)], env=env)
    assert result.exit_code == 1
    assert f"the token file {path} is corrupt" in result.output and SECRET not in result.output
    result = CliRunner().invoke(cli, ["cloud", "devices"], env={**env, "BAMBU_CLOUD_TOKEN": f"a\nb{SECRET}"})
    assert result.exit_code == 1
    assert "BAMBU_CLOUD_TOKEN is corrupt" in result.output and SECRET not in result.output


# ------------------------------------------------------------------ point 4: secrets in reprs


def test_request_and_call_reprs_hide_bodies_queries_and_tokens() -> None:
    from bambulab.cloud import endpoints as ep
    from bambulab.cloud._session import Call

    requests = [
        ep.LOGIN_PASSWORD.build(account="a@example.com", password=SECRET),
        ep.LOGIN_CODE.build(account="a@example.com", code=SECRET),
        ep.REFRESH_TOKEN.build(refresh_token=SECRET),
        ep.TFA_SIGN_IN.build(tfa_key=SECRET, tfa_code=SECRET),
        ep.NOTIFICATION.build(ticket=SECRET),
    ]
    for request in requests:
        call = Call(request, token=SECRET, headers={"Cookie": f"token={SECRET}"})
        for text in (repr(request), str(request), repr(call), str(call)):
            assert SECRET not in text
            assert request.endpoint in text


def test_response_repr_and_headers_repr_hide_cookies() -> None:
    from bambulab.transports.http import HttpResponse

    response = HttpResponse(200, {"Set-Cookie": f"token={SECRET}; Path=/", "Content-Type": "application/json"},
                            b"{}", (f"token={SECRET}; Path=/",), "https://bambulab.com/api/sign-in/tfa")
    for text in (repr(response), str(response), repr(response.headers), str(response.headers)):
        assert SECRET not in text
    assert "application/json" in repr(response)
    assert response.header("set-cookie") == f"token={SECRET}; Path=/"  # the value is still there to read
    assert response.cookie("token") == SECRET


def test_a_real_answer_with_a_token_cookie_has_a_safe_repr() -> None:
    with CannedHttp(b"{}") as server:
        server.content_type = f"application/json\r\nSet-Cookie: token={SECRET}; Path=/"
        transport = HttpTransport(timeout=5)
        try:
            response = transport.request("GET", server.url + "/api/sign-in/tfa")
        finally:
            transport.close()
    assert response.cookie("token") == SECRET
    assert SECRET not in repr(response) and SECRET not in repr(response.headers)


# ------------------------------------------------------------------ point 8: malformed JSON


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bambulab.cloud import endpoints as ep  # noqa: E402
from bambulab.cloud._base import decode_json  # noqa: E402
from bambulab.exceptions import BambuError, CloudError  # noqa: E402
from bambulab.transports.http import HttpResponse  # noqa: E402

#: The keys the parsers read, so generated objects reach the parsers' inner paths.
KEYS = ["accessToken", "access_token", "ams", "amsDetailMapping", "authkey", "bedType", "code", "content",
    "costTime", "cover", "createTime", "create_time", "designId", "dev_access_code", "dev_id",
    "dev_model_name", "dev_name", "dev_online", "dev_product_name", "deviceId", "deviceModel", "deviceName",
    "download_url", "endTime", "error", "expiresIn", "filament_id", "filament_type", "file", "filename",
    "firmware", "force_update", "hits", "id", "length", "loginType", "message", "mode", "modelId",
    "model_id", "name", "nickname", "nozzle_diameter", "nozzle_temperature", "online", "passwd",
    "plateIndex", "plates", "prediction", "print_job", "print_status", "private", "profileId", "profile_id",
    "profiles", "progress", "project_id", "public", "refreshToken", "setting", "setting_id", "size",
    "startTime", "start_time", "status", "taskMessage", "task_id", "task_name", "task_status", "tfaKey",
    "thumbnail", "title", "total", "ttcode", "type", "uid", "uidStr", "update_time", "upload_ticket",
    "upload_url", "url", "urls", "user_id", "version", "weight", "devices"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**400)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20) | st.sampled_from(KEYS))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5),
                                                                inner, max_size=6),
    max_leaves=30,
)
def _error_of(fn: Callable[[], object]) -> BambuError | None:
    """The BambuError ``fn`` raises, or None (anything else propagates and fails the test)."""
    try:
        fn()
    except BambuError as exc:
        return exc
    return None


ARGS = {"dev_id": "01P00A000000001", "filename": "a.3mf", "setting_id": "PFUS1", "action": "upload",
        "project_id": "1"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(endpoint=st.sampled_from(sorted(ep.ENDPOINTS.values(), key=lambda e: e.name)), body=JSON)
def test_every_endpoint_reads_any_json_or_raises_a_cloud_error(endpoint: ep.Endpoint[object], body: object) -> None:
    error = _error_of(lambda: endpoint.read(body, ARGS))
    assert error is None or str(error).startswith(f"{endpoint.name}: ")


@pytest.mark.parametrize("name", sorted(ep.ENDPOINTS))
@pytest.mark.parametrize("body", [True, 1.5, 5, "text", [1, 2]])
def test_a_non_object_answer_is_a_cloud_error_naming_the_endpoint(name: str, body: object) -> None:
    endpoint = ep.ENDPOINTS[name]
    if endpoint.parse.__name__ == "_none":
        assert endpoint.read(body, ARGS) is None  # these answers carry nothing the client reads
        return
    with pytest.raises(CloudError, match=f"^{name}: "):
        endpoint.read(body, ARGS)


@pytest.mark.parametrize("key", ["devices", "hits", "projects"])
def test_a_list_field_of_the_wrong_type_is_a_cloud_error(key: str) -> None:
    users = [e for e in ep.ENDPOINTS.values() if e.parse.__name__ in {"_devices", "_print_status", "_firmware",
                                                                        "_messages", "_projects", "_tasks"}]
    errors = [(e.name, _error_of(lambda e=e: e.read({key: 5}, ARGS))) for e in users]
    raised = [(name, error) for name, error in errors if error is not None]
    assert raised
    assert all(isinstance(error, CloudError) and str(error).startswith(name) for name, error in raised)


def test_json_nested_deeper_than_the_parser_goes_is_a_cloud_error() -> None:
    response = HttpResponse(200, {}, b"[" * 200_000 + b"]" * 200_000, (), "https://api.example/x")
    with pytest.raises(CloudError, match=r"^devices: .*not JSON"):
        decode_json(response, "devices")


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"devices": 5}', "error"), (b"true", "error"), (b"1.5", "error"), (b'{"devices": {"dev_id": 1}}', "error"),
    (b"[" * 100_000 + b"]" * 100_000, "error"), (b'{"devices": [1, "x", null]}', []),
])
def test_the_client_turns_a_malformed_answer_into_a_cloud_error(body: bytes, expected: object) -> None:
    found: list[object] = []
    with CannedHttp(body) as server, BambuClient("tok.en.value", api_url=server.url) as client:
        error = _error_of(lambda: found.append(client.devices()))
    if expected == "error":
        assert isinstance(error, CloudError) and str(error).startswith("devices: ")
    else:
        assert error is None and found == [expected]


@pytest.mark.parametrize(("body", "expected"), [
    (b"true", CloudError), (b"[]", CloudError), (b'{"accessToken": 5, "expiresIn": 1e400}', AuthenticationError),
    (b'{"accessToken": "a\\r\\nb", "refreshToken": "r"}', CloudError),
    (b'{"accessToken": "abc", "expiresIn": 100000000000000000000000000000000000}', None),
])
def test_the_login_flow_turns_a_malformed_answer_into_a_bambu_error(body: bytes, expected: type | None) -> None:
    from bambulab.cloud.auth import BambuAuthenticator

    tokens: list[Token] = []
    with CannedHttp(body) as server, BambuAuthenticator(api_url=server.url, web_url=server.url) as auth:
        error = _error_of(lambda: tokens.append(auth.login("a@example.com", "pw", lambda: "123456")))
    if expected is None:
        assert error is None and tokens[0].access_token == "abc" and tokens[0].expires_at is None
    else:
        assert type(error) is expected and "\r" not in str(error)

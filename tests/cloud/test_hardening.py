"""Hostile or broken input to the cloud client: corrupt tokens, secrets in reprs, malformed JSON.

The server side is a canned HTTP server on 127.0.0.1 (it stands in for the real Bambu cloud,
which is the one thing tests may fake).
"""

from __future__ import annotations

import json
import logging
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

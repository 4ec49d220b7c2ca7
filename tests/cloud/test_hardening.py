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

"""The older package's ``BambuAuthenticator``: a token file at ``~/.bambu_token`` and token strings.

``from bambulab import BambuAuthenticator`` (the older import path) is this class;
``from bambulab.cloud import BambuAuthenticator`` is the modern one, which it extends. The
differences are the older ones, kept on purpose:

* ``BambuAuthenticator(region="global", token_file=None)``: the token file defaults to
  ``~/.bambu_token``;
* :meth:`login` returns the access token as a string and saves it to the token file; without a
  ``code_callback`` it asks for the emailed code on the terminal, but only when standard input is
  one (otherwise :class:`~bambulab.exceptions.AuthenticationError` says to pass a callback);
* :meth:`get_or_create_token` takes ``(username, password, code_callback, force_new)``;
* :meth:`save_token` / :meth:`load_token` read and write the token file.

The token file holds the older JSON shape (``{"region", "token"}``) together with the modern
keys, so both packages and ``bambu login`` read it; it is written atomically with mode 0600 from
creation.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bambulab.cloud._files import write_private
from bambulab.cloud.auth import BambuAuthenticator as _ModernAuthenticator
from bambulab.cloud.auth import CodeCallback, CodeRequest, Token, load_token
from bambulab.exceptions import AuthenticationError, BambuAuthError

__all__ = ["DEFAULT_TOKEN_FILE", "BambuAuthError", "BambuAuthenticator"]

#: Where the older package kept its token.
DEFAULT_TOKEN_FILE = "~/.bambu_token"  # noqa: S105 - a path, not a secret


def _terminal_prompt() -> Callable[[CodeRequest], str]:
    """Ask for the code on the terminal, as the older package did; refuse when there is none."""

    def ask(request: CodeRequest) -> str:
        if not sys.stdin.isatty():
            what = "an emailed code" if request.kind == "email" else "a two-factor code"
            raise AuthenticationError(
                f"this account needs {what} to log in and standard input is not a terminal, so it cannot be "
                "asked for: pass code_callback=... (a function returning the code)"
            )
        return input(request.message).strip()

    return ask


class BambuAuthenticator(_ModernAuthenticator):
    """Log in and keep the token in a file, with the older package's calls (blocking).

    ``api_url``, ``web_url``, ``http_client`` and the modern keyword arguments are accepted too
    (a fake cloud, a proxy, your own HTTP client).
    """

    def __init__(
        self,
        region: str = "global",
        token_file: str | os.PathLike[str] | None = None,
        *,
        api_url: str | None = None,
        web_url: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(region, api_url, web_url, **options)
        self.token_file = Path(os.path.expanduser(os.fspath(token_file or DEFAULT_TOKEN_FILE)))

    def login(  # type: ignore[override]
        self, username: str, password: str, code_callback: CodeCallback | None = None
    ) -> str:
        """Log in (with the emailed or two-factor code when the account needs one), save the token
        to :attr:`token_file` and return the access token."""
        callback: CodeCallback = code_callback if code_callback is not None else _terminal_prompt()
        token = super().login(username, password, callback)
        self.save_token(token)
        return token.access_token

    def get_or_create_token(  # type: ignore[override]
        self,
        username: str | None = None,
        password: str | None = None,
        code_callback: CodeCallback | None = None,
        force_new: bool = False,
    ) -> str:
        """The saved token if the cloud still accepts it, else a new login (saved). ``force_new``
        logs in even when a valid token is saved. Without a usable token, ``username`` and
        ``password`` are required (:class:`~bambulab.exceptions.AuthenticationError`)."""
        if not force_new:
            saved = self.load_token()
            if saved is not None and self.verify_token(saved):
                return saved
        if not username or not password:
            where = f"no valid token in {self.token_file}"
            raise AuthenticationError(f"{where}: pass username and password to log in (or run bambu-login)")
        return self.login(username, password, code_callback)

    def save_token(self, token: Token | str) -> None:
        """Write the token file (atomically, mode 0600 from creation), in both the older shape
        (``{"region", "token"}``) and the modern one."""
        value = token if isinstance(token, Token) else self._token(token)
        data = {"region": value.region or self.region, "token": value.access_token, "version": 1,
                **value.to_dict(include_secrets=True)}
        write_private(self.token_file, json.dumps(data, indent=2).encode() + b"\n")

    def load_token(self) -> str | None:
        """The access token in :attr:`token_file` (older or modern shape), or ``None``."""
        token = load_token(self.token_file)
        return token.access_token if token is not None else None

    def __repr__(self) -> str:
        return f"BambuAuthenticator(region={self.region!r}, token_file={str(self.token_file)!r})"


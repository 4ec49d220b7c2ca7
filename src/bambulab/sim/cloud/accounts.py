"""Accounts, tokens, emailed codes and two-factor sign-in of the fake cloud."""

from __future__ import annotations

import secrets
from typing import Any

from bambulab.exceptions import SimulatorError
from bambulab.sim.cloud.base import CloudBase
from bambulab.sim.cloud.model import Account, LoginMode, jwt_token, opaque_token, totp
from bambulab.sim.cloud.state import TFA_KEY_LIFETIME, TokenRecord

__all__ = ["AccountUseCases"]


class AccountUseCases(CloudBase):
    """Use cases of :class:`~bambulab.sim.cloud.FakeCloud`, which composes them."""

    # ------------------------------------------------------------------ accounts

    def add_account(
        self,
        email: str,
        password: str,
        *,
        uid: int | None = None,
        name: str | None = None,
        login_mode: LoginMode | str = LoginMode.TOKEN,
        tfa_secret: str | None = None,
        fixed_code: str | None = None,
    ) -> Account:
        """Create an account. ``login_mode`` is ``token``, ``verifyCode`` or ``tfa``.

        A ``tfa`` account needs ``tfa_secret`` (base32, checked as RFC 6238 TOTP) or
        ``fixed_code``; ``fixed_code`` is also accepted as an emailed code.
        """
        key = email.strip().lower()
        if not key or key in self._by_email:
            raise SimulatorError(f"an account for {email!r} already exists" if key else "email is empty")
        mode = LoginMode(login_mode)
        if mode is LoginMode.TFA and not (tfa_secret or fixed_code):
            raise SimulatorError("a tfa account needs tfa_secret or fixed_code")
        if tfa_secret is not None:
            totp(tfa_secret, 0)  # fails early on a secret that is not base32
        if uid is None:
            uid = self._rng.randrange(1_000_000_000, 4_000_000_000)
            while uid in self._accounts:
                uid = self._rng.randrange(1_000_000_000, 4_000_000_000)
        elif uid in self._accounts:
            raise SimulatorError(f"uid {uid} is taken")
        local = key.split("@", 1)[0]
        account = Account(
            email=email.strip(), password=password, uid=uid, name=name or local, login_mode=mode,
            tfa_secret=tfa_secret, fixed_code=fixed_code, handle=f"@{local}",
            avatar=f"https://public-cdn.bambulab.invalid/avatar/{uid}.png",
        )
        self._accounts[uid] = account
        self._by_email[key] = uid
        return account

    def account(self, who: str | int | Account) -> Account:
        """An account by email, uid or itself."""
        if isinstance(who, Account):
            return who
        uid = who if isinstance(who, int) else self._by_email.get(who.strip().lower())
        account = self._accounts.get(uid) if uid is not None else None
        if account is None:
            raise SimulatorError(f"no cloud account {who!r}")
        return account

    def find_account(self, email: str) -> Account | None:
        uid = self._by_email.get(email.strip().lower())
        return self._accounts.get(uid) if uid is not None else None

    @property
    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    # ------------------------------------------------------------------ tokens

    def issue_token(self, who: str | int | Account, *, lifetime: float | None = None) -> str:
        """A fresh access token for an account, as a successful login gives (for tests and demos)."""
        account = self.account(who)
        now = self.now()
        expires = now + (self.switches.token_lifetime if lifetime is None else lifetime)
        token = jwt_token(account.uid, now, expires) if self.switches.jwt_tokens else opaque_token()
        self._tokens[token] = TokenRecord(uid=account.uid, issued=now, expires=expires)
        return token

    def token_account(self, token: str) -> Account | None:
        """The account a token belongs to, if it is known and not expired."""
        record = self._tokens.get(token)
        if record is None or record.expires <= self.now():
            return None
        return self._accounts.get(record.uid)

    def token_expires_in(self, token: str) -> int:
        """Seconds a token has left (its full lifetime right after it was issued)."""
        record = self._tokens.get(token)
        return max(0, round(record.expires - max(self.now(), record.issued))) if record else 0

    def expire_tokens(self, who: str | int | Account | None = None) -> int:
        """Expire every token now (of one account, or all); returns how many were valid."""
        uid = self.account(who).uid if who is not None else None
        now = self.now()
        count = 0
        for record in self._tokens.values():
            if (uid is None or record.uid == uid) and record.expires > now:
                record.expires = now
                count += 1
        return count

    def token_response(self, account: Account) -> dict[str, Any]:
        """The login body with a token (``loginType`` empty); the refresh token is the same string."""
        token = self.issue_token(account)
        lifetime = self.token_expires_in(token)
        return {
            "accessToken": token, "refreshToken": token, "loginType": "", "tfaKey": "",
            "expiresIn": lifetime, "refreshExpiresIn": lifetime,
        }

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        """A new token pair for a valid refresh token, or None."""
        account = self.token_account(refresh_token)
        if account is None:
            return None
        body = self.token_response(account)
        body.pop("loginType")
        body.pop("tfaKey")
        return body

    # ------------------------------------------------------------------ codes and two-factor

    def send_code(self, email: str) -> bool:
        """"Email" a fresh 6-digit login code; False (and nothing stored) for an unknown address."""
        account = self.find_account(email)
        if account is None:
            return False
        code = f"{secrets.randbelow(1_000_000):06d}"
        self._codes[account.email.lower()] = (code, self.now() + self.switches.code_ttl)
        return True

    def last_code(self, email: str) -> str | None:
        """The last code sent to ``email`` (nothing is really emailed), even if it has expired."""
        entry = self._codes.get(email.strip().lower())
        return entry[0] if entry else None

    def check_code(self, email: str, code: str) -> tuple[Account | None, int]:
        """Check an emailed code: (account, 0) on success; (None, 1) expired/none; (None, 2) wrong."""
        account = self.find_account(email)
        if account is None:
            return None, 2
        if account.fixed_code is not None and secrets.compare_digest(code.encode(), account.fixed_code.encode()):
            return account, 0
        entry = self._codes.get(account.email.lower())
        if entry is None or entry[1] <= self.now():
            return None, 1
        if not secrets.compare_digest(code.encode(), entry[0].encode()):
            return None, 2
        del self._codes[account.email.lower()]  # one use
        return account, 0

    def new_tfa_key(self, account: Account) -> str:
        key = secrets.token_urlsafe(24)
        self._tfa_keys[key] = (account.uid, self.now() + TFA_KEY_LIFETIME)
        return key

    def check_tfa(self, tfa_key: str, code: str) -> tuple[Account | None, str]:
        """Check an authenticator code for a pending TFA login: (account, "") or (None, why)."""
        entry = self._tfa_keys.get(tfa_key)
        if entry is None or entry[1] <= self.now():
            return None, "tfaKey expired or unknown"
        account = self._accounts.get(entry[0])
        if account is None:
            return None, "tfaKey expired or unknown"
        given = code.encode()
        ok = account.fixed_code is not None and secrets.compare_digest(given, account.fixed_code.encode())
        if not ok and account.tfa_secret:
            now = self.now()
            ok = any(secrets.compare_digest(given, totp(account.tfa_secret, now + d).encode()) for d in (-30, 0, 30))
        if not ok:
            return None, "incorrect code"
        del self._tfa_keys[tfa_key]
        return account, ""

    def new_csrf(self) -> str:
        token = secrets.token_urlsafe(24)
        self._csrf.add(token)
        return token

    def csrf_known(self, token: str) -> bool:
        return token in self._csrf


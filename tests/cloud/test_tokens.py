"""TokenManager: custom proxy tokens hashed at rest, real tokens in a 0600 file, constant-time checks."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from bambulab.cloud import tokens as tokens_module
from bambulab.cloud.tokens import TokenManager

REAL_A = "real-bambu-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
REAL_B = "real-bambu-token-bbbbbbbbbbbbbbbbbbbbbbbbbbbb"


def test_add_validate_and_hash_at_rest(tmp_path: Path) -> None:
    path = tmp_path / "proxy" / "tokens.json"
    manager = TokenManager(path)
    custom = manager.add(REAL_A, name="home-assistant")
    chosen = manager.add(REAL_B, custom_token="my-own-custom-token-123")
    assert len(custom) >= 40 and custom != REAL_A
    assert manager.validate(custom) == REAL_A
    assert manager.validate("my-own-custom-token-123") == REAL_B
    assert manager.validate(custom[:-1] + ("x" if custom[-1] != "x" else "y")) is None
    assert manager.validate("") is None
    text = path.read_text()
    assert custom not in text and chosen not in text  # only hashes of custom tokens are stored
    assert REAL_A in text  # the real token must be usable by the proxy
    data = json.loads(text)
    assert data["hash"] == "hmac-sha256" and len(data["tokens"]) == 2
    reopened = TokenManager(path)
    assert reopened.validate(custom) == REAL_A and reopened.validate(chosen) == REAL_B
    assert [i.name for i in reopened.list()] == ["home-assistant", "token-1"]


def test_list_has_no_secrets_and_tracks_use(tmp_path: Path) -> None:
    manager = TokenManager(tmp_path / "tokens.json")
    custom = manager.add(REAL_A, name="ha")
    digest = json.loads((tmp_path / "tokens.json").read_text())["tokens"][0]["hash"]
    infos = manager.list()
    assert infos[0].last_used is None and infos[0].created > 0
    shown = repr(infos) + repr(manager) + json.dumps([dataclasses.asdict(i) for i in infos])
    for secret in (custom, REAL_A, digest):
        assert secret not in shown
    assert manager.validate(custom) == REAL_A
    assert manager.list()[0].last_used is not None
    assert TokenManager(tmp_path / "tokens.json").list()[0].last_used is not None  # written through


def test_file_is_0600_from_creation_and_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[int] = []
    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT:
            created.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("never chmod a file that holds tokens")

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(Path, "chmod", refuse)
    old = os.umask(0)
    try:
        path = tmp_path / "tokens.json"
        manager = TokenManager(path)
        manager.add(REAL_A)
        inode = path.stat().st_ino
        manager.add(REAL_B)
    finally:
        os.umask(old)
    assert created == [0o600, 0o600]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.json"]


def test_remove_by_name_or_by_custom_token(tmp_path: Path) -> None:
    manager = TokenManager(tmp_path / "tokens.json")
    first = manager.add(REAL_A, name="one")
    second = manager.add(REAL_B, name="two")
    assert manager.remove("one")
    assert manager.validate(first) is None and manager.validate(second) == REAL_B
    assert manager.remove(second)
    assert not manager.remove("two") and not manager.remove("nothing")
    assert manager.count() == 0 and TokenManager(tmp_path / "tokens.json").list() == []


def test_validate_compares_every_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hit on the first entry costs as many comparisons as a miss: no early exit to time."""
    manager = TokenManager(tmp_path / "tokens.json")
    customs = [manager.add(f"{REAL_A}-{i}", name=f"t{i}") for i in range(5)]
    calls: list[tuple[Any, Any]] = []
    real_compare = tokens_module.hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", counting)
    for candidate in (customs[0], customs[4], "not-a-token-at-all-xxxxxxxx"):
        calls.clear()
        manager.validate(candidate, touch=False)
        assert len(calls) == 5, candidate


def test_names_are_unique_and_bad_input_is_refused(tmp_path: Path) -> None:
    manager = TokenManager(tmp_path / "tokens.json")
    manager.add(REAL_A, name="ha", custom_token="c" * 20)
    with pytest.raises(ValueError, match="already exists"):
        manager.add(REAL_B, name="ha")
    with pytest.raises(ValueError, match="already in use"):
        manager.add(REAL_B, custom_token="c" * 20)
    with pytest.raises(ValueError, match="16 characters"):
        manager.add(REAL_B, custom_token="short")
    with pytest.raises(ValueError, match="empty"):
        manager.add("")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a token file"):
        TokenManager(tmp_path / "broken.json")


def test_last_used_is_written_once_a_minute_under_steady_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Used every 30 s, a token's last_used reaches the file once a minute (it used to never be written)."""
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    path = tmp_path / "tokens.json"
    manager = TokenManager(path)
    custom = manager.add(REAL_A, name="busy")
    written: list[float | None] = []
    for _ in range(8):  # four minutes of use every 30 s
        clock[0] += 30.0
        assert manager.validate(custom) == REAL_A
        written.append(json.loads(path.read_text())["tokens"][0]["last_used"])
    assert written[-1] is not None and clock[0] - written[-1] <= 60.0
    assert len({w for w in written if w is not None}) >= 3  # written again and again, not once
    assert sum(1 for a, b in itertools.pairwise(written) if a != b) <= 4  # not on every use
    manager.flush()
    assert json.loads(path.read_text())["tokens"][0]["last_used"] == clock[0]


def test_scope_expiry_and_grant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = TokenManager(tmp_path / "tokens.json")
    now = time.time()
    viewer = manager.add(REAL_A, name="viewer", scope="strict", expires=now + 100)
    grant = manager.lookup(viewer)
    assert grant is not None and grant.scope == "strict" and grant.real_token == REAL_A
    assert REAL_A not in repr(grant) and grant.account == manager.lookup(manager.add(REAL_A)).account  # type: ignore[union-attr]
    assert manager.lookup(manager.add(REAL_B)).account != grant.account  # type: ignore[union-attr]
    info = next(i for i in TokenManager(tmp_path / "tokens.json").list() if i.name == "viewer")
    assert (info.scope, info.label, info.expires) == ("strict", "viewer", now + 100)
    monkeypatch.setattr(time, "time", lambda: now + 101)
    assert manager.validate(viewer) is None  # expired
    with pytest.raises(ValueError, match="scope"):
        manager.add(REAL_A, scope="admin")
    with pytest.raises(ValueError, match="past"):
        manager.add(REAL_A, expires=now)
    with pytest.raises(ValueError, match="control"):
        manager.add("real\r\nX-Injected: 1")


def test_older_api_and_plain_file_migrate_to_hashed_storage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "proxy_tokens.json"
    path.write_text(json.dumps({"custom-token-1": REAL_A, "short": REAL_B}))
    with caplog.at_level("WARNING", logger="bambulab.cloud.tokens"):
        manager = TokenManager(path)
    assert manager.validate("custom-token-1") == REAL_A and manager.validate("short") == REAL_B
    text = path.read_text()
    assert "custom-token-1" not in text and '"short"' not in text  # hashed on the way in
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "migrated 2" in caplog.text and "short" not in caplog.text.replace("older", "")
    manager.add_token("tiny", REAL_B)  # the older call, short token accepted with a warning
    assert manager.validate("tiny") == REAL_B
    listed = manager.list_tokens()
    assert len(listed) == 3 and all(set(d) == {"name", "scope", "created", "last_used", "expires"} for d in listed)
    for secret in ("tiny", "short", "custom-token-1", REAL_A, REAL_B):
        assert secret not in json.dumps(listed)
    other = tmp_path / "old.json"
    other.write_text(json.dumps({"another-custom-token": REAL_A}))
    fresh = TokenManager(tmp_path / "new.json")
    assert fresh.import_legacy(other, scope="strict") == 1
    assert fresh.lookup("another-custom-token").scope == "strict"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="older format"):
        fresh.import_legacy(tmp_path / "new.json")


def test_changes_by_another_process_are_seen_and_not_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bambu proxy tokens add/revoke`` while the proxy runs: the proxy's manager follows the file."""
    path = tmp_path / "tokens.json"
    proxy = TokenManager(path)
    kept = proxy.add(REAL_A, name="kept")
    cli = TokenManager(path)
    added = cli.add(REAL_B, name="added")
    revoked = cli.add(REAL_B, name="revoked")
    assert proxy.refresh() and proxy.validate(added) == REAL_B
    cli.remove("revoked")
    clock = [time.monotonic() + 5]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # the once-a-second check is due
    assert proxy.validate(revoked) is None
    assert proxy.validate(kept, touch=True) == REAL_A  # may write last_used: must not bring "revoked" back
    cli.add(REAL_A, name="late")
    proxy.add(REAL_B, name="from-proxy")  # a change re-reads first
    assert [i.name for i in TokenManager(path).list()] == ["kept", "added", "late", "from-proxy"]

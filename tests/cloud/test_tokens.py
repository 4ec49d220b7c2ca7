"""TokenManager: custom proxy tokens hashed at rest, real tokens in a 0600 file, constant-time checks."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
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

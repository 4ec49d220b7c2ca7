"""CLI printer profiles: TOML file, environment, precedence, secrets and file modes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bambulab.config import (
    ConfigError,
    PrinterProfile,
    config_path,
    insecure_permissions,
    load_profiles,
    resolve_profile,
    save_profile,
)


def test_config_path_follows_xdg_and_override(tmp_path: Path) -> None:
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "bambulab" / "config.toml"
    assert config_path({"BAMBU_CONFIG": str(tmp_path / "x.toml")}) == tmp_path / "x.toml"


def test_save_creates_0600_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "config.toml"
    profile = PrinterProfile(name="shop one", host="10.0.0.5", serial="01p00a123456789",
                             access_code="12345678", camera_port=6000)
    save_profile(profile, path=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not insecure_permissions(path)
    profiles, default = load_profiles(path)
    assert default == "shop one"
    assert profiles["shop one"].access_code == "12345678"
    assert profiles["shop one"].serial == "01P00A123456789"
    assert profiles["shop one"].camera_port == 6000
    save_profile(PrinterProfile(name="b", host="h", serial="S", access_code="1"), path=path)
    profiles, default = load_profiles(path)
    assert set(profiles) == {"shop one", "b"}
    assert default == "shop one"


def test_access_code_not_in_repr_or_public_dict() -> None:
    profile = PrinterProfile(host="h", serial="S", access_code="87654321")
    assert "87654321" not in repr(profile)
    assert "access_code" not in profile.to_dict()


def test_precedence_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    save_profile(PrinterProfile(name="p", host="file-host", serial="S1", access_code="11111111"), path=path)
    env = {"BAMBU_CONFIG": str(path)}
    assert resolve_profile(env=env).host == "file-host"
    env["BAMBU_HOST"] = "env-host"
    assert resolve_profile(env=env).host == "env-host"
    assert resolve_profile(env=env, overrides={"host": "flag-host"}).host == "flag-host"
    assert resolve_profile(env=env).access_code == "11111111"


def test_env_only_profile(tmp_path: Path) -> None:
    env = {"BAMBU_CONFIG": str(tmp_path / "none.toml"), "BAMBU_HOST": "127.0.0.1",
           "BAMBU_SERIAL": "s", "BAMBU_ACCESS_CODE": " 1234 \n"}
    profile = resolve_profile(env=env)
    assert profile.serial == "S"
    assert profile.access_code == "1234"


def test_missing_values_name_the_fix_but_not_secrets(tmp_path: Path) -> None:
    env = {"BAMBU_CONFIG": str(tmp_path / "none.toml"), "BAMBU_HOST": "h", "BAMBU_ACCESS_CODE": "99999999"}
    with pytest.raises(ConfigError) as info:
        resolve_profile(env=env)
    assert "serial" in str(info.value) and "BAMBU_SERIAL" in str(info.value)
    assert "99999999" not in str(info.value)


def test_unknown_profile_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    save_profile(PrinterProfile(name="a", host="h", serial="S", access_code="1"), path=path)
    with pytest.raises(ConfigError, match="no printer profile named 'zz'"):
        resolve_profile("zz", env={"BAMBU_CONFIG": str(path)})
    bad = tmp_path / "bad.toml"
    bad.write_text("printers = [1, 2")
    with pytest.raises(ConfigError, match="cannot read"):
        load_profiles(bad)
    bad.write_text('[printers.x]\nhost = "h"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_profiles(bad)
    bad.write_text('[printers.x]\nport = "eighty"\n')
    with pytest.raises(ConfigError, match="port must be a number"):
        load_profiles(bad)


def test_insecure_permissions_detected(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("")
    path.chmod(0o644)
    assert insecure_permissions(path)


def test_stale_temp_file_does_not_leave_the_config_readable(tmp_path: Path) -> None:
    """A leftover temp file of the old predictable name (mode 0644) must not decide the mode."""
    import os

    path = tmp_path / "config.toml"
    stale = tmp_path / f".config.toml.{os.getpid()}.tmp"
    stale.write_text("old")
    stale.chmod(0o644)
    save_profile(PrinterProfile(name="p", host="h", serial="S", access_code="24681357"), path=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_profiles(path)[0]["p"].access_code == "24681357"


def test_planted_symlink_does_not_receive_the_access_code(tmp_path: Path) -> None:
    import os

    path = tmp_path / "config.toml"
    outside = tmp_path / "attacker.txt"
    outside.write_text("")
    (tmp_path / f".config.toml.{os.getpid()}.tmp").symlink_to(outside)
    save_profile(PrinterProfile(name="p", host="h", serial="S", access_code="97531864"), path=path)
    assert "97531864" not in outside.read_text()
    assert not path.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
    assert leftovers == []

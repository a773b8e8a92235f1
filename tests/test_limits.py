"""vitviz.limits: a deployment's settings from the environment, then secrets.toml, then the defaults."""

from __future__ import annotations

import pytest

from vitviz import limits


@pytest.fixture
def secrets(tmp_path, monkeypatch):
    """The path of a secrets.toml that limits reads, and no VITVIZ_ variables set."""
    path = tmp_path / ".streamlit" / "secrets.toml"
    path.parent.mkdir()
    monkeypatch.setattr(limits, "SECRETS_FILES", (path, tmp_path / "home" / "secrets.toml"))
    for setting in limits.SETTINGS:
        monkeypatch.delenv(f"VITVIZ_{setting.name.upper()}", raising=False)
    return path


def test_every_setting_says_why_it_exists():
    assert len({s.name for s in limits.SETTINGS}) == len(limits.SETTINGS)
    assert all(s.name.islower() and len(s.reason) > 30 and s.reason.endswith(".") for s in limits.SETTINGS)


def test_defaults_secrets_then_environment(secrets, monkeypatch):
    assert limits.max_download_bytes() == 1_000_000_000 and limits.hub_token() is None
    secrets.write_text('[vitviz]\nmax_download_mb = 400\nsend_hub_token = true\n\n[other]\nmax_download_mb = 1\n')
    assert limits.get("max_download_mb") == 400 and limits.hub_token() is True
    monkeypatch.setenv("VITVIZ_MAX_DOWNLOAD_MB", "25")
    monkeypatch.setenv("VITVIZ_SEND_HUB_TOKEN", "off")
    assert limits.max_download_bytes() == 25_000_000 and limits.hub_token() is None


def test_the_working_directorys_secrets_win_over_the_home_ones(secrets):
    home = limits.SECRETS_FILES[1]
    home.parent.mkdir()
    home.write_text("[vitviz]\nmax_download_mb = 7\nsend_hub_token = true\n")
    secrets.write_text("[vitviz]\nmax_download_mb = 9\n")
    assert limits.get("max_download_mb") == 9 and limits.get("send_hub_token") is True


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("VITVIZ_MAX_DOWNLOAD_MB", "lots", "VITVIZ_MAX_DOWNLOAD_MB must be a whole number"),
    ("VITVIZ_MAX_DOWNLOAD_MB", "-5", "VITVIZ_MAX_DOWNLOAD_MB must be a whole number"),
    ("VITVIZ_SEND_HUB_TOKEN", "perhaps", "VITVIZ_SEND_HUB_TOKEN must be true or false"),
])
def test_a_bad_value_names_what_to_fix(secrets, monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    with pytest.raises(limits.SettingError, match=words):
        limits.get(variable.removeprefix("VITVIZ_").lower())


def test_a_broken_secrets_file_names_itself(secrets):
    secrets.write_text("[vitviz\nmax_download_mb = \n")
    with pytest.raises(limits.SettingError, match="secrets.toml is not a readable TOML file"):
        limits.max_download_bytes()
    secrets.write_text("vitviz = 5\n")
    with pytest.raises(limits.SettingError, match="must be a table"):
        limits.max_download_bytes()
    secrets.write_text('[vitviz]\nmax_download_mb = "big"\n')
    with pytest.raises(limits.SettingError, match="max_download_mb in the \\[vitviz\\] table"):
        limits.max_download_bytes()

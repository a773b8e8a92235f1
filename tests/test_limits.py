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


def test_the_checkpoint_limits_and_their_defaults(secrets, monkeypatch):
    assert (limits.max_checkpoint_bytes(), limits.max_zip_ratio(), limits.max_tensors(), limits.max_header_bytes(),
            limits.max_tokens()) == (400_000_000, 4, 2000, 2_000_000, 577)
    secrets.write_text("[vitviz]\nmax_tokens = 197\nmax_checkpoint_mb = 50\n")
    assert limits.max_tokens() == 197 and limits.max_checkpoint_bytes() == 50_000_000


def test_the_limits_on_heavy_work_downloads_and_the_hub_cache(secrets, monkeypatch):
    assert (limits.heavy_tasks(), limits.heavy_wait_seconds(), limits.story_max_bytes(), limits.numbers_max_bytes(),
            limits.download_cache_bytes(), limits.hub_cache_bytes()) == (1, 60, 40_000_000, 100_000_000, 200_000_000,
                                                                          3_000_000_000)
    secrets.write_text("[vitviz]\nheavy_tasks = 2\nhub_cache_mb = 500\n")
    monkeypatch.setenv("VITVIZ_NUMBERS_MAX_MB", "0")
    assert limits.heavy_tasks() == 2 and limits.hub_cache_bytes() == 500_000_000 and limits.numbers_max_bytes() == 0


def test_the_models_directory_is_off_unless_it_names_a_folder(secrets, monkeypatch, tmp_path):
    assert limits.models_dir() is None
    secrets.write_text(f'[vitviz]\nmodels_dir = "{tmp_path}"\n')
    assert limits.models_dir() == tmp_path.resolve()
    monkeypatch.setenv("VITVIZ_MODELS_DIR", "")
    assert limits.models_dir() is None
    monkeypatch.setenv("VITVIZ_MODELS_DIR", str(tmp_path / "missing"))
    with pytest.raises(limits.SettingError, match="must name a folder"):
        limits.models_dir()

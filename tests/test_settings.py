"""Settings precedence: flags > ACTSMITH_* environment > repo .actsmith.toml > user config > defaults."""

import pytest

from agent_cli.errors import UsageError
from agent_cli.settings import Settings, load_settings


@pytest.fixture
def user_config(tmp_path, monkeypatch):
    home = tmp_path / "config-home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    path = home / "actsmith" / "config.toml"
    path.parent.mkdir(parents=True)
    return path


def test_defaults_apply_when_nothing_is_configured(tmp_path, user_config):
    assert load_settings(tmp_path, {}, environ={}) == Settings()


def test_each_source_overrides_the_one_below_it(tmp_path, user_config):
    user_config.write_text('model = "user-model"\nmax_steps = 11\nmax_cost = 1.5\naction_timeout = 9\n')
    (tmp_path / ".actsmith.toml").write_text('model = "repo-model"\nmax_steps = 12\nmax_cost = 2.5\n')
    environ = {"ACTSMITH_MODEL": "env-model", "ACTSMITH_MAX_STEPS": "13"}
    settings = load_settings(tmp_path, {"model": "flag-model", "max_steps": None}, environ=environ)
    assert settings.model == "flag-model"
    assert settings.max_steps == 13  # a flag left unset does not hide the environment
    assert settings.max_cost == 2.5
    assert settings.action_timeout == 9.0


def test_environment_booleans_and_numbers_are_parsed(tmp_path, user_config):
    settings = load_settings(tmp_path, {}, environ={"ACTSMITH_NETWORK": "yes", "ACTSMITH_MAX_COST": "0.25"})
    assert settings.network is True and settings.max_cost == 0.25


def test_a_bad_value_names_its_source(tmp_path, user_config):
    with pytest.raises(UsageError, match="ACTSMITH_MAX_STEPS: max_steps = 'many' is not a valid int"):
        load_settings(tmp_path, {}, environ={"ACTSMITH_MAX_STEPS": "many"})


def test_an_unknown_key_in_a_config_file_is_an_error(tmp_path, user_config):
    (tmp_path / ".actsmith.toml").write_text("max_stpes = 3\n")
    with pytest.raises(UsageError, match="unknown setting 'max_stpes'"):
        load_settings(tmp_path, {}, environ={})


def test_invalid_toml_is_one_clear_error(tmp_path, user_config):
    (tmp_path / ".actsmith.toml").write_text("model = \n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_settings(tmp_path, {}, environ={})


@pytest.mark.parametrize("key, value", [("api_base", '"http://evil.example/v1"'), ("network", "true")])
def test_a_repository_cannot_redirect_api_keys_or_loosen_the_sandbox(tmp_path, user_config, key, value):
    (tmp_path / ".actsmith.toml").write_text(f'model = "gpt-4o"\n{key} = {value}\n')
    with pytest.raises(UsageError, match=f"{key} cannot be set by a repository"):
        load_settings(tmp_path, {}, environ={})


def test_the_user_config_may_set_api_base(tmp_path, user_config):
    user_config.write_text('api_base = "http://localhost:11434"\n')
    assert load_settings(tmp_path, {}, environ={}).api_base == "http://localhost:11434"

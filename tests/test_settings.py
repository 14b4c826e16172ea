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


def test_a_repository_config_linked_out_of_the_repository_is_never_read(tmp_path, user_config):
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "credentials").write_text("aws_secret_access_key = 'hunter2'\n")
    (repo / ".actsmith.toml").symlink_to(tmp_path / "credentials")
    with pytest.raises(UsageError, match="is a symbolic link that leads out of the repository") as refused:
        load_settings(repo, {}, environ={})
    assert "aws_secret_access_key" not in str(refused.value)

    (repo / "shared.toml").write_text("max_steps = 7\n")  # a link inside the repository is followed
    (repo / ".actsmith.toml").unlink()
    (repo / ".actsmith.toml").symlink_to("shared.toml")
    assert load_settings(repo, {}, environ={}).max_steps == 7


@pytest.mark.parametrize("key, value", [("api_base", '"http://evil.example/v1"'), ("network", "true")])
def test_a_repository_cannot_redirect_api_keys_or_loosen_the_sandbox(tmp_path, user_config, key, value):
    (tmp_path / ".actsmith.toml").write_text(f'model = "gpt-4o"\n{key} = {value}\n')
    with pytest.raises(UsageError, match=f"{key} cannot be set by a repository"):
        load_settings(tmp_path, {}, environ={})


def test_the_user_config_may_set_api_base(tmp_path, user_config):
    user_config.write_text('api_base = "http://localhost:11434"\n')
    assert load_settings(tmp_path, {}, environ={}).api_base == "http://localhost:11434"


NONSENSE = [
    ("test_timeout", "0"),  # used to turn the gate off and exit 0
    ("test_timeout", "-5"),
    ("max_output_chars", "10"),  # used to cut run_tests() into finish()
    ("max_output_chars", "-10"),
    ("action_timeout", "0"),  # used to become 1 silently
    ("max_steps", "-1"),  # used to report "limit reached"
    ("max_time", "-1"),
    ("max_cost", "-1"),
    ("max_cost", "0"),
    ("max_test_rounds", "-1"),
    ("map_tokens", "-3"),
    ("model_timeout", "0"),
    ("cpus", "0"),
    ("pids", "8"),
]


@pytest.mark.parametrize("name, raw", NONSENSE)
def test_nonsense_numbers_are_refused_from_every_source_naming_the_setting(tmp_path, user_config, name, raw):
    flag = "--max-output" if name == "max_output_chars" else f"--{name.replace('_', '-')}"
    with pytest.raises(UsageError, match=rf"^{flag}: {name} = .* is out of range"):
        load_settings(tmp_path, {name: raw}, environ={})
    with pytest.raises(UsageError, match=rf"^ACTSMITH_{name.upper()}: {name} = '{raw}' is out of range"):
        load_settings(tmp_path, {}, environ={f"ACTSMITH_{name.upper()}": raw})
    user_config.write_text(f"{name} = {raw}\n")
    with pytest.raises(UsageError, match=rf"config.toml: {name} = {raw} is out of range: it must be"):
        load_settings(tmp_path, {}, environ={})


def test_the_flag_of_a_renamed_setting_is_named_in_its_error(tmp_path, user_config):
    with pytest.raises(UsageError, match=r"^--max-output: max_output_chars = 10 is out of range"):
        load_settings(tmp_path, {"max_output_chars": 10}, environ={})


def test_settings_built_in_code_are_checked_too():
    with pytest.raises(UsageError, match="max_steps = 0 is out of range"):
        Settings(max_steps=0)
    with pytest.raises(UsageError, match="memory = '1k' is too small"):
        Settings(memory="1k")


def test_every_numeric_setting_has_a_range():
    from agent_cli.settings import FIELDS, spec_of, value_type

    unbounded = [
        name
        for name, item in FIELDS.items()
        if value_type(item) in (int, float) and (spec_of(item).low is None or spec_of(item).high is None)
    ]
    assert unbounded == []


def test_paths_are_taken_literally(tmp_path, user_config):
    settings = load_settings(tmp_path, {}, environ={"ACTSMITH_TRAJECTORY": "$HOME/~/t.jsonl"})
    assert str(settings.trajectory) == "$HOME/~/t.jsonl"

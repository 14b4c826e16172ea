"""`actsmith doctor`: one line per check, the fix on every failure, exit 0 only when all is well."""

from __future__ import annotations

import os

import pytest
from conftest import clean_env, run_cli, write_replay

from agent_cli.doctor import check_image, check_leftovers, check_model, run_checks
from agent_cli.sandbox.identity import LABEL, OWNER_LABEL
from agent_cli.settings import Settings

pytestmark = pytest.mark.docker


def test_all_good_is_one_ok_line_per_check_and_exit_0(repo, tmp_path, sandbox_image):
    replay = write_replay(tmp_path / "replay.yaml", ["<execute>finish('x')</execute>"])
    run = run_cli(["doctor", "--model", f"replay:{replay}"], repo)
    assert run.code == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "settings"],
        ["ok", "docker"],
        ["ok", "image"],
        ["ok", "leftovers"],
        ["ok", "setup"],
        ["ok", "agents.md"],
        ["ok", "model"],
    ]
    assert "Docker Engine" in lines[1] and f"{sandbox_image} present" in lines[2]


def test_docker_unreachable_fails_with_the_fix_and_exit_2(repo):
    run = run_cli(["doctor"], repo, env=clean_env(DOCKER_HOST="unix:///nonexistent/docker.sock"))
    assert run.code == 2
    docker_line = next(line for line in run.stdout.splitlines() if " docker " in line)
    assert docker_line.startswith("FAIL") and "fix: start Docker, or set DOCKER_HOST" in docker_line
    assert "not checked: Docker is not reachable" in run.stdout
    assert "FAIL  model      no model configured: pass --model NAME" in run.stdout


def test_a_missing_key_names_the_variable_and_a_present_key_is_never_printed(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    missing = check_model(Settings(model="gpt-4o"))
    assert not missing.ok and "needs OPENAI_API_KEY" in missing.line()
    secret = "sk-doctor-" + "z" * 32
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    present = check_model(Settings(model="gpt-4o"))
    assert present.ok and secret not in present.line() and "z" * 32 not in present.line()


def test_invalid_settings_are_reported_and_defaults_used_for_the_rest(tmp_path, docker_client):
    checks = {check.name: check for check in run_checks(None, {"memory": "4x", "model": "replay:/none.yaml"})}
    assert not checks["settings"].ok and "is not a size such as 512m" in checks["settings"].detail
    assert checks["docker"].ok
    assert not checks["model"].ok and "/none.yaml" in checks["model"].detail


def test_containers_of_dead_runs_are_reported_with_the_fix(docker_client, sandbox_image):
    dead_owner = f"{os.uname().nodename}:999999:0"
    container = docker_client.containers.create(
        sandbox_image, ["sleep", "600"], labels={LABEL: "1", OWNER_LABEL: dead_owner}
    )
    try:
        check = check_leftovers(docker_client)
        assert not check.ok and container.name in check.detail
        assert check.line().endswith("-> fix: actsmith sandbox clean")
    finally:
        container.remove(force=True)
    assert container.name not in check_leftovers(docker_client).detail


def test_an_image_named_with_image_must_be_present(docker_client):
    check = check_image(docker_client, Settings(image="actsmith-sandbox:no-such-tag"))
    assert not check.ok and "is not present" in check.detail and check.fix


def test_a_missing_sandbox_image_says_how_the_first_run_gets_it(docker_client, sandbox_image):
    check = check_image(docker_client, Settings(base_image=sandbox_image))  # another recipe hash
    assert check.ok and "the first run builds it on" in check.detail

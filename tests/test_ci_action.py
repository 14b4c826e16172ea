"""action.yml and the workflow in docs/ci.md: every input used exists (and every one declared is
used), every action is pinned by a full commit SHA with its tag beside it, the flags passed exist,
every package installed is pinned by its hashes (and the lock installs), and the example workflow
asks for the least it needs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
LOCK = ROOT / "action-requirements.txt"
DOCS = ROOT / "docs" / "ci.md"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def uses_lines(text: str) -> list[str]:
    """Every `uses:` value with its trailing comment, as written."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*(?:- )?uses:\s*(.+)$", text, re.MULTILINE)]


def docs_workflow() -> tuple[str, dict]:
    block = re.search(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert block, "docs/ci.md has no example workflow"
    return block.group(1), yaml.safe_load(block.group(1))


def test_action_inputs_used_are_declared_and_all_declared_are_used():
    text = ACTION.read_text()
    action = yaml.safe_load(text)
    declared = set(action["inputs"])
    assert declared == {
        "model",
        "api-key",
        "github-token",
        "label",
        "allow",
        "max-cost",
        "draft",
        "allow-workflow-changes",
        "setup-on-forks",
        "candidates",
        "candidate-models",
        "design-tests",
    }
    used = set(re.findall(r"inputs\.([A-Za-z0-9_-]+)", text))
    assert used == declared


def test_every_action_is_pinned_by_a_commit_with_its_tag():
    lines = uses_lines(ACTION.read_text())
    assert len(lines) == 2
    workflow, _ = docs_workflow()
    third_party = [line for line in uses_lines(workflow) if not line.startswith("YOUR-ORG/actsmith@")]
    assert len(third_party) == 2
    for line in lines + third_party:
        assert PINNED.match(line), f"not pinned by a 40-hex commit with its tag: {line}"


def test_the_action_installs_itself_runs_ci_with_flags_that_exist_and_uploads_the_run():
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    install = install_step(steps)
    assert '--require-hashes --only-binary :all: -r "$GITHUB_ACTION_PATH/action-requirements.txt"' in install
    assert '--no-deps --no-build-isolation --no-index "$GITHUB_ACTION_PATH"' in install
    assert install.count("pip[@]}") == 2  # nothing else is installed
    ci = next(step for step in steps if step.get("id") == "ci")
    assert 'actsmith" ci ' in ci["run"]
    assert "${{" not in ci["run"]  # inputs reach the script through env only: nothing to inject
    help_text = subprocess.run(
        [sys.executable, "-m", "agent_cli", "ci", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    ).stdout
    for flag in re.findall(r"(--[a-z-]+)", ci["run"]) + ["--ready"]:
        assert flag in help_text
    # The settings the action sets are settings actsmith reads.
    from agent_cli.settings import FIELDS

    for variable in ci["env"]:
        if variable.startswith("ACTSMITH_") and not variable.startswith(("ACTSMITH_CI_", "ACTSMITH_API_KEY")):
            assert variable.removeprefix("ACTSMITH_").lower() in FIELDS
    upload = next(step for step in steps if "upload-artifact" in step.get("uses", ""))
    assert upload["with"]["path"] == "${{ steps.ci.outputs.run-dir }}"
    assert upload["with"]["name"] == "actsmith-${{ github.run_id }}-${{ github.run_attempt }}"
    assert "always()" in upload["if"]
    outputs = {name: spec["value"] for name, spec in action["outputs"].items()}
    assert outputs == {
        name: f"${{{{ steps.ci.outputs.{name} }}}}" for name in ("conclusion", "pr-url", "branch", "cost-usd")
    }


def install_step(steps: list[dict]) -> str:
    return next(step["run"] for step in steps if step.get("name", "").startswith("Install actsmith"))


def locked() -> dict[str, tuple[str, int]]:
    """name -> (version, how many hashes) for each requirement of the lock."""
    pins = {}
    for block in re.split(r"\n(?=[a-z0-9])", LOCK.read_text()):
        match = re.match(r"([a-z0-9._-]+)==(\S+) \\\n", block)
        if match:
            pins[match.group(1)] = (match.group(2), block.count("--hash=sha256:"))
    return pins


def test_the_lock_pins_every_dependency_and_the_build_backend_with_hashes():
    pins = locked()
    assert all(hashes >= 1 for _, hashes in pins.values())
    requirement_lines = [line for line in LOCK.read_text().splitlines() if re.match(r"[a-z0-9]", line)]
    assert len(requirement_lines) == len(pins)  # every requirement is `name==version` with hashes
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [Requirement(text) for text in project["project"]["dependencies"]]
    wanted += [Requirement(text) for text in project["build-system"]["requires"]]
    for requirement in wanted:
        name = re.sub(r"[._]", "-", requirement.name.lower())
        assert name in pins, f"{name} is not in {LOCK.name}: run scripts/lock-action.sh"
        assert requirement.specifier.contains(pins[name][0]), f"{name} {requirement.specifier}"


@pytest.mark.network
def test_the_actions_install_step_installs_the_lock_into_a_fresh_venv(tmp_path):
    """The step as the runner runs it (bash -eo pipefail), from PyPI through the configured proxy."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (shim / "python").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shim}:/usr/bin:/bin",
        "GITHUB_ACTION_PATH": str(ROOT),
        "RUNNER_TEMP": str(tmp_path),
    }
    env.pop("VIRTUAL_ENV", None)
    steps = yaml.safe_load(ACTION.read_text())["runs"]["steps"]
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", install_step(steps)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    venv = tmp_path / "actsmith-venv" / "bin"
    check = subprocess.run([str(venv / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    help_text = subprocess.run(
        [str(venv / "actsmith"), "ci", "--help"], capture_output=True, text=True, env={"COLUMNS": "200"}
    )
    assert help_text.returncode == 0 and "--allow-workflow-changes" in help_text.stdout  # this checkout's


def test_the_example_workflow_asks_for_the_least_and_runs_one_at_a_time_per_issue():
    _, workflow = docs_workflow()
    # actions: read lets a review round fetch the previous round's artifact; never `workflows`.
    assert workflow["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "issues": "write",
        "actions": "read",
    }
    group = workflow["concurrency"]["group"]
    assert "github.event.issue.number" in group and "github.event.pull_request.number" in group
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {
        "issues",
        "issue_comment",
        "pull_request_review_comment",
        "pull_request_review",
        "workflow_dispatch",
    }
    assert "task" in triggers["workflow_dispatch"]["inputs"]
    steps = workflow["jobs"]["actsmith"]["steps"]
    checkout = next(step for step in steps if step["uses"].startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False

"""Setup detection and the host network settings setup gets, on fixture trees (no Docker)."""

from __future__ import annotations

import json

import pytest

from agent_cli.setup import host_network, plan_setup
from agent_cli.setup.network import CA_IN_CONTAINER
from agent_cli.testing.parsers import failure_cause

PYPROJECT_WITH_EXTRAS = """
[project]
name = "demo"
version = "1"
[project.optional-dependencies]
docs = ["sphinx"]
dev = ["ruff"]
tests = ["pytest", "hypothesis"]
"""


def tree(tmp_path, files: dict[str, str]):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return tmp_path


@pytest.mark.parametrize(
    "files, commands, why",
    [
        ({"pyproject.toml": PYPROJECT_WITH_EXTRAS}, ["python -m pip install -e '.[tests]'"], ".[tests]"),
        (
            {"setup.cfg": "[metadata]\nname = d\n[options.extras_require]\ntesting = pytest\n"},
            ["python -m pip install -e '.[testing]'"],
            ".[testing]",
        ),
        (
            {"setup.py": "setup(name='d', extras_require={'dev': ['pytest'], 'yaml': ['pyyaml']})\n"},
            ["python -m pip install -e '.[dev]'"],
            ".[dev]",
        ),
        (
            {
                "setup.py": "setup(name='d')\n",
                "requirements.txt": "six\n",
                "requirements-dev.txt": "pytest\n",
            },
            # setup.py declares no dependencies: requirements.txt holds them
            ["python -m pip install -r requirements.txt -r requirements-dev.txt -e ."],
            "requirements-dev.txt",
        ),
        (
            {"requirements.txt": "requests\n"},
            ["python -m pip install -r requirements.txt"],
            "requirements.txt",
        ),
        (
            {"pyproject.toml": PYPROJECT_WITH_EXTRAS, "uv.lock": ""},
            [
                "python -m pip install -q uv",
                "UV_PROJECT_ENVIRONMENT=$VIRTUAL_ENV uv sync --frozen --inexact --extra tests",
            ],
            "uv.lock",
        ),
        (
            {"pyproject.toml": "[tool.poetry]\nname = 'd'\n", "poetry.lock": ""},
            [
                "python -m pip install -q poetry",
                "POETRY_VIRTUALENVS_CREATE=false poetry install --no-interaction",
            ],
            "poetry.lock",
        ),
        (
            {"package.json": json.dumps({"devDependencies": {"jest": "1"}}), "package-lock.json": "{}"},
            ["actsmith_need npm 'nodejs npm'", "npm ci"],
            "package-lock.json",
        ),
        (
            {"package.json": json.dumps({"dependencies": {"a": "1"}}), "yarn.lock": ""},
            ["actsmith_need npm 'nodejs npm'", "npm install -g yarn", "yarn install --frozen-lockfile"],
            "yarn.lock",
        ),
        ({"go.mod": "module x\n"}, ["actsmith_need go golang-go", "go mod download"], "Go"),
        ({"Cargo.toml": "[package]\nname = 'x'\n"}, ["actsmith_need cargo cargo", "cargo fetch"], "Rust"),
    ],
    ids=[
        "extras",
        "setup.cfg",
        "setup.py",
        "requirements-beside",
        "requirements-only",
        "uv",
        "poetry",
        "npm",
        "yarn",
        "go",
        "cargo",
    ],
)
def test_setup_is_detected_per_ecosystem_with_its_reason(tmp_path, files, commands, why):
    plan = plan_setup(None, tree(tmp_path, files))
    assert list(plan.commands) == commands
    assert plan.reason.startswith("detected:") and why in plan.reason
    assert set(files) <= set(plan.manifests)  # each manifest keys the environment


def test_node_modules_is_a_layer_and_ecosystems_add_up(tmp_path):
    files = {"package.json": json.dumps({"dependencies": {"a": "1"}}), "requirements.txt": "six\n"}
    plan = plan_setup(None, tree(tmp_path, files), "npm test")  # tests that need Node
    assert plan.commands[0] == "python -m pip install -r requirements.txt" and "npm install" in plan.commands
    assert plan.layers == ("node_modules",)


def test_configured_and_turned_off_setups_are_taken_as_they_are(tmp_path):
    root = tree(tmp_path, {"pyproject.toml": PYPROJECT_WITH_EXTRAS})
    configured = plan_setup(("make deps",), root)
    assert configured.commands == ("make deps",) and configured.reason == "configured (setup)"
    off = plan_setup((), root)
    assert off.empty and "turned off" in off.reason
    nothing = plan_setup(None, tree(tmp_path / "empty", {"README.md": "hi"}))
    assert nothing.empty and "no dependency manifest" in nothing.reason


# ------------------------------------------------------------------------------------- host network


def test_the_host_ca_proxy_and_index_reach_setup_without_credentials_unless_allowed(tmp_path):
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(
        "[global]\nindex-url = https://bob:hunter22@pypi.corp.example/simple\ncert = /host/only/ca.pem\n"
    )
    environ = {
        "HOME": str(home),
        "SSL_CERT_FILE": str(ca),
        "HTTPS_PROXY": "http://alice:s3cret-pass@proxy.corp.example:3128",
        "no_proxy": "localhost,.corp.example",
        "PIP_FIND_LINKS": "/opt/wheels",  # a folder of the host: means nothing in a container
    }
    network = host_network(environ)
    env = network.environment
    assert network.mounts == {str(ca.resolve()): CA_IN_CONTAINER}
    for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"):
        assert env[name] == CA_IN_CONTAINER
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://proxy.corp.example:3128"
    assert env["NO_PROXY"] == "localhost,.corp.example"
    assert env["PIP_INDEX_URL"] == "https://pypi.corp.example/simple"
    assert "PIP_FIND_LINKS" not in env
    assert set(network.withheld) == {"HTTPS_PROXY", "PIP_INDEX_URL"}
    assert set(network.secrets) == {"alice:s3cret-pass", "bob:hunter22"}
    allowed = host_network(environ, credentials=True).environment
    assert allowed["HTTPS_PROXY"] == "http://alice:s3cret-pass@proxy.corp.example:3128"


# ------------------------------------------------------------------------- why a baseline could not run


@pytest.mark.parametrize(
    "output, cause",
    [
        (
            "ImportError while loading conftest '/workspace/conftest.py'.\nconftest.py:3: in <module>\n"
            "    import hypothesis\nE   ModuleNotFoundError: No module named 'hypothesis'\n",
            "ModuleNotFoundError: No module named 'hypothesis'",
        ),
        ("/usr/bin/python3: No module named pytest\n", "No module named pytest"),
        ("sh: 1: jest: not found\n", "sh: 1: jest: not found"),
        (
            "ERROR: file or directory not found: tests\n\nno tests ran in 0.01s\n",
            "ERROR: file or directory not found: tests",
        ),
    ],
)
def test_the_cause_of_a_run_with_no_results_is_one_line(output, cause):
    assert failure_cause(output, 4) == cause


# ----------------------------------------------------------------- what keys an environment image


def test_every_file_setup_reads_that_the_manifests_name_keys_the_environment(tmp_path):
    root = tree(
        tmp_path,
        {
            "requirements.txt": "-r requirements/base.txt\n--constraint=constraints.txt\n-e ./plugins/extra\n",
            "requirements/base.txt": "-rcommon.txt  # relative to this file\nsix\n",
            "requirements/common.txt": "./vendored/lib[fast]\n",
            "constraints.txt": "six<2\n",
            "plugins/extra/pyproject.toml": "[project]\nname = 'extra'\n",
            "vendored/lib/setup.py": "setup()\n",
            "pyproject.toml": (
                "[build-system]\nrequires = []\nbuild-backend = 'backend'\nbackend-path = ['_custom_build']\n"
            ),
            "_custom_build/backend.py": "def build_wheel(*a): ...\n",
        },
    )
    (root / "requirements-outside.txt").write_text("-r ../../etc/passwd\n-r /etc/hostname\n")
    manifests = set(plan_setup(None, root).manifests)
    assert {
        "requirements/base.txt",
        "requirements/common.txt",
        "constraints.txt",
        "plugins/extra/pyproject.toml",
        "vendored/lib/setup.py",
        "_custom_build/backend.py",
    } <= manifests
    assert not any("passwd" in name or "hostname" in name for name in manifests)  # never outside


def test_a_link_in_the_repository_is_read_as_a_link_never_followed_out(tmp_path):
    from agent_cli.setup.inputs import read_input

    secret = tmp_path / "host-secret.txt"
    secret.write_text("host data\n")
    root = tree(tmp_path / "repo", {"requirements.txt": "six\n"})
    (root / "requirements-dev.txt").symlink_to(secret)
    assert read_input(root, "requirements-dev.txt") == b"symlink:" + str(secret).encode()
    assert read_input(root, "../host-secret.txt") == b"(outside the repository)"


def test_a_repository_is_known_by_its_root_commits_and_origin_never_its_path(tmp_path):
    import shutil

    from conftest import git, make_repo

    from agent_cli.setup.environment import repository_identity

    first = make_repo(tmp_path / "a", {"README.md": "project a\n"})
    git(first, "remote", "add", "origin", "https://github.com/example/a.git")
    git(first, "commit", "-q", "--allow-empty", "-m", "later work")  # HEAD moves; the roots do not
    copy = tmp_path / "copy-of-a"
    shutil.copytree(first, copy)
    git(copy, "remote", "set-url", "origin", "https://x-access-token:ghp_s3cret@github.com/example/a.git")
    other = make_repo(tmp_path / "b", {"README.md": "project b\n"})
    identity = repository_identity(first)
    assert repository_identity(copy) == identity and "ghp_s3cret" not in repository_identity(copy)
    assert str(tmp_path) not in identity and "github.com/example/a.git" in identity
    assert repository_identity(other) != identity


def test_the_setup_log_is_never_written_through_a_planted_link(tmp_path):
    from agent_cli.setup.environment import open_log

    repo = tmp_path / "repo"
    (repo / ".actsmith").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    (repo / ".actsmith" / "setup").symlink_to(outside, target_is_directory=True)
    said: list[str] = []
    with open_log(repo, "abc.log", said.append) as log:
        log.write("setup output\n")
    assert (
        list(outside.iterdir()) == [] and (repo / ".actsmith/setup/abc.log").read_text() == "setup output\n"
    )
    assert not (repo / ".actsmith/setup").is_symlink() and "symbolic link" in said[0]
    (repo / ".actsmith/setup/abc.log").unlink()
    (repo / ".actsmith/setup/abc.log").symlink_to(victim)
    with open_log(repo, "abc.log", said.append) as log:
        log.write("again\n")
    assert victim.read_text() == "the user's file\n"
    assert not (repo / ".actsmith/setup/abc.log").is_symlink()


def test_setup_may_not_reach_the_hosts_addresses_except_its_proxy(tmp_path):
    from agent_cli.setup.confine import host_addresses, proxy_addresses

    trie = tmp_path / "fib_trie"  # the shape of Linux's /proc/net/fib_trie
    trie.write_text(
        "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n"
        "     +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.1\n              /32 host LOCAL\n"
        "     |-- 172.17.0.0\n        /16 link UNICAST\n     |-- 172.17.0.1\n        /32 host LOCAL\n"
        "     |-- 192.0.2.2\n        /32 host LOCAL\n     |-- 192.0.2.255\n        /32 link BROADCAST\n"
    )
    assert host_addresses(trie) == {"172.17.0.1", "192.0.2.2"}
    assert proxy_addresses({"HTTPS_PROXY": "http://192.0.2.77:3128"}) == {"192.0.2.77"}
    assert proxy_addresses({"NO_PROXY": "localhost"}) == set()

"""Detected setup on the layouts people have, end to end: real Docker, git, the real CLI, PyPI.

Three repositories laid out as fastapi, celery and django are (file names and kinds of lines from
tests/fixtures/setup_corpus, with small packages in place of their heavy ones) get the requirements
their CI installs for its tests and a baseline that runs. A detected plan that fails falls back to
a narrower one, then to the plain sandbox (`finished_untested`), remembers the failure for the next
run (`--rebuild` retries), and a run stopped by Ctrl-C or SIGTERM during a hanging setup step ends
at once with exit 130 and no container left. Installs go to PyPI through the host's proxy and CA.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import clean_env, make_repo, run_cli, wait_until, write_replay

pytestmark = pytest.mark.docker

SETUPTOOLS_PROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "1.0"
dependencies = [{dependencies}]

[project.optional-dependencies]
all = ["iniconfig"]
docs = ["mkdocs-material==9.7.0"]

[tool.setuptools]
packages = ["{name}"]
"""
USES_THEM = """\
import iniconfig, packaging, six

import {name}


def test_the_dependencies_setup_installed_are_importable():
    assert {name}.NAME == "{name}" and six.PY3 and iniconfig and packaging
"""
INSIDERS = "git+https://${TOKEN}@github.com/squidfunk/mkdocs-material-insiders.git@9.5.30-insiders-4.53.11\n"
CELERY_TOX = (Path(__file__).parent / "fixtures" / "setup_corpus" / "celery" / "tox.ini").read_text()
DJANGO_TOX = (Path(__file__).parent / "fixtures" / "setup_corpus" / "django" / "tox.ini").read_text()

LAYOUTS = {
    # fastapi: requirements-tests.txt (`-e .[all]`, including requirements-docs-tests.txt) beside docs,
    # insiders (sponsor-only git+https with a token) and CI requirements that must not be installed.
    "fastapi": (
        {
            "pyproject.toml": SETUPTOOLS_PROJECT.format(name="fastlike", dependencies=""),
            "requirements.txt": "-e .[all]\n-r requirements-tests.txt\n-r requirements-docs.txt\nplaywright\n",
            "requirements-tests.txt": "-e .[all]\n-r requirements-docs-tests.txt\nsix==1.16.0\n",
            "requirements-docs-tests.txt": "# For mkdocstrings and tests\npackaging\n",
            "requirements-docs.txt": "-e .\n-r requirements-docs-tests.txt\nmkdocs-material==9.7.0\n",
            "requirements-docs-insiders.txt": INSIDERS,
            "requirements-github-actions.txt": "PyGithub>=2.3.0,<3.0.0\nsmokeshow\n",
        },
        ["python -m pip install -r requirements-tests.txt"],
    ),
    # celery: tox.ini's deps (requirements/test.txt, including extras/) and the package reading
    # requirements/default.txt; dev.txt's git+https development heads never installed.
    "celery": (
        {
            "setup.py": (
                "import setuptools\n\nsetuptools.setup(name='celerylike', version='1.0', packages=['celerylike'],\n"
                "    install_requires=open('requirements/default.txt').read().split())\n"
            ),
            "tox.ini": CELERY_TOX,
            "requirements/default.txt": "six==1.16.0\n",
            "requirements/test.txt": "iniconfig\n-r extras/yaml.txt\n",
            "requirements/extras/yaml.txt": "packaging\n",
            "requirements/dev.txt": "git+https://github.com/celery/kombu.git\nvine>=5.0.0\n",
            "requirements/docs.txt": "sphinx_celery>=2.1.1\n-r test.txt\n",
            "requirements/pkgutils.txt": "bumpversion==0.6.0\n",
            "requirements/test-ci-default.txt": "git+https://github.com/celery/kombu.git\n",
        },
        ["python -m pip install -r requirements/test.txt -e ."],
    ),
    # django: tox.ini's py3 deps (`-e .`, tests/requirements/py3.txt); a package.json for the
    # JavaScript tests that must not bring a Node toolchain.
    "django": (
        {
            "pyproject.toml": SETUPTOOLS_PROJECT.format(name="djangolike", dependencies='"six==1.16.0"'),
            "tox.ini": DJANGO_TOX,
            "tests/requirements/py3.txt": "iniconfig\npackaging\n",
            "tests/requirements/postgres.txt": "psycopg[binary]>=3.1.14\n",
            "package.json": json.dumps(
                {
                    "name": "djangolike",
                    "scripts": {"test": "grunt test"},
                    "devDependencies": {"grunt": "^1.6.1"},
                }
            ),
        },
        ["python -m pip install -r tests/requirements/py3.txt -e ."],
    ),
}


def trajectory_run(repo: Path, tmp_path: Path, name: str, *extra: str, env=None, timeout: float = 600):
    replay = write_replay(tmp_path / f"{name}.yaml", ["<execute>finish('looked')</execute>"])
    trajectory = tmp_path / f"{name}.jsonl"
    args = ["run", "look", "--model", f"replay:{replay}", "--trajectory", str(trajectory), *extra]
    return run_cli(args, repo, env=env, timeout=timeout)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_well_known_layout_gets_what_its_ci_installs_and_the_baseline_runs(layout, tmp_path, sandbox_image):
    files, commands = LAYOUTS[layout]
    package = {"fastapi": "fastlike", "celery": "celerylike", "django": "djangolike"}[layout]
    files = {
        **files,
        f"{package}/__init__.py": f"NAME = {package!r}\n",
        "tests/test_it.py": USES_THEM.format(name=package),
        "README.md": f"a project laid out as {layout} is, made by {tmp_path}\n",  # its own root commit
    }
    repo = make_repo(tmp_path / layout, files)
    run = trajectory_run(repo, tmp_path, layout)
    assert run.code == 0, run.stdout + run.stderr
    (setup,) = run.events("setup")
    assert setup["commands"] == commands and setup["detected"] and not setup["failed"]
    assert f"setup: {commands[0]}\n" in run.stderr  # the commands alone, no file-by-file reasons
    choices = {choice["name"]: choice for choice in setup["choices"]}
    assert all(
        not choice["taken"] for name, choice in choices.items() if "docs" in name and "tests" not in name
    )
    assert not any("npm" in line for line in setup["commands"]) and "nodejs" not in run.stderr
    baseline = next(e for e in run.events("tests_run") if e["trigger"] == "baseline")
    assert baseline["counts"]["passed"] == 1 and not baseline["failing"]
    assert run.events("end")[0]["status"] == "finished"


def test_doctor_shows_the_plan_and_why_each_file_was_chosen_or_left_out(tmp_path, sandbox_image):
    files, _ = LAYOUTS["fastapi"]
    repo = make_repo(tmp_path / "fastapi", files)
    replay = write_replay(tmp_path / "r.yaml", ["<execute>finish('x')</execute>"])
    doctor = run_cli(["doctor", "--model", f"replay:{replay}"], repo)
    (line,) = [line for line in doctor.stdout.splitlines() if " setup " in line]
    assert "python -m pip install -r requirements-tests.txt" in line
    assert "requirements-docs-tests.txt (included by requirements-tests.txt)" in line
    assert "requirements-docs-insiders.txt (sponsor-only packages (insiders))" in line
    assert "if it fails: the project alone / the plain sandbox" in line


# ----------------------------------------------------------------------------- when setup fails


def failing_project(tmp_path: Path) -> Path:
    """An installable project whose test requirements cannot install (a package that does not
    exist on the index, a git+https line with a token) but whose tests run without them."""
    return make_repo(
        tmp_path / "r",
        {
            "pyproject.toml": "[project]\nname = 'p'\nversion = '1'\n[build-system]\nrequires = ['setuptools']\n"
            "build-backend = 'setuptools.build_meta'\n[tool.setuptools]\npackages = ['p']\n",
            "p/__init__.py": "VALUE = 1\n",
            "requirements-tests.txt": (
                f"actsmith-no-such-package-{tmp_path.name}==9.9\ngit+https://${{TOKEN}}@github.com/o/private.git\n"
            ),
            "tests/test_p.py": "import p\n\n\ndef test_value():\n    assert p.VALUE == 1\n",
        },
    )


@pytest.mark.timeout(900)
def test_a_failing_detected_plan_falls_back_and_is_remembered_until_rebuild(tmp_path, sandbox_image):
    repo = failing_project(tmp_path)
    first = trajectory_run(repo, tmp_path, "first")
    assert first.code == 0, first.stdout + first.stderr
    (setup,) = first.events("setup")
    full, without_access = (f["command"] for f in setup["failed"])  # each said, then a narrower one
    assert full == "python -m pip install -r requirements-tests.txt -e ."
    assert without_access.startswith("actsmith_without_vcs requirements-tests.txt |")
    assert "exited with code 1" in setup["failed"][0]["detail"] and Path(setup["failed"][0]["log"]).exists()
    # Without the lines needing credentials the file still names a package that does not exist:
    # the project alone installs, and the tests gate the run.
    assert setup["fallback"] == "the project alone" and setup["commands"] == ["python -m pip install -e ."]
    assert first.events("end")[0]["status"] == "finished"
    assert "setup: `python -m pip install -r requirements-tests.txt -e .` exited with code 1" in first.stderr

    second = trajectory_run(repo, tmp_path, "second")
    assert second.code == 0, second.stderr
    (again,) = second.events("setup")
    assert all(f["remembered"] for f in again["failed"]) and again["reused"]
    assert "failed before for these inputs" in second.stderr and "building" not in second.stderr

    retried = trajectory_run(repo, tmp_path, "retried", "--rebuild")
    (rebuilt,) = retried.events("setup")
    assert not any(f["remembered"] for f in rebuilt["failed"]) and "building" in retried.stderr


@pytest.mark.timeout(900)
def test_when_nothing_detected_installs_the_run_goes_on_untested_and_configured_setup_is_exit_2(
    tmp_path, sandbox_image
):
    repo = make_repo(
        tmp_path / "app",
        {
            "requirements.txt": f"actsmith-no-such-package-{tmp_path.name}==9.9\n",
            "tests/test_app.py": "def test_ok():\n    assert True\n",
        },
    )
    run = trajectory_run(repo, tmp_path, "plain")
    assert run.code == 0, run.stdout + run.stderr
    (setup,) = run.events("setup")
    assert setup["image"] == sandbox_image and len(setup["failed"]) == 1
    assert "the run goes on in the plain sandbox" in run.stderr
    assert run.events("end")[0]["status"] == "finished_untested"
    no_tests = trajectory_run(repo, tmp_path, "no-tests", "--no-tests")
    assert no_tests.code == 0 and no_tests.events("end")[0]["status"] == "finished"
    configured = trajectory_run(
        repo, tmp_path, "configured", "--setup", "python -m pip install -r requirements.txt"
    )
    assert (
        configured.code == 2
        and "setup failed: `python -m pip install -r requirements.txt`" in configured.stderr
    )


# ------------------------------------------------------------------------------------- cancelling

# A package index on the setup container's own loopback that accepts connections and never answers:
# pip waits on it until something stops the build.
HANGING_INDEX = """\
import socket, time
server = socket.create_server(("127.0.0.1", 8765))
held = []
while True:
    connection, _ = server.accept()
    held.append(connection)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_hanging_setup_step_stops_on_ctrl_c_or_sigterm_at_once(
    signum, tmp_path, sandbox_image, docker_client
):
    repo = make_repo(tmp_path / "r", {"hanging_index.py": HANGING_INDEX, "app.py": "x = 1\n"})
    hang = (
        "(python3 hanging_index.py &) && sleep 1 && "
        f"python -m pip install --retries 0 --timeout 600 --index-url http://127.0.0.1:8765/simple six  # {tmp_path}"
    )
    replay = write_replay(tmp_path / "r.yaml", ["<execute>finish('never')</execute>"])
    process = subprocess.Popen(
        [sys.executable, "-m", "agent_cli", "run", "x", "--model", f"replay:{replay}", "--setup", hang],
        cwd=repo,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log_folder = repo / ".actsmith" / "setup"

    def pip_is_waiting() -> bool:
        logs = list(log_folder.glob("*.log")) if log_folder.exists() else []
        return any("Looking in indexes" in log.read_text() for log in logs)

    try:
        wait_until(pip_is_waiting, timeout=300, what="pip waiting on the hanging index")
        time.sleep(1)  # pip is inside its request now
        process.send_signal(signum)
        started = time.monotonic()
        stdout, stderr = process.communicate(timeout=60)
        stopped_in = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stdout + stderr
    print(f"stopped {stopped_in:.1f} s after {signal.Signals(signum).name}")
    assert not any(line.startswith("Traceback") for line in stderr.splitlines())
    from agent_cli.sandbox.docker_sandbox import LABEL, OWNER_LABEL
    from agent_cli.setup.environment import ENV_LABEL, REPO_LABEL

    owned = [
        summary
        for summary in docker_client.api.containers(all=True, filters={"label": LABEL})
        if f":{process.pid}:" in (summary.get("Labels") or {}).get(OWNER_LABEL, "")
    ]
    assert owned == []  # the build container and its network gate are gone
    committed = [
        image
        for image in docker_client.images.list(filters={"label": ENV_LABEL})
        if (image.labels or {}).get(REPO_LABEL) == str(repo)
    ]
    assert committed == []  # nothing of the stopped build was kept


@pytest.mark.timeout(900)
def test_a_batch_tries_a_failing_setup_once_for_all_its_tasks(tmp_path, sandbox_image):
    from batch_helpers import act, batch, write_spec

    repo = make_repo(
        tmp_path / "app",
        {
            "requirements.txt": f"actsmith-no-such-package-{tmp_path.name}==9.9\n",
            "tests/test_app.py": "def test_ok():\n    assert True\n",
        },
    )
    write_replay(tmp_path / "look.yaml", [act("finish('looked')")])
    tasks = [{"id": f"t{n}", "repo": "app", "task": "look", "model": "replay:look.yaml"} for n in range(3)]
    spec = write_spec(tmp_path / "spec.yaml", {"name": "once", "tasks": tasks})
    run = batch(["run", str(spec), "-j", "2", "--out", str(tmp_path / "out")], tmp_path, timeout=600)
    assert run.code == 0, run.stdout + run.stderr
    assert len(list((repo / ".actsmith" / "setup").glob("*.log"))) == 1  # one build, tried once
    for n in range(3):
        trajectory = tmp_path / "out" / "tasks" / f"t{n}" / "trajectory.jsonl"
        setup = [
            json.loads(line) for line in trajectory.read_text().splitlines() if '"event": "setup"' in line
        ]
        assert setup[0]["failed"][0]["remembered"], setup


def test_a_setup_step_silent_for_the_idle_timeout_is_stopped_with_its_command_named(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "r", {"app.py": "x = 1\n"})
    silent = f"echo fetching; sleep 600  # {tmp_path}"
    run = trajectory_run(repo, tmp_path, "idle", "--setup", silent, "--setup-idle-timeout", "10")
    assert run.code == 2, run.stdout + run.stderr
    (error,) = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert f"`{silent}` printed nothing for 10 s (setup_idle_timeout)" in error

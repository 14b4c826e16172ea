"""Setup plans for the manifest layouts of well-known Python projects (no Docker).

tests/fixtures/setup_corpus/<project>/ recreates each project's file names and the kinds of lines
its files hold (not its code), read from the project's repository. For each, the plan must match
what the project's own CI installs for its tests; the file that says so is cited beside it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent_cli.setup import plan_setup
from agent_cli.setup.detect import TOOLCHAIN_PRELUDE

CORPUS = Path(__file__).parent / "fixtures" / "setup_corpus"
UV_SYNC = "UV_PROJECT_ENVIRONMENT=$VIRTUAL_ENV uv sync --frozen --inexact"

# project: (the test command its CI runs, the commands expected, files that must be left out)
EXPECTED = {
    # fastapi .github/workflows/test.yml: `uv pip install -r requirements-tests.txt` (which says
    # `-e .[all]` and includes requirements-docs-tests.txt); never the sponsor-only insiders file.
    "fastapi": (
        "python -m pytest tests",
        ["python -m pip install -r requirements-tests.txt"],
        ["requirements-docs-insiders.txt", "requirements-docs.txt", "requirements-github-actions.txt"],
    ),
    # celery tox.ini [testenv] deps (run by .github/workflows/python-package.yml through tox):
    # requirements/test.txt and the package; pkgutils (release), test-ci-* (CI), docs and
    # requirements/dev.txt (git+https development heads) stay out.
    "celery": (
        "python -m pytest t/unit",
        ["python -m pip install -r requirements/test.txt -e ."],
        ["requirements/dev.txt", "requirements/pkgutils.txt", "requirements/test-ci-default.txt"],
    ),
    # django tox.ini [testenv] deps for py3 (`-e .`, `-rtests/requirements/py3.txt`), as
    # .github/workflows/tests.yml installs; its package.json serves the JavaScript tests only.
    "django": (
        "python tests/runtests.py",
        ["python -m pip install -r tests/requirements/py3.txt -e ."],
        ["tests/requirements/postgres.txt", "tests/requirements/mysql.txt", "package.json"],
    ),
    # flask pyproject.toml [tool.tox.env_run_base] dependency_groups = ["tests"] with tox-uv's
    # lock runner (.github/workflows/tests.yaml: `uv run --locked ... tox run`).
    "flask": (
        "python -m pytest",
        ["python -m pip install -q uv", f"{UV_SYNC} --group tests"],
        ["group docs", "group typing", "group pre-commit"],
    ),
    # flask 3.0 tox.ini [testenv] deps = -r requirements/tests.txt (the pip-compiled lock, not
    # tests.in), then the package.
    "flask-3.0": (
        "python -m pytest",
        ["python -m pip install -r requirements/tests.txt -e ."],
        ["requirements/docs.txt", "requirements/typing.txt", "requirements/tests.in"],
    ),
    # requests .github/workflows/run-tests.yml runs `make`: Makefile init is
    # `pip install -r requirements-dev.txt` (tox.ini [testenv] deps too), which says `-e .[socks]`.
    "requests": ("python -m pytest tests", ["python -m pip install -r requirements-dev.txt"], []),
    # scrapy tox.ini [testenv] deps = {[test-requirements]deps} plus pytest, and the package.
    "scrapy": (
        "python -m pytest",
        [
            "python -m pip install attrs 'coverage >= 7.10.6' 'pexpect >= 4.8.0' 'pyftpdlib >= 2.0.1' "
            "pygments pytest 'pytest-cov >= 7.0.0' pytest-rerunfailures pytest-timeout pytest-xdist "
            "'sybil >= 1.3.0' 'pytest-twisted >= 1.14.3' 'pytest >= 8.4.1' -e ."
        ],
        [],
    ),
    # tornado tox.ini [testenv] for py3x-full (.github/workflows/test.yml runs `tox -e py3XX-full`):
    # the `full:` deps and the package; requirements.txt is for the docs and lint envs only.
    "tornado": (
        "python -m tornado.test.runtests",
        ["python -m pip install pycurl twisted pycares -e ."],
        ["requirements.txt", "requirements.in"],
    ),
    # attrs 23.2.0 tox.ini [testenv] extras = `tests: tests` for py3x-tests.
    "attrs": ("python -m pytest", ["python -m pip install -e '.[tests]'"], []),
    # httpx scripts/install (run by .github/workflows/test-suite.yml): `pip install -r requirements.txt`,
    # which says `-e .[brotli,cli,http2,socks,zstd]`.
    "httpx": ("python -m pytest", ["python -m pip install -r requirements.txt"], []),
    # pydantic .github/workflows/ci.yml test job: `uv sync --all-packages --group testing-extra`
    # (uv's default group dev holds pytest); docs, linting, build groups stay out.
    "pydantic": (
        "python -m pytest",
        ["python -m pip install -q uv", f"{UV_SYNC} --all-packages --group testing-extra"],
        ["group docs", "group linting", "group build", "group typechecking"],
    ),
}


@pytest.mark.parametrize("project", sorted(EXPECTED))
def test_the_plan_is_what_the_projects_own_ci_installs_for_its_tests(project):
    test_command, commands, left_out = EXPECTED[project]
    plan = plan_setup(None, CORPUS / project, test_command)
    assert list(plan.commands) == commands, plan.reason
    assert plan.detected and plan.reason.startswith("detected: Python")
    choices = {choice.name: choice for choice in plan.choices}
    for name in left_out:
        assert not choices[name].taken and choices[name].why, name  # said, with why
    assert all(choice.why for choice in plan.choices)
    assert plan.fallbacks  # a narrower plan to try before the plain sandbox
    assert not any("npm" in command for command in plan.commands)


def test_the_corpus_covers_every_project_named():
    assert {p.name for p in CORPUS.iterdir()} == set(EXPECTED)


def test_a_file_a_chosen_one_includes_is_followed_not_listed_again():
    plan = plan_setup(None, CORPUS / "fastapi", "python -m pytest")
    (choice,) = [c for c in plan.choices if c.name == "requirements-docs-tests.txt"]
    assert choice.taken and choice.why == "included by requirements-tests.txt"
    assert "requirements-docs-tests.txt" not in " ".join(plan.commands)
    assert "requirements-docs-tests.txt" in plan.manifests  # still keys the environment


def test_a_python_project_gets_node_only_when_its_tests_need_it():
    django = CORPUS / "django"
    assert not any("npm" in c for c in plan_setup(None, django, "python tests/runtests.py").commands)
    with_node = plan_setup(None, django, "npm test")
    assert "npm install" in with_node.commands and with_node.layers == ("node_modules",)


def test_the_narrower_plans_leave_out_vcs_and_credential_lines_then_keep_only_the_project(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\nversion = '1'\n")
    (root / "requirements-tests.txt").write_text(
        "-r requirements/base.txt\npytest\ngit+https://${TOKEN}@github.com/org/private.git\n"
    )
    (root / "requirements").mkdir()
    (root / "requirements" / "base.txt").write_text(
        "-c ../constraints.txt\nsix  # a comment\nhg+https://hg.example/repo#egg=x\n"
    )
    (root / "constraints.txt").write_text("six<2\n")
    plan = plan_setup(None, root, "python -m pytest")
    assert plan.commands == ("python -m pip install -r requirements-tests.txt -e .",)
    without, alone = plan.fallbacks
    assert without.commands == (
        "actsmith_without_vcs requirements-tests.txt | python -m pip install -r /dev/stdin -e .",
    )
    assert alone.commands == ("python -m pip install -e .",) and "the project alone" in alone.reason
    # What the fallback's pip reads: the files flattened, constraint paths made absolute, the lines
    # that need a VCS host or credentials left out (and said).
    shown = subprocess.run(
        ["sh", "-c", TOOLCHAIN_PRELUDE + "\nactsmith_without_vcs requirements-tests.txt"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.splitlines() == [f"-c {root / 'constraints.txt'}", "six", "pytest"]
    assert "left out: git+https://${TOKEN}@github.com/org/private.git" in shown.stderr


def test_an_aggregate_requirements_txt_that_brings_the_docs_is_not_chosen_beside_the_tests(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "setup.py").write_text(
        "from setuptools import setup\n\nsetup(name='p')\n"
    )  # no dependencies named
    (root / "requirements.txt").write_text("-e .[all]\n-r requirements-tests.txt\n-r requirements-docs.txt\n")
    (root / "requirements-tests.txt").write_text("-e .[all]\npytest\n")
    (root / "requirements-docs.txt").write_text("mkdocs\n")
    plan = plan_setup(None, root, "python -m pytest")
    assert plan.commands == ("python -m pip install -r requirements-tests.txt",)


def test_poetry_and_uv_install_the_test_groups_never_docs_or_release(tmp_path):
    poetry = tmp_path / "poetry"
    poetry.mkdir()
    (poetry / "poetry.lock").write_text("")
    (poetry / "pyproject.toml").write_text(
        "[tool.poetry]\nname = 'p'\n[tool.poetry.group.test.dependencies]\npytest = '*'\n"
        "[tool.poetry.group.docs.dependencies]\nsphinx = '*'\n[tool.poetry.group.release.dependencies]\ntwine = '*'\n"
    )
    plan = plan_setup(None, poetry, "python -m pytest")
    assert (
        plan.commands[-1]
        == "POETRY_VIRTUALENVS_CREATE=false poetry install --no-interaction --only main,test"
    )
    assert {c.name: c.taken for c in plan.choices} == {
        "group test": True,
        "group docs": False,
        "group release": False,
    }
    uv = tmp_path / "uv"
    uv.mkdir()
    (uv / "uv.lock").write_text("")
    (uv / "pyproject.toml").write_text(
        "[project]\nname = 'p'\nversion = '1'\n[dependency-groups]\ndev = ['ruff']\ntest = ['pytest']\n"
        "docs = ['sphinx']\npublish = ['twine']\n"
    )
    assert plan_setup(None, uv, "python -m pytest").commands[-1] == f"{UV_SYNC} --group test"

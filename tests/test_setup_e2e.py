"""Environment setup end to end: real Docker, real git, the real CLI, a real project from PyPI.

The attrs test needs the package registries (through the host's proxy and CA, as every test here
that installs anything); the others install nothing from the network.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import CliRun, clean_env, git, make_repo, run_cli, write_replay

pytestmark = pytest.mark.docker

SDIST_CACHE = Path.home() / ".cache" / "actsmith-tests" / "sdists"
BREAK_HAS = (
    "<execute>\nreplace('src/attr/_funcs.py', '    if attrs is not None:\\n        return True', "
    "'    if attrs is not None:\\n        return False')\nfinish('simplified has()')\n</execute>"
)
RESTORE_HAS = (
    "<execute>\nreplace('src/attr/_funcs.py', '    if attrs is not None:\\n        return False', "
    "'    if attrs is not None:\\n        return True')\nfinish('put has() back')\n</execute>"
)


def fetch_sdist(name: str, version: str) -> Path:
    """A source distribution from PyPI through pip (the host's proxy and CA), with retries, cached."""
    SDIST_CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(SDIST_CACHE.glob(f"{name}-{version}.tar.gz"))
    for attempt in range(3):
        if found:
            return found[0]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--retries", "5"]
            + ["-d", str(SDIST_CACHE), f"{name}=={version}"],
            capture_output=True,
            check=attempt == 2,
        )
        found = sorted(SDIST_CACHE.glob(f"{name}-{version}.tar.gz"))
        time.sleep(2 * attempt)
    return found[0]


@pytest.fixture(scope="module")
def attrs_repo(tmp_path_factory) -> Path:
    sdist = fetch_sdist("attrs", "23.2.0")
    root = tmp_path_factory.mktemp("attrs") / "attrs"
    root.mkdir()
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            member.name = member.name.split("/", 1)[1] if "/" in member.name else ""
        archive.extractall(root, members=[m for m in archive.getmembers() if m.name], filter="data")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "attrs 23.2.0")
    return root


def run_attrs(repo: Path, tmp_path: Path, replies: list[str], name: str) -> CliRun:
    replay = write_replay(tmp_path / f"{name}.yaml", replies)
    trajectory = tmp_path / f"{name}.jsonl"
    args = ["run", "simplify attr.has", "--model", f"replay:{replay}", "--trajectory", str(trajectory)]
    # A few of attrs' test modules: the whole suite would take minutes per run on 2 cores.
    tests = "python3 -m pytest -q tests/test_funcs.py tests/test_filters.py"
    return run_cli([*args, "--test-cmd", tests], repo, timeout=900)


@pytest.mark.timeout(900)  # two runs with a baseline each, on a shared 2-core machine
def test_a_real_project_gets_its_dependencies_and_the_gate_catches_a_broken_function(attrs_repo, tmp_path):
    first = run_attrs(attrs_repo, tmp_path, [BREAK_HAS, RESTORE_HAS], "first")
    assert first.code == 0, first.stdout + first.stderr
    (setup,) = first.events("setup")
    assert setup["reason"].startswith("detected:") and ".[tests]" in setup["reason"]
    assert setup["commands"] == ["python -m pip install -e '.[tests]'"]
    assert "setup: python -m pip install -e '.[tests]'" in first.stderr  # said, with the reason
    baseline = next(e for e in first.events("tests_run") if e["trigger"] == "baseline")
    assert baseline["format"] == "junit" and baseline["counts"]["passed"] > 40 and not baseline["failing"]
    caught = first.events("observation")[0]["text"]
    assert "finish() was not accepted" in caught and "TestHas::test_positive" in caught  # hypothesis imported
    assert first.events("result")[0]["status"] == "finished"
    assert git(attrs_repo, "status", "--porcelain") == ""  # put back, and nothing of setup in the repo
    second = run_attrs(attrs_repo, tmp_path, ["<execute>finish('looked')</execute>"], "second")
    assert second.code == 0, second.stderr
    (again,) = second.events("setup")
    assert again["reused"] and again["image"] == setup["image"] and "building" not in second.stderr


# ----------------------------------------------------------------------- inputs, failures, proxies


INSTALL_FROM_REQUIREMENTS = (
    "python -c \"import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'pinned.py')"
    ".write_text('VERSION = ' + repr(open('requirements.txt').read().strip()))\""
)


def test_a_changed_manifest_builds_a_new_environment_and_the_same_one_is_reused(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "r", {"requirements.txt": "pinned==1\n", "app.py": "x = 1\n"})
    install = f"{INSTALL_FROM_REQUIREMENTS}  # {tmp_path}"  # new to this test session: built, not reused
    replay = write_replay(
        tmp_path / "r.yaml", ["<execute>\nimport pinned\nprint(pinned.VERSION)\nfinish('ok')\n</execute>"] * 3
    )
    images = []
    for requirement in ("pinned==1", "pinned==1", "pinned==2"):
        (repo / "requirements.txt").write_text(requirement + "\n")
        trajectory = tmp_path / f"t-{len(images)}.jsonl"
        run = run_cli(
            [
                "run",
                "x",
                "--model",
                f"replay:{replay}",
                "--setup",
                install,
                "--trajectory",
                str(trajectory),
            ],
            repo,
        )
        assert run.code == 0, run.stderr
        (setup,) = run.events("setup")
        images.append((setup["image"], setup["reused"]))
        assert requirement in run.events("observation")[0]["text"]  # the agent imports what setup made
    assert images[0][0] == images[1][0] and not images[0][1] and images[1][1]
    assert images[2][0] != images[0][0] and not images[2][1]


def test_a_failing_setup_is_exit_2_with_the_command_and_its_output_and_the_repo_untouched(
    tmp_path, sandbox_image
):
    repo = make_repo(tmp_path / "r", {"requirements.txt": "definitely-not-a-package-actsmith==9.9\n"})
    (repo / "notes.txt").write_text("uncommitted work\n")
    before = tree_digest(repo)
    failing = "echo fetching the dependencies; echo 'ERROR: No matching distribution found' >&2; exit 7"
    replay = write_replay(tmp_path / "r.yaml", ["<execute>finish('never')</execute>"])
    run = run_cli(["run", "x", "--model", f"replay:{replay}", "--setup", failing], repo)
    assert run.code == 2, run.stdout + run.stderr
    error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert f"`{failing}` exited with code 7" in error[0] and "No matching distribution found" in error[0]
    assert "ERROR: No matching distribution found" in run.stderr  # the tail, shown above it
    assert tree_digest(repo) == before


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if ".git" not in p.parts and ".actsmith" not in p.parts):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_proxy_and_ca_reach_setup_only_and_credentials_only_when_allowed(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "r", {"app.py": "x = 1\n"})
    show = (
        'echo HTTPS_PROXY=$HTTPS_PROXY; echo PIP_CERT=$PIP_CERT; test -s "$SSL_CERT_FILE" && echo ca-readable'
        f"  # {tmp_path}"
    )
    names = [
        "HTTPS_PROXY",
        "https_proxy",
        "SSL_CERT_FILE",
        "PIP_CERT",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
    ]
    probe = f"<execute>\nimport os\nprint([k for k in {names!r} if k in os.environ])\nfinish('x')\n</execute>"
    replay = write_replay(tmp_path / "r.yaml", [probe])
    env = clean_env(HTTPS_PROXY="http://agent:s3cret-proxy-pass@127.0.0.1:9")
    trajectory = tmp_path / "t.jsonl"
    run = run_cli(
        ["run", "x", "--model", f"replay:{replay}", "--setup", show, "--trajectory", str(trajectory)],
        repo,
        env=env,
    )
    assert run.code == 0, run.stderr
    (setup,) = run.events("setup")
    log = Path(setup["log"]).read_text()
    assert "HTTPS_PROXY=http://127.0.0.1:9" in log  # the proxy, its credentials withheld
    assert "PIP_CERT=/etc/actsmith/ca-certificates.crt" in log and "ca-readable" in log
    assert "--setup-credentials" in run.stderr  # the user is told what was withheld
    assert "[]" in run.events("observation")[0]["text"]  # nothing of it in the agent's container
    assert (
        "s3cret-proxy-pass" not in trajectory.read_text()
        and "s3cret-proxy-pass" not in run.stdout + run.stderr
    )
    allowed = run_cli(
        ["run", "x", "--model", f"replay:{replay}", "--setup", show + " # allowed", "--setup-credentials"],
        repo,
        env=env,
    )
    assert allowed.code == 0, allowed.stderr
    allowed_log = sorted((repo / ".actsmith" / "setup").glob("*.log"), key=lambda p: p.stat().st_mtime)[-1]
    assert "HTTPS_PROXY=http://agent:s3cret-proxy-pass@127.0.0.1:9" in allowed_log.read_text()


def test_in_repository_folders_setup_fills_survive_the_mount(tmp_path, sandbox_image):
    repo = make_repo(
        tmp_path / "web", {"package.json": json.dumps({"name": "web", "dependencies": {"leftpad": "1"}})}
    )
    fill = "mkdir -p node_modules/leftpad && echo 'module.exports = 42' > node_modules/leftpad/index.js"
    read = "<execute>\nprint(open('node_modules/leftpad/index.js').read())\nfinish('read it')\n</execute>"
    replay = write_replay(tmp_path / "r.yaml", [read])
    trajectory = tmp_path / "t.jsonl"
    run = run_cli(
        ["run", "x", "--model", f"replay:{replay}", "--setup", fill, "--trajectory", str(trajectory)], repo
    )
    assert run.code == 0, run.stderr
    assert (
        "module.exports = 42"
        in next(e for e in json_lines(trajectory) if e["event"] == "observation")["text"]
    )
    assert not (repo / "node_modules").exists()  # the user's checkout got none of it


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------- a baseline that cannot run


def test_a_baseline_that_cannot_run_is_said_plainly_and_the_run_is_untested(tmp_path, sandbox_image):
    repo = make_repo(
        tmp_path / "r",
        {
            "conftest.py": "import hypothesis_is_not_installed\n",
            "calc.py": "def add(a, b):\n    return a + b\n",
            "tests/test_calc.py": "from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
        },
    )
    replies = [
        "<execute>\nreplace('calc.py', 'a + b', 'a - b')\n</execute>",
        "<execute>run_tests()</execute>",  # waits for the baseline
        "<execute>finish('changed add')</execute>",
    ]
    replay = write_replay(tmp_path / "r.yaml", replies)
    trajectory = tmp_path / "t.jsonl"
    run = run_cli(
        ["run", "x", "--model", f"replay:{replay}", "--no-setup", "--trajectory", str(trajectory)], repo
    )
    assert run.code == 0, run.stderr
    cause = "ModuleNotFoundError: No module named 'hypothesis_is_not_installed'"
    assert f"tests: before the run, they could not run: {cause}" in run.stderr
    calls = [e for e in json_lines(trajectory) if e["event"] == "model_call"]
    last_prompt = calls[-1]["messages"][-1]["content"]
    assert cause in last_prompt and "not gating finish()" in last_prompt
    (end,) = [e for e in json_lines(trajectory) if e["event"] == "end"]
    assert end["status"] == "finished_untested"
    summary = " ".join(run.stdout.replace("│", " ").split())
    assert "finished_untested" in summary and cause in summary


def test_a_missing_api_key_is_said_before_any_setup_runs(tmp_path, sandbox_image):
    repo = make_repo(tmp_path / "r", {"requirements.txt": f"# {tmp_path}\nsix\n"})
    run = run_cli(["run", "x", "--model", "gpt-4o-mini"], repo, timeout=120)
    assert run.code == 2
    assert run.stderr.strip().count("\n") == 0 and "OPENAI_API_KEY" in run.stderr  # one line, alone
    assert not (repo / ".actsmith" / "setup").exists()  # no setup was started for nothing


def test_sandbox_setup_builds_on_demand_and_prune_removes_what_a_new_manifest_superseded(
    tmp_path, sandbox_image
):
    repo = make_repo(tmp_path / "r", {"requirements.txt": "pinned==1\n"})
    (repo / ".actsmith.toml").write_text(
        f"setup = [{json.dumps(INSTALL_FROM_REQUIREMENTS + f'  # {tmp_path}')}]\n"
    )
    first = run_cli(["sandbox", "setup"], repo)
    assert first.code == 0, first.stderr
    old = first.stdout.strip().splitlines()[-1]
    assert old.startswith("actsmith-env:") and f"log: {repo}/.actsmith/setup/" in first.stderr
    again = run_cli(["sandbox", "setup"], repo)
    assert again.stdout.strip().splitlines()[-1] == old and "reusing" in again.stderr
    (repo / "requirements.txt").write_text("pinned==2\n")
    new = run_cli(["sandbox", "setup"], repo).stdout.strip().splitlines()[-1]
    assert new != old
    pruned = run_cli(["sandbox", "prune"], repo)
    assert pruned.code == 0 and old in pruned.stdout and new not in pruned.stdout
    images = subprocess.run(["docker", "images", "-q", old], capture_output=True, text=True).stdout
    assert images.strip() == ""
    current = subprocess.run(["docker", "images", "-q", new], capture_output=True, text=True).stdout
    assert current.strip() != ""

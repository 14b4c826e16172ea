"""What the `actsmith ci` end-to-end tests share: a checkout with a bare `origin` as a workflow's
actions/checkout leaves it, `actsmith ci` run in it through the real CLI with an event payload, and
what the run left (outputs, step summary, trajectory), checked for leaked secrets every time."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import clean_env, git, make_repo, write_replay
from github_stub import GitHubStub

from agent_cli.trajectory import read_trajectory

FIXTURES = Path(__file__).parent / "fixtures" / "github"
REPOSITORY = "octo-org/hello-world"
TOKEN = "ghs_ciTokenThatMustStayOnTheHost0123456789"
MODEL_KEY = "sk-modelKeyThatMustStayOnTheHost0123456789"
SECRETS = (TOKEN, MODEL_KEY, base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode())
APP = "def greet():\n    return 'hi'\n"
TEST_APP = "from app import greet\n\n\ndef test_greet():\n    assert greet().startswith('h')\n"
HELLO = "<execute>\nreplace('app.py', \"return 'hi'\", \"return 'hello'\")\nfinish('greet() now says hello')\n</execute>"


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    trajectory: list[dict[str, Any]]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]

    def observations(self) -> list[str]:
        return [e["text"] for e in self.trajectory if e["event"] == "observation"]

    def prompts(self) -> str:
        return json.dumps([e["messages"] for e in self.trajectory if e["event"] == "model_call"])


class Actions:
    """A checkout with `origin`, as a workflow's actions/checkout leaves it, and `actsmith ci` run in it."""

    def __init__(self, tmp_path: Path, stub: GitHubStub):
        self.tmp, self.stub, self.runs = tmp_path, stub, 0
        self.origin = tmp_path / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.origin)], check=True)
        git(self.origin, "config", "receive.denyNonFastForwards", "true")  # a force push would be refused
        self.checkout = make_repo(tmp_path / "checkout", {"app.py": APP, "tests/test_app.py": TEST_APP})
        git(self.checkout, "remote", "add", "origin", str(self.origin))
        git(self.checkout, "push", "-q", "origin", "main")
        # What actions/checkout writes unless told persist-credentials: false.
        basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        git(self.checkout, "config", "http.https://github.com/.extraheader", f"AUTHORIZATION: basic {basic}")
        self.main = git(self.checkout, "rev-parse", "main").strip()

    def event(self, name: str) -> dict[str, Any]:
        return json.loads((FIXTURES / f"{name}.json").read_text())

    def run(self, event_name: str, payload: dict[str, Any], replies: list[str], *extra: str) -> Ran:
        self.runs += 1
        folder = self.tmp / f"job-{self.runs}"
        folder.mkdir()
        event = folder / "event.json"
        event.write_text(json.dumps(payload))
        summary, outputs = folder / "summary.md", folder / "outputs.txt"
        env = clean_env(
            GITHUB_ACTIONS="true",
            GITHUB_EVENT_NAME=event_name,
            GITHUB_EVENT_PATH=str(event),
            GITHUB_REPOSITORY=REPOSITORY,
            GITHUB_API_URL=self.stub.url,
            GITHUB_SERVER_URL="https://github.com",
            GITHUB_TOKEN=TOKEN,
            GITHUB_RUN_ID=str(4200 + self.runs),
            GITHUB_RUN_ATTEMPT="1",
            GITHUB_STEP_SUMMARY=str(summary),
            GITHUB_OUTPUT=str(outputs),
            GITHUB_WORKSPACE=str(self.checkout),
            ACTSMITH_MODEL=f"replay:{write_replay(folder / 'replay.yaml', replies)}",
            ACTSMITH_API_KEY=MODEL_KEY,
            OPENAI_API_KEY=MODEL_KEY,
        )
        proc = subprocess.run(
            [sys.executable, "-m", "agent_cli", "ci", *extra],
            cwd=self.checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        values = (
            dict(line.split("=", 1) for line in outputs.read_text().splitlines()) if outputs.exists() else {}
        )
        run_dir = Path(values["run-dir"]) if values.get("run-dir") else None
        trajectory = read_trajectory(run_dir / "trajectory.jsonl") if run_dir else []
        ran = Ran(
            proc.returncode,
            proc.stdout,
            proc.stderr,
            values,
            summary.read_text() if summary.exists() else "",
            trajectory,
        )
        self.assert_no_secret_leaked(ran)
        return ran

    def assert_no_secret_leaked(self, ran: Ran) -> None:
        """Neither the token nor the model key in anything the run wrote or sent."""
        texts = [ran.stdout, ran.stderr, ran.summary, json.dumps(ran.outputs)]
        texts += [json.dumps(request.body) for request in self.stub.requests]
        runs = self.checkout / ".actsmith"
        texts += [path.read_text(errors="replace") for path in runs.rglob("*") if path.is_file()]
        for text in texts:
            for secret in SECRETS:
                assert secret not in text

    def pull_head(self, number: int, branch: str) -> str:
        """What GitHub does when a pull request's branch moves: refs/pull/N/head and the pull
        request's head follow it."""
        tip = git(self.origin, "rev-parse", f"refs/heads/{branch}").strip()
        git(self.origin, "update-ref", f"refs/pull/{number}/head", tip)
        self.stub.pulls[number]["head"]["sha"] = tip
        return tip

    def origin_refs(self) -> dict[str, str]:
        out = git(self.origin, "for-each-ref", "--format=%(refname) %(objectname)")
        return dict(line.split(" ")[::-1][::-1] for line in out.splitlines()) if out else {}

    def origin_file(self, ref: str, path: str) -> str:
        return git(self.origin, "show", f"{ref}:{path}")

    def parent(self, ref: str) -> str:
        return git(self.origin, "rev-parse", f"{ref}^").strip()


CALLED = ["<execute>\nprint('the model was called')\n</execute>"]


def assert_started_nothing(actions: Actions, stub: GitHubStub, ran: Ran, asked: str) -> None:
    """Exit 0 and one line in the step summary; GitHub was only asked about `asked`'s access: no
    comment, no pull request, no session, no model call, nothing pushed."""
    assert ran.code == 0, ran.stderr
    assert [(r.method, r.path) for r in stub.requests] == [
        ("GET", f"/repos/{REPOSITORY}/collaborators/{asked}/permission")
    ]
    assert ran.trajectory == [] and not (actions.checkout / ".actsmith").exists()
    assert actions.origin_refs() == {"refs/heads/main": actions.main}
    assert len(ran.summary.strip().splitlines()) == 1
    assert ran.outputs["conclusion"] == "not_triggered"


def push_pull_head(
    actions: Actions,
    branch: str,
    *,
    also_as_branch: bool,
    files: dict[str, str] | None = None,
    message: str = "add farewell",
) -> str:
    """A pull request's head on origin, as GitHub keeps it: refs/pull/7/head (and the branch itself
    when it lives in the same repository)."""
    work = actions.tmp / f"author-{branch}"
    subprocess.run(["git", "clone", "-q", str(actions.origin), str(work)], check=True)
    git(work, "config", "user.email", "a@example.invalid")
    git(work, "config", "user.name", "author")
    for name, content in {"farewell.py": "def farewell():\n    return 'bye'\n", **(files or {})}.items():
        (work / name).write_text(content)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    git(work, "push", "-q", "origin", "HEAD:refs/pull/7/head")
    if also_as_branch:
        git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git(work, "rev-parse", "HEAD").strip()


def zipped(folder: Path) -> bytes:
    """A folder as actions/upload-artifact stores it: a zip of its files, paths relative to it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, str(path.relative_to(folder)))
    return buffer.getvalue()

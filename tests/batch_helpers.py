"""What the batch tests share: repositories, specs, and reading a batch folder back."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import clean_env, git, make_repo, run_cli, write_replay

PASSING = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
}
# One action that takes three steps whatever order the replies arrive in (the local server answers
# the workers of a batch from one queue): two files written, then finish().
THREE_STEPS = (
    "<execute>\nimport os\nn = len([f for f in os.listdir('.') if f.startswith('step-')])\n"
    "if n >= 2:\n    finish('three steps')\nelse:\n    open(f'step-{n}', 'w').write('x')\n</execute>"
)


def act(code: str) -> str:
    return f"<execute>\n{code}\n</execute>"


def tree_state(repo: Path) -> dict:
    """Everything a user would notice of their checkout: every file's bytes (outside .git), the
    current branch and commit, and what `git status` says."""
    files = {}
    for path in sorted(repo.rglob("*")):
        relative = path.relative_to(repo)
        if relative.parts[0] == ".git" or not path.is_file():
            continue
        files[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "files": files,
        "head": git(repo, "symbolic-ref", "HEAD").strip(),
        "commit": git(repo, "rev-parse", "HEAD").strip(),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
    }


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def batch(args: list[str], cwd: Path, timeout: float = 300, **env: str):
    return run_cli(["batch", *args], cwd, env=clean_env(**env), timeout=timeout)


def results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "tasks").glob("*/result.json")}


def journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


def stub_batch(tmp_path: Path, stub, name: str, count: int, **settings) -> Path:
    for number in range(count):
        make_repo(tmp_path / f"repo{number}", {"README.md": f"# {number}\n"})
    return write_spec(
        tmp_path / "spec.yaml",
        {
            "name": name,
            "model": "openai/gpt-4o",  # priced in litellm's map: the server's token counts cost money
            "api_base": stub.api_base,
            "tests": False,
            "map_tokens": 0,
            **settings,
            "tasks": [
                {"id": f"task{number}", "repo": f"repo{number}", "task": "write two files"}
                for number in range(count)
            ],
        },
    )


def mixed_batch(root: Path, name: str) -> tuple[Path, dict[str, Path]]:
    """Three repositories and four tasks, one of each outcome a user meets most: a success, no
    change, tests that fail, a step limit. Returns the spec and the checkouts."""
    checkouts = {repo: make_repo(root / repo, PASSING) for repo in ("billing", "ledger", "auth")}
    replays = root / "replays"
    replays.mkdir(exist_ok=True)
    scripts = {
        "fix": [act("replace('calc.py', 'return a + b', 'return b + a')"), act("finish('swapped')")],
        "noop": [act("finish('nothing to change')")],
        "break": [act("replace('calc.py', 'return a + b', 'return a - b')"), act("finish('done')")],
        "spin": [act("print('thinking')")] * 5,
    }
    for script, replies in scripts.items():
        (replays / f"{script}.yaml").write_text(yaml.safe_dump(replies, sort_keys=False))
    tasks = [
        ("fix", "billing", "swap the operands", {}),
        ("noop", "ledger", "tidy up", {}),
        ("break", "auth", "subtract instead", {"max_test_rounds": 0}),
        ("spin", "billing", "think hard", {"max_steps": 2}),
    ]
    spec = write_spec(
        root / "spec.yaml",
        {
            "name": name,
            "tasks": [
                {"id": task, "repo": repo, "task": text, "model": f"replay:replays/{task}.yaml", **extra}
                for task, repo, text, extra in tasks
            ],
        },
    )
    return spec, checkouts


def comparable(result: dict) -> dict:
    """What a task's result says about the work, whichever machine did it."""
    keys = ("id", "status", "exit_code", "steps", "cost", "branch", "files_changed", "tests_state", "message")
    return {key: result[key] for key in keys}


def slow_batch(root: Path, name: str, tasks: int = 3) -> Path:
    """Tasks whose first action sleeps two minutes: to interrupt or kill a batch mid-task."""
    make_repo(root / "repo", PASSING)
    write_replay(root / "slow.yaml", [act("import time\ntime.sleep(120)")])
    return write_spec(
        root / "spec.yaml",
        {
            "name": name,
            "tests": False,
            "model": "replay:slow.yaml",
            "tasks": [{"id": f"t{n}", "repo": "repo", "task": f"wait {n}"} for n in range(tasks)],
        },
    )


def start_batch(spec: Path, out: Path, *extra: str, **env: str) -> subprocess.Popen:
    """`actsmith batch run` in the background, to be signalled."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent_cli", "batch", "run", str(spec), "--out", str(out), *extra],
        cwd=spec.parent,
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

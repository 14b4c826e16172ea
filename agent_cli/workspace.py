"""The git side of a run: find the repository, give a run its own worktree when asked, commit the
run's changes, and report what changed. Checkpoints of the working tree live in checkpoints.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from agent_cli.errors import UsageError

RUNS_DIR = ".actsmith"
HARDENED_GIT_CONFIG = ("core.fsmonitor=false", "core.hooksPath=/dev/null")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Never run anything the repository's config names; see Workspace.repo for why.
HARDENED = tuple(option for pair in HARDENED_GIT_CONFIG for option in ("-c", pair))
EXACT_BYTES = (
    "-c",
    "core.autocrlf=false",
    "-c",
    "core.safecrlf=false",
    "-c",
    "core.attributesFile=/dev/null",
)


@cache
def _attr_source_supported() -> bool:
    """`--attr-source` (git 2.40+) keeps the tree's own .gitattributes from converting bytes."""
    out = subprocess.run(["git", "version"], capture_output=True, text=True).stdout.split()
    try:
        major, minor = (int(part) for part in out[2].split(".")[:2])
    except (IndexError, ValueError):
        return False
    return (major, minor) >= (2, 40)


def git(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    exact: bool = True,
) -> bytes:
    """Run git in `root`, hardened; raise with git's own message on failure. `exact` turns off
    attributes, filters and line-ending conversion, so checkpoints hold the bytes on disk."""
    exact_options = (
        [*EXACT_BYTES, f"--attr-source={EMPTY_TREE}"] if _attr_source_supported() else [*EXACT_BYTES]
    )
    command = ["git", *HARDENED, "-c", f"safe.directory={root}", *(exact_options if exact else []), *args]
    proc = subprocess.run(
        command, cwd=root, env={**os.environ, **(env or {})}, input=input, capture_output=True
    )
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"git {args[0]} failed: {message[-1] if message else proc.returncode}")
    return proc.stdout


@dataclass
class Workspace:
    root: Path
    git_dir: Path  # for a worktree, its own git dir (holding its index and HEAD)

    @classmethod
    def open(cls, path: Path) -> Workspace:
        """The repository containing `path`, or one actionable line saying why there is none."""
        import git

        path = path.expanduser().resolve()
        if not path.exists():
            raise UsageError(f"{path} does not exist")
        try:
            repo = git.Repo(path, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, PermissionError):
            raise UsageError(
                f"not a git repository: {path} (run inside one, pass --repo PATH, or run `git init` first)"
            ) from None
        if repo.bare or repo.working_tree_dir is None:
            raise UsageError(f"{path} is a bare repository: actsmith needs a working tree")
        return cls(Path(repo.working_tree_dir), Path(repo.git_dir))

    @property
    def repo(self):
        """The repository, with git told not to run anything the repository's own config names:
        a sandboxed action must never get code executed on the host through our git commands."""
        import git

        repo = git.Repo(self.root)
        repo.git.set_persistent_git_options(c=[*HARDENED_GIT_CONFIG, f"safe.directory={self.root}"])
        return repo

    def exclude_runs_dir(self) -> None:
        """Keep .actsmith/ out of git through info/exclude, never by editing a tracked .gitignore."""
        exclude = Path(self.repo.git.rev_parse("--git-path", "info/exclude"))
        if not exclude.is_absolute():
            exclude = self.root / exclude
        line = f"/{RUNS_DIR}/"
        existing = exclude.read_text() if exclude.exists() else ""
        if line not in existing.splitlines():
            exclude.parent.mkdir(parents=True, exist_ok=True)
            prefix = "" if not existing or existing.endswith("\n") else "\n"
            exclude.write_text(existing + prefix + line + "\n")

    def new_run_id(self, task: str) -> str:
        """A unique, time-sorted name for a run, shared by its checkpoint ref and its directory."""
        self.exclude_runs_dir()
        base = f"{time.strftime('%Y%m%d-%H%M%S')}-{slugify(task)}"
        run_id, suffix = base, 1
        while (self.root / RUNS_DIR / "runs" / run_id).exists() or has_ref(
            self.root, f"refs/actsmith/runs/{run_id}"
        ):
            suffix += 1
            run_id = f"{base}-{suffix}"
        return run_id

    def run_dir(self, run_id: str) -> Path:
        path = self.root / RUNS_DIR / "runs" / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def summary(self, max_entries: int = 40) -> str:
        """A one-paragraph sketch of the repository for the first prompt: size and top-level entries."""
        files = self.repo.git.ls_files("-z").split("\0")
        files = [f for f in files if f]
        top: dict[str, int] = {}
        for name in files:
            head, sep, _ = name.partition("/")
            key = head + ("/" if sep else "")
            top[key] = top.get(key, 0) + 1
        entries = [
            f"{k} ({n} file{'' if n == 1 else 's'})" if k.endswith("/") else k for k, n in sorted(top.items())
        ]
        shown = ", ".join(entries[:max_entries])
        more = f", and {len(entries) - max_entries} more" if len(entries) > max_entries else ""
        return f"{len(files)} tracked files. Top level: {shown}{more}."

    def diff_stat(self, before: str, after: str) -> str:
        if before == after:
            return ""
        return self.repo.git.diff("--stat", before, after)

    def diff(self, before: str, after: str) -> str:
        return self.repo.git.diff(before, after)

    def head(self) -> str | None:
        """The commit HEAD points at, or None on a branch with no commits yet."""
        try:
            return git(self.root, "rev-parse", "--verify", "-q", "HEAD^{commit}").decode().strip()
        except UsageError:
            return None

    def check_identity(self) -> None:
        """Committing needs a name and email; say so before the run rather than after it."""
        try:
            git(self.root, "var", "GIT_AUTHOR_IDENT")
        except UsageError:
            raise UsageError(
                "git does not know who you are, so actsmith cannot commit: "
                'run git config --global user.name "Your Name" and user.email you@example.com'
            ) from None

    def create_worktree(self, task: str) -> tuple[Workspace, str]:
        """A new worktree on a new branch actsmith/<slug> from HEAD, kept inside the git dir so the
        user's checkout stays byte-identical. Returns it and the branch name."""
        if self.head() is None:
            raise UsageError("--worktree needs a commit to branch from: this repository has no commits yet")
        repo = self.repo
        common = Path(repo.git.rev_parse("--path-format=absolute", "--git-common-dir"))
        existing = set(repo.git.for_each_ref("--format=%(refname:short)", "refs/heads/actsmith/").split())
        slug, suffix = slugify(task), 1
        while f"actsmith/{slug}" in existing or (common / "actsmith" / "worktrees" / slug).exists():
            suffix += 1
            slug = f"{slugify(task)}-{suffix}"
        path = common / "actsmith" / "worktrees" / slug
        branch = f"actsmith/{slug}"
        repo.git.worktree("add", "--quiet", "-b", branch, str(path), "HEAD")
        return Workspace.open(path), branch

    def remove_worktree(self, main: Workspace) -> None:
        """Drop this worktree (its branch keeps the commits); only ignored files can be left in it."""
        main.repo.git.worktree("remove", "--force", str(self.root))

    def commit_run(self, before: str, after: str, message: str) -> str | None:
        """Commit the files that differ between two checkpoint trees onto HEAD, nothing else: the
        user's other uncommitted changes stay as they were. Returns the new commit, or None."""
        out = git(self.root, "diff-tree", "-r", "-z", "--no-renames", "--name-status", before, after)
        fields = out.decode("utf-8", "surrogateescape").split("\0")
        pairs = list(zip(fields[0::2], fields[1::2], strict=False))
        present = [path for status, path in pairs if status != "D"]
        deleted = [path for status, path in pairs if status == "D"]
        if not pairs:
            return None
        head = self.head()
        literal = {"GIT_LITERAL_PATHSPECS": "1"}
        with tempfile.TemporaryDirectory(prefix="actsmith-commit-") as tmp:
            env = {**literal, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            git(self.root, "read-tree", *([head] if head else ["--empty"]), env=env)
            if present:
                # The user's own attributes and filters apply, as in any commit of theirs.
                self._git_paths(["add", "--force"], present, env)
            if deleted:
                git(
                    self.root, "update-index", "--force-remove", "-z", "--stdin", env=env, input=_nul(deleted)
                )
            tree = git(self.root, "write-tree", env=env).decode().strip()
        parents = ["-p", head] if head else []
        commit = git(self.root, "commit-tree", tree, *parents, input=message.encode()).decode().strip()
        git(
            self.root,
            "update-ref",
            "-m",
            "actsmith: commit the run",
            "HEAD",
            commit,
            *([head] if head else []),
        )
        # The user's index follows the new commit for these paths only.
        self._git_paths(["reset", "-q"], present + deleted, literal)
        return commit

    def _git_paths(self, command: list[str], paths: list[str], env: dict[str, str]) -> None:
        pathspec = ["--pathspec-from-file=-", "--pathspec-file-nul"]
        git(self.root, *command, *pathspec, env=env, input=_nul(paths), exact=False)


def has_ref(root: Path, ref: str) -> bool:
    try:
        git(root, "rev-parse", "--verify", "-q", ref)
    except UsageError:
        return False
    return True


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-") or "task"


def _nul(paths: list[str]) -> bytes:
    return "\0".join(paths).encode("utf-8", "surrogateescape")

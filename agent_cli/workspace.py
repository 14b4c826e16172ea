"""The repository a session works in: find it, reserve a run id, hold the in-place lock, give a run
its own worktree when asked, commit the run's changes, report what changed. Checkpoints of the
working tree live in checkpoints.py; git itself is reached through gitops.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.errors import UsageError
from agent_cli.gitops import EMPTY_TREE, GitError, check_config_origins, git, has_ref, nul_joined, open_repo
from agent_cli.safe_paths import make_dirs

if TYPE_CHECKING:
    pass

RUNS_DIR = ".actsmith"
# Folders of host tools at the top of a checkout that run what they find there: a virtualenv's .pth
# files, direnv's .envrc, an editor's tasks and launch configs. The sandbox sees them read-only.
HOST_TOOL_FOLDERS = (".venv", "venv", ".tox", ".nox", ".direnv", ".envrc", ".vscode", ".idea")
RUN_REF_PREFIX = "refs/actsmith/runs/"
BRANCH_PREFIX = "actsmith/"
WORKTREE_ATTEMPTS = 20


@dataclass
class Workspace:
    root: Path
    git_dir: Path  # for a worktree, its own git dir (holding its index and HEAD)

    @classmethod
    def open(cls, path: Path) -> Workspace:
        """The repository containing `path` (taken literally), or one line saying why there is none."""
        import git as gitpython

        path = Path(os.path.abspath(path))
        if not path.exists():
            raise UsageError(f"{path} does not exist")
        try:
            repo = open_repo(path, search_parents=True)
        except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError, PermissionError):
            raise UsageError(
                f"not a git repository: {path} (run inside one, pass --repo PATH, or run `git init` first)"
            ) from None
        if repo.bare or repo.working_tree_dir is None:
            raise UsageError(f"{path} is a bare repository: actsmith needs a working tree")
        check_config_origins(Path(repo.working_tree_dir))
        return cls(Path(repo.working_tree_dir).resolve(), Path(repo.git_dir).resolve())

    @property
    def common_git_dir(self) -> Path:
        """The repository's main git dir, shared by all its worktrees (refs, objects, our caches)."""
        out = git(self.root, "rev-parse", "--path-format=absolute", "--git-common-dir")
        return Path(out.decode().strip())

    # ------------------------------------------------------------------------------------ runs

    def reserve_run_id(self, label: str) -> str:
        """A new, time-sorted run id, unique even against runs started in the same second: the
        reservation is a directory made atomically in the git dir (the run keeps its private
        index there), and an id whose checkpoint ref or run folder exists is never reused."""
        self.exclude_runs_dir()
        reserved = self.common_git_dir / "actsmith" / "runs"
        reserved.mkdir(parents=True, exist_ok=True)
        base = f"{time.strftime('%Y%m%d-%H%M%S')}-{slugify(label)}"
        for suffix in range(1, 10_000):
            run_id = base if suffix == 1 else f"{base}-{suffix}"
            if (self.root / RUNS_DIR / "runs" / run_id).exists() or has_ref(
                self.root, RUN_REF_PREFIX + run_id
            ):
                continue
            try:
                (reserved / run_id).mkdir()
            except FileExistsError:
                continue
            return run_id
        raise UsageError(f"cannot find a free run id for {base}")

    def plan_id(self, label: str) -> str:
        """An id for a plan-mode session: like a run id, but reserving nothing (a plan writes no
        checkpoint, so it cannot collide with a run)."""
        return f"{time.strftime('%Y%m%d-%H%M%S')}-plan-{slugify(label)}-{os.urandom(2).hex()}"

    def run_state_dir(self, run_id: str) -> Path:
        """Where a run keeps its private state (the checkpoint index): inside .git, which the
        sandbox sees read-only."""
        return self.common_git_dir / "actsmith" / "runs" / run_id

    def exclude_runs_dir(self) -> None:
        """Keep .actsmith/ out of git through info/exclude, never by editing a tracked .gitignore."""
        exclude = Path(git(self.root, "rev-parse", "--git-path", "info/exclude").decode().strip())
        if not exclude.is_absolute():
            exclude = self.root / exclude
        line = f"/{RUNS_DIR}/"
        existing = exclude.read_text() if exclude.exists() else ""
        if line not in existing.splitlines():
            exclude.parent.mkdir(parents=True, exist_ok=True)
            prefix = "" if not existing or existing.endswith("\n") else "\n"
            exclude.write_text(existing + prefix + line + "\n")

    def run_path(self, run_id: str) -> Path:
        """Where a run keeps its logs: .actsmith/runs/<run id>, inside the mount."""
        return self.root / RUNS_DIR / "runs" / run_id

    def run_dir(self, run_id: str) -> Path:
        """The run's log folder, made without following a link the sandbox could have planted."""
        make_dirs(self.root, f"{RUNS_DIR}/runs/{run_id}")
        return self.run_path(run_id)

    def lock_in_place(self) -> InPlaceLock:
        """Only one session may edit this working tree at a time; `--worktree` runs go beside it."""
        return InPlaceLock.acquire(self.git_dir / "actsmith" / "in-place.lock", self.root)

    # ------------------------------------------------------------------------------- reporting

    def summary(self, max_entries: int = 40) -> str:
        """A one-paragraph sketch of the repository for the first prompt: size and top-level entries."""
        out = git(self.root, "ls-files", "-z").decode("utf-8", "surrogateescape")
        files = [f for f in out.split("\0") if f]
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

    def diff_stat(self, before: str, after: str, width: int = 100) -> str:
        """What changed from `before` to `after`, file by file (`git diff --stat`)."""
        if not before or before == after:
            return ""
        return git(self.root, "diff", f"--stat={width}", "--no-color", before, after).decode(
            "utf-8", "replace"
        )

    def diff(self, before: str, after: str, *, binary: bool = False, from_fork_point: bool = False) -> str:
        """The patch from `before` to `after` (`binary`: as `git apply` takes it, binary files
        included; `from_fork_point`: from where `after` left `before`, as `git diff a...b`). No
        external diff or textconv runs: attributes come from an empty tree."""
        if before == after:
            return ""
        span = [f"{before}...{after}"] if from_fork_point else [before, after]
        options = ["--binary"] if binary else []
        out = git(self.root, "diff", "--no-color", "--no-ext-diff", *options, *span)
        return out.decode("utf-8", "surrogateescape" if binary else "replace")

    def format_patch(self, since: str, until: str) -> str:
        """The commits after `since` up to `until` as mail patches (`git am` takes them)."""
        return git(self.root, "format-patch", "--stdout", f"{since}..{until}").decode("utf-8", "replace")

    def changed_files(self, before: str, after: str) -> list[str]:
        if before == after:
            return []
        out = git(self.root, "diff-tree", "-r", "-z", "--name-only", "--no-renames", before, after)
        return [path for path in out.decode("utf-8", "surrogateescape").split("\0") if path]

    def head(self) -> str | None:
        """The commit HEAD points at, or None on a branch with no commits yet."""
        return self.commit_of("HEAD")

    def commit_of(self, ref: str) -> str | None:
        """The commit `ref` names, or None when it names none."""
        try:
            return git(self.root, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}").decode().strip()
        except GitError:
            return None

    def branch_tip(self, branch: str) -> str | None:
        return self.commit_of(f"refs/heads/{branch}")

    def create_branch(self, branch: str, reason: str) -> str:
        """`branch` at HEAD's commit (HEAD itself never moves); returns that commit."""
        head = self.head()
        if head is None:
            raise UsageError(f"{self.root} has no commits to branch from")
        git(self.root, "update-ref", "-m", reason, f"refs/heads/{branch}", head, "")
        return head

    def author(self, identity: dict[str, str] | None = None) -> tuple[str, str]:
        """The name and email commits here carry (from git's config, or `identity`: GIT_AUTHOR_NAME
        and the rest); one line saying how to set them when git knows none."""
        try:
            ident = git(self.root, "var", "GIT_AUTHOR_IDENT", env=identity).decode().strip()
        except GitError:
            raise UsageError(
                f"git does not know who you are in {self.root}, so actsmith cannot commit: "
                'run git config --global user.name "Your Name" and user.email you@example.com'
            ) from None
        match = re.match(r"(.*) <(.*)> \d+ [+-]\d+$", ident) or re.match(r"(.*) <(.*)>", ident)
        return (match.group(1), match.group(2)) if match else ("actsmith", "actsmith@localhost")

    def check_identity(self, identity: dict[str, str] | None = None) -> None:
        """Committing needs a name and email: say so before the run rather than after it."""
        self.author(identity)

    # ------------------------------------------------------------------------------- worktrees

    def create_worktree(self, label: str, branch: str | None = None) -> tuple[Workspace, str]:
        """A new worktree, kept inside the git dir so the user's checkout stays byte-identical, on
        `branch` (an existing one, e.g. to continue a batch's own branch) or on a new branch
        actsmith/<slug> from HEAD. Names another run took a moment ago move on to the next suffix.
        Returns the worktree and its branch."""
        if self.head() is None:
            raise UsageError("--worktree needs a commit to branch from: this repository has no commits yet")
        parent = self.common_git_dir / "actsmith" / "worktrees"
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, WORKTREE_ATTEMPTS + 1):
            slug = slugify(label) + (f"-{attempt}" if attempt > 1 else "")
            new_branch = BRANCH_PREFIX + slug
            if branch is None and has_ref(self.root, f"refs/heads/{new_branch}"):
                continue
            path = parent / slug
            try:
                path.mkdir()  # atomic: two runs never share a folder (git accepts an empty one)
            except FileExistsError:
                continue
            target = [str(path), branch] if branch else ["-b", new_branch, str(path), "HEAD"]
            try:
                git(self.root, "worktree", "add", "--quiet", *target, exact=False)
            except GitError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                if branch is not None:
                    raise
                continue  # the branch was created a moment ago by another run
            return Workspace.open(path), branch or new_branch
        raise UsageError(f"cannot create a worktree for {label!r}: too many runs of the same task")

    def remove_worktree(self, main: Workspace) -> None:
        """Drop this worktree (its branch keeps the commits); only ignored files can be left in it."""
        git(main.root, "worktree", "remove", "--force", str(self.root), exact=False)

    # -------------------------------------------------------------------------------- commits

    def commit_run(
        self, before: str, after: str, message: str, identity: dict[str, str] | None = None
    ) -> str | None:
        """Commit the files that differ between two checkpoint trees onto HEAD, nothing else: the
        user's other uncommitted changes stay as they were. Returns the new commit, or None.
        `identity` (GIT_AUTHOR_NAME...) stands in for git's config when it knows nobody."""
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
                # The user's own filters apply, as in any commit of theirs, selected by the attributes
                # they committed: the working tree's .gitattributes is the sandbox's to write.
                self._git_paths(["add", "--force"], present, env, attr_source=head)
            if deleted:
                git(
                    self.root,
                    "update-index",
                    "--force-remove",
                    "-z",
                    "--stdin",
                    env=env,
                    input=nul_joined(deleted),
                )
            tree = git(self.root, "write-tree", env=env).decode().strip()
        parents = ["-p", head] if head else []
        made = git(self.root, "commit-tree", tree, *parents, env=identity, input=message.encode())
        commit = made.decode().strip()
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

    def _git_paths(
        self, command: list[str], paths: list[str], env: dict[str, str], attr_source: str | None = None
    ) -> None:
        pathspec = ["--pathspec-from-file=-", "--pathspec-file-nul"]
        git(
            self.root,
            *command,
            *pathspec,
            env=env,
            input=nul_joined(paths),
            exact=False,
            attr_source=attr_source or EMPTY_TREE,
        )


@dataclass
class InPlaceLock:
    """An exclusive lock on editing a working tree in place. It is an flock, so the kernel drops it
    when its holder dies: a lock left by a killed run is simply taken over."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, path: Path, root: Path) -> InPlaceLock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UsageError(
                f"another actsmith session (pid {holder}) is working in {root}; wait for it, "
                "or run beside it with --worktree"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-") or "task"

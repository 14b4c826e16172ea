"""Environment images: the sandbox image plus a repository's dependencies, made once per state.

Setup runs in a build container from the sandbox image, as root and with network (the host's proxy
and CA, see network.py), confined (see confine.py), on a copy of the repository at /workspace,
never the user's files. The result is committed as `actsmith-env:<hash>`, the hash covering the
repository's identity (its root commits and `origin` URL, never its path: a fresh clone reuses the
image, another repository with the same manifests does not), the sandbox image, the commands and the
contents of every file setup reads that can be known (manifests, lock files, included requirements,
local projects and build backends). The image carries the full hash and the identity as labels, and
is reused only when both match: a later run with the same inputs pays one API call, and a change to
a manifest makes a new one.

What setup installs must survive the run's bind mount over /workspace: Python goes into the image's
virtualenv (/opt/venv, on PATH), Go and Cargo caches into /opt/actsmith-env, and in-repository
folders (node_modules) are left in the image's /workspace, from where the sandbox layers a volume
over the mount (see DockerSandbox).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from agent_cli.errors import EnvironmentProblem
from agent_cli.gitops import GitError, git
from agent_cli.sandbox.identity import LABEL, OWNER_LABEL, WORKSPACE, owner_token
from agent_cli.setup.confine import blocked_destinations, network_gate, setup_host_config
from agent_cli.setup.detect import TOOLCHAIN_PRELUDE, SetupPlan
from agent_cli.setup.inputs import read_input
from agent_cli.setup.network import HostNetwork, split_credentials

if TYPE_CHECKING:
    import docker

    from agent_cli.cancel import CancelToken
    from agent_cli.sandbox import SandboxLimits

ENV_REPO = "actsmith-env"
ENV_LABEL = "actsmith.env"  # on every environment image: the full hash of its inputs
IDENTITY_LABEL = "actsmith.env.identity"  # the repository it is for (root commits, origin URL)
REPO_LABEL = "actsmith.env.repo"  # the checkout it was made from (for prune)
LAYERS_LABEL = "actsmith.env.layers"  # in-repository folders to layer over the mount (JSON list)
ENV_HOME = "/opt/actsmith-env"
LOG_FOLDER = (".actsmith", "setup")  # under the checkout
# Where toolchains keep what setup fetched, outside the repository; set in the image for the run too.
ECOSYSTEM_ENV = {
    "GOPATH": f"{ENV_HOME}/go",
    "GOMODCACHE": f"{ENV_HOME}/go/pkg/mod",
    "GOTOOLCHAIN": "local",
    "CARGO_HOME": f"{ENV_HOME}/cargo",
    "npm_config_cache": f"{ENV_HOME}/npm",
}
# The run has no network: the toolchains should not try it.
RUN_ENV = {"GOPROXY": "off", "GOFLAGS": "-mod=mod", "CARGO_NET_OFFLINE": "true"}
MARKER = "@@actsmith-setup"
TAIL_LINES = 12
PROGRESS_EVERY_S = 0.2
WATCH_EVERY_S = 0.2

Say = Callable[[str], None]
Progress = Callable[[int, int, str, str], None]  # step, of, command, latest output line


@dataclass(frozen=True)
class Environment:
    image: str
    layers: tuple[str, ...]
    built: bool  # False: an existing image was reused
    seconds: float
    log: Path | None


@dataclass(frozen=True)
class EnvironmentKey:
    """What names an environment image: its tag, the full hash it stands for, and the repository."""

    tag: str
    digest: str  # sha256 of every input, in the image's ENV_LABEL
    identity: str  # in the image's IDENTITY_LABEL

    @property
    def name(self) -> str:
        return self.tag.split(":")[1]


def repository_identity(repo: Path) -> str:
    """Which repository an environment is for: its root commit(s) and `origin` URL (credentials
    stripped); never its path, so a fresh clone or copy of it shares its environments. A repository
    with no commit and no origin has nothing else to be known by than its path."""
    try:
        roots = sorted(git(repo, "rev-list", "--max-parents=0", "HEAD").decode().split())
    except GitError:
        roots = []
    try:
        origin = split_credentials(git(repo, "config", "--get", "remote.origin.url").decode().strip())[0]
    except GitError:
        origin = ""
    if not roots and not origin:
        return json.dumps({"path": str(repo.resolve())})
    return json.dumps({"roots": roots, "origin": origin})


def environment_key(
    client: docker.DockerClient, sandbox_image: str, plan: SetupPlan, *, root: Path, repo: Path
) -> EnvironmentKey:
    """The key of the environment for this plan: its files read in `root` (the tree setup copies),
    the identity of `repo` (the user's checkout)."""
    identity = repository_identity(repo)
    digest = hashlib.sha256()
    parts: list[tuple[str, bytes]] = [
        ("repository", identity.encode()),
        ("image", client.images.get(sandbox_image).id.encode()),
        ("commands", json.dumps(plan.commands).encode()),
        ("layers", json.dumps(plan.layers).encode()),
        ("env", json.dumps(ECOSYSTEM_ENV, sort_keys=True).encode()),
        ("prelude", TOOLCHAIN_PRELUDE.encode()),
    ]
    parts += [(f"manifest:{name}", read_input(root, name)) for name in plan.manifests]
    for label, data in parts:
        for chunk in (label.encode(), data):
            digest.update(len(chunk).to_bytes(8, "big"))
            digest.update(chunk)
    full = digest.hexdigest()
    return EnvironmentKey(f"{ENV_REPO}:{full[:12]}", full, identity)


def reusable(client: docker.DockerClient, key: EnvironmentKey) -> bool:
    """An image under this tag that was made from these very inputs, for this repository: a tag
    alone (12 hex digits, or one another repository's setup committed) is not trusted."""
    from docker.errors import ImageNotFound

    try:
        labels = client.images.get(key.tag).labels or {}
    except ImageNotFound:
        return False
    return labels.get(ENV_LABEL) == key.digest and labels.get(IDENTITY_LABEL) == key.identity


class SetupFailed(EnvironmentProblem):
    """A setup command failed (or was stopped by a timeout): which one, why, and where its log is."""

    def __init__(self, command: str, detail: str, log: Path | None, *, remembered: bool = False) -> None:
        self.command, self.detail, self.log, self.remembered = command, detail, log, remembered
        where = f" (full log: {log})" if log else ""
        super().__init__(
            f"setup failed: `{command}` {detail}{where}; fix the command or set setup (--setup CMD, --no-setup)"
        )

    def record(self) -> dict[str, object]:
        return {"command": self.command, "detail": self.detail, "log": str(self.log) if self.log else None}


@dataclass(frozen=True)
class BuildContext:
    """Everything a build needs besides its plan."""

    client: docker.DockerClient
    sandbox_image: str
    root: Path  # the tree whose files the plan reads
    repo: Path  # the user's checkout: its identity, and where logs go
    snapshot: Callable[[], bytes]
    network: HostNetwork
    limits: SandboxLimits
    timeout: float
    idle_timeout: float
    say: Say
    progress: Progress
    cancel: CancelToken | None = None
    before_build: Callable[[], None] = lambda: None


def ensure_environment(
    context: BuildContext, plan: SetupPlan, *, rebuild: bool = False, remember: bool = False
) -> Environment:
    """The environment image for this plan: reused when its inputs are unchanged, else built
    (`before_build` runs first) with its log under `repo`/.actsmith/setup. With `remember` (a
    detected plan), a failure is recorded by the inputs' hash, and a recorded one is raised again at
    once instead of building (SetupFailed.remembered) unless `rebuild`."""
    started = time.monotonic()
    client = context.client
    key = environment_key(client, context.sandbox_image, plan, root=context.root, repo=context.repo)
    if not rebuild and reusable(client, key):
        return Environment(key.tag, plan.layers, False, time.monotonic() - started, None)
    if remember and not rebuild:
        _raise_remembered(key)
    context.before_build()
    with _build_lock(key, context.say):
        if not rebuild and reusable(client, key):  # built by another session while we waited
            return Environment(key.tag, plan.layers, False, time.monotonic() - started, None)
        log = context.repo.joinpath(*LOG_FOLDER, f"{key.name}.log")
        context.say(
            f"setup: building {key.tag} for this repository ({len(plan.commands)} command(s); log: {log})"
        )
        try:
            with open_log(context.repo, f"{key.name}.log", context.say) as out:
                Build(context, plan, out, log).run(key)
        except SetupFailed as failure:
            if remember:
                _failure_record(key).write_text(json.dumps(failure.record()))
            raise
        _failure_record(key).unlink(missing_ok=True)
    seconds = time.monotonic() - started
    context.say(f"setup: built {key.tag} in {seconds:.1f}s")
    return Environment(key.tag, plan.layers, True, seconds, log)


def _failure_record(key: EnvironmentKey) -> Path:
    from agent_cli.sandbox.image import cache_dir

    folder = cache_dir() / "setup-failures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key.digest}.json"


def _raise_remembered(key: EnvironmentKey) -> None:
    try:
        record = json.loads(_failure_record(key).read_text())
    except (OSError, ValueError):
        return
    log = Path(record["log"]) if record.get("log") else None
    raise SetupFailed(str(record.get("command", "?")), str(record.get("detail", "")), log, remembered=True)


def open_log(repo: Path, name: str, say: Say) -> IO[str]:
    """A new log file in `repo`/.actsmith/setup, never written through a symbolic link: code in the
    sandbox can write the checkout, and could have planted one there pointing anywhere on the host.
    Each folder is opened relative to its parent without following links (a link where a folder of
    ours belongs is replaced by the folder), and the file is created anew, never followed."""
    folder = os.open(repo, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in LOG_FOLDER:
            parent, folder = folder, _subfolder(folder, part, repo, say)
            os.close(parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=folder)  # a planted link goes, not what it points to
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        handle = os.open(name, flags, 0o644, dir_fd=folder)
    finally:
        os.close(folder)
    return os.fdopen(handle, "w", encoding="utf-8", errors="replace")


def _subfolder(parent: int, name: str, repo: Path, say: Say) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError:
        if not stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            raise EnvironmentProblem(
                f"{repo}: {'/'.join(LOG_FOLDER)} must be a folder for setup's logs"
            ) from None
        os.unlink(name, dir_fd=parent)
        say(f"setup: {name} in {repo} was a symbolic link: replaced by a folder (logs never follow links)")
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=parent)
    return os.open(name, flags, dir_fd=parent)


@dataclass
class Build:
    """One environment build: a confined container from the sandbox image, the commands run in it
    (watched for the total and idle timeouts and for cancellation), the result committed."""

    context: BuildContext
    plan: SetupPlan
    log: IO[str]
    log_path: Path

    def run(self, key: EnvironmentKey) -> None:
        context = self.context
        blocked = blocked_destinations(context.client, context.network.environment)
        with network_gate(context.client, context.sandbox_image, blocked) as gate:
            container = self._create(gate)
            try:
                context.client.api.put_archive(container, "/", _workspace_tar(context.snapshot()))
                context.client.api.start(container)
                self._run_commands(container)
                self._commit(container, key)
            finally:
                with contextlib.suppress(Exception):
                    context.client.api.remove_container(container, force=True, v=True)

    def _create(self, gate: str) -> str:

        context = self.context
        binds = [f"{host}:{inside}:ro" for host, inside in context.network.mounts.items()]
        return context.client.api.create_container(
            context.sandbox_image,
            # Kept idle: setup runs as an exec, so the proxy and CA variables live in the exec only and
            # are never committed into the image the agent's container starts from.
            command=["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
            user="0:0",
            working_dir=WORKSPACE,
            labels={LABEL: "setup", OWNER_LABEL: owner_token()},  # swept like a sandbox if we die
            host_config=setup_host_config(context.client, context.limits, gate, binds),
        )["Id"]

    def _run_commands(self, container: str) -> None:
        """Run the plan's commands; a failure (or a timeout) is a SetupFailed naming the command."""
        from agent_cli.cancel import Cancelled

        context = self.context
        api = context.client.api
        environment = {"HOME": "/root", **ECOSYSTEM_ENV, **context.network.environment}
        exec_id = api.exec_create(
            container, ["sh", "-c", _script(self.plan)], environment=environment, user="0:0"
        )
        watch = Watch(context.timeout, context.idle_timeout, lambda: _kill_quietly(api, container))
        cancel = context.cancel.on_cancel(watch.stop_now) if context.cancel else contextlib.nullcontext()
        with cancel, watch:
            output = Output(self.plan, self.log, context.progress, watch)
            for line in _lines(api.exec_start(exec_id["Id"], stream=True)):
                output.add(line)
        if context.cancel is not None and context.cancel.cancelled:
            raise Cancelled(context.cancel.reason or "interrupted")
        code = api.exec_inspect(exec_id["Id"]).get("ExitCode")
        if code == 0 and watch.stopped is None:
            return
        for line in output.tail:
            context.say(f"  {line}")
        last = output.tail[-1] if output.tail else "no output"
        command = output.command or (self.plan.commands[0] if self.plan.commands else "setup")
        if watch.stopped is not None:
            raise SetupFailed(command, watch.stopped, self.log_path)
        command = output.failed or command
        raise SetupFailed(command, f"exited with code {code}: {last}", self.log_path)

    def _commit(self, container: str, key: EnvironmentKey) -> None:
        api = self.context.client.api
        api.stop(container, timeout=5)
        changes = [
            'CMD ["python3", "-u", "/opt/actsmith/server.py"]',
            f"WORKDIR {WORKSPACE}",
            *(f"ENV {name}={value}" for name, value in {**ECOSYSTEM_ENV, **RUN_ENV}.items()),
            f"LABEL {ENV_LABEL}={key.digest}",
            f"LABEL {IDENTITY_LABEL}={json.dumps(key.identity)}",
            f"LABEL {REPO_LABEL}={json.dumps(str(self.context.repo))}",
            f"LABEL {LAYERS_LABEL}={json.dumps(json.dumps(list(self.plan.layers)))}",
        ]
        repository, _, version = key.tag.partition(":")
        api.commit(container, repository=repository, tag=version, changes=changes)


class Watch:
    """Stops a build (through `kill`) past its deadline, after `idle` seconds with no output, or at
    once when asked (a cancel); `stopped` says why, except for a cancel."""

    def __init__(self, timeout: float, idle: float, kill: Callable[[], None]) -> None:
        self.timeout, self.idle, self.kill = timeout, idle, kill
        self.deadline = time.monotonic() + timeout
        self.last_output = time.monotonic()
        self.stopped: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="actsmith-setup-watch", daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()

    def heard(self) -> None:
        self.last_output = time.monotonic()

    def stop_now(self) -> None:
        self._done.set()
        self.kill()

    def _watch(self) -> None:
        while not self._done.wait(WATCH_EVERY_S):
            now = time.monotonic()
            if now > self.deadline:
                self.stopped = f"did not finish within {self.timeout:g} s (setup_timeout)"
            elif now - self.last_output > self.idle:
                self.stopped = f"printed nothing for {self.idle:g} s (setup_idle_timeout)"
            else:
                continue
            self.kill()
            return


@dataclass
class Output:
    """Setup's output as it arrives: into the log, the progress line and the tail kept for errors."""

    plan: SetupPlan
    log: IO[str]
    progress: Progress
    watch: Watch
    tail: list[str] = field(default_factory=list)
    step: int = 0
    command: str = ""
    failed: str | None = None
    last_progress: float = 0.0

    def add(self, line: str) -> None:
        self.log.write(line + "\n")
        self.log.flush()
        self.watch.heard()
        if line.startswith(MARKER):
            self._marker(line.split())
            return
        if line.strip():
            self.tail = [*self.tail, line][-TAIL_LINES:]
        now = time.monotonic()
        if now - self.last_progress >= PROGRESS_EVERY_S:
            self.last_progress = now
            self.progress(self.step, len(self.plan.commands), self.command, line)

    def _marker(self, words: list[str]) -> None:
        if words[1] == "failed":
            self.failed = self.plan.commands[int(words[2]) - 1]
        elif "/" in words[1]:
            self.step = int(words[1].split("/")[0])
            self.command = self.plan.commands[self.step - 1]
            self.progress(self.step, len(self.plan.commands), self.command, "")


def _workspace_tar(snapshot: bytes) -> bytes:
    """The repository's tar, re-rooted under workspace/ (put_archive extracts at /)."""
    import io
    import tarfile

    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(snapshot), mode="r:") as source,
        tarfile.open(fileobj=out, mode="w") as target,
    ):
        folder = tarfile.TarInfo("workspace")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        target.addfile(folder)
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            member.name = f"workspace/{member.name}"
            target.addfile(member, data)
    return out.getvalue()


def _script(plan: SetupPlan) -> str:
    total = len(plan.commands)
    lines = [f"cd {WORKSPACE} || exit 1", TOOLCHAIN_PRELUDE]
    for number, command in enumerate(plan.commands, start=1):
        lines += [
            f"echo '{MARKER} {number}/{total}'",
            f"( {command}\n)",
            f"status=$?; if [ $status -ne 0 ]; then echo '{MARKER} failed {number}' $status; exit $status; fi",
        ]
    keep = " ".join(f"! -name {layer.split('/')[0]}" for layer in plan.layers)
    # The repository copy is hidden by the run's mount anyway; only the layered folders are kept.
    lines += [
        f"find {WORKSPACE} -mindepth 1 -maxdepth 1 {keep} -exec rm -rf {{}} +",
        *(f"chmod -R a+rwX {WORKSPACE}/{layer} 2>/dev/null" for layer in plan.layers),
        f"mkdir -p {ENV_HOME} && chmod -R a+rwX {ENV_HOME}",
        f"echo '{MARKER} done'",
    ]
    return "\n".join(lines) + "\n"


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", "replace").rstrip("\r")
    if pending:
        yield pending.decode("utf-8", "replace")


def _kill_quietly(api: docker.APIClient, container: str) -> None:
    with contextlib.suppress(Exception):
        api.kill(container)


@contextlib.contextmanager
def _build_lock(key: EnvironmentKey, say: Say) -> Iterator[None]:
    """One build per environment at a time, across processes (a batch may start several at once)."""
    from agent_cli.sandbox.image import cache_dir

    with open(cache_dir() / f"env-{key.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"setup: waiting for another actsmith session building {key.tag} ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def layers_of(client: docker.DockerClient, image: str) -> tuple[str, ...]:
    """The in-repository folders an environment image carries (none for other images)."""
    labels = client.images.get(image).labels or {}
    try:
        return tuple(json.loads(labels.get(LAYERS_LABEL) or "[]"))
    except ValueError:
        return ()


def prune_environments(client: docker.DockerClient, *, everything: bool = False) -> list[str]:
    """Remove environment images no longer current: superseded by a newer one made for the same
    repository, or made for a repository that is gone (or all of them). Images in use stay."""
    from docker.errors import APIError

    images = client.images.list(filters={"label": ENV_LABEL})
    newest: dict[str, str] = {}
    for image in sorted(images, key=lambda i: i.attrs.get("Created", "")):
        newest[(image.labels or {}).get(REPO_LABEL, "")] = image.id
    removed: list[str] = []
    for image in images:
        repo = (image.labels or {}).get(REPO_LABEL, "")
        current = newest.get(repo) == image.id and repo and Path(repo).exists()
        if everything or not current:
            try:
                client.images.remove(image.id, force=False)
            except APIError:
                continue  # a container still uses it
            removed.extend(image.tags or [image.short_id])
    return removed

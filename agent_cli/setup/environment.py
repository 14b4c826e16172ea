"""Environment images: the sandbox image plus a repository's dependencies, made once per state.

Setup runs in a build container from the sandbox image, as root and with network (the host's proxy
and CA, see network.py), on a copy of the repository at /workspace, never the user's files. The
result is committed as `actsmith-env:<hash>`, the hash covering the sandbox image, the commands and
the contents of the dependency manifests and lock files: a later run with the same inputs reuses it
at the cost of one API call, and a change to a manifest makes a new one.

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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.errors import EnvironmentProblem
from agent_cli.safe_paths import open_path, read_bytes
from agent_cli.sandbox.identity import LABEL, OWNER_LABEL, WORKSPACE, owner_token
from agent_cli.sandbox.image import image_exists
from agent_cli.setup.detect import TOOLCHAIN_PRELUDE, SetupPlan
from agent_cli.setup.network import HostNetwork

if TYPE_CHECKING:
    import docker

ENV_REPO = "actsmith-env"
ENV_LABEL = "actsmith.env"  # on every environment image: its inputs' hash
REPO_LABEL = "actsmith.env.repo"  # the repository it was made for
LAYERS_LABEL = "actsmith.env.layers"  # in-repository folders to layer over the mount (JSON list)
ENV_HOME = "/opt/actsmith-env"
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

Say = Callable[[str], None]
Progress = Callable[[int, int, str, str], None]  # step, of, command, latest output line


@dataclass(frozen=True)
class Environment:
    image: str
    layers: tuple[str, ...]
    built: bool  # False: an existing image was reused
    seconds: float
    log: Path | None


def environment_tag(client: docker.DockerClient, sandbox_image: str, plan: SetupPlan, root: Path) -> str:
    """actsmith-env:<hash of every input>."""
    digest = hashlib.sha256()
    parts: list[tuple[str, bytes]] = [
        ("image", client.images.get(sandbox_image).id.encode()),
        ("commands", json.dumps(plan.commands).encode()),
        ("layers", json.dumps(plan.layers).encode()),
        ("env", json.dumps(ECOSYSTEM_ENV, sort_keys=True).encode()),
        ("prelude", TOOLCHAIN_PRELUDE.encode()),
    ]
    for name in plan.manifests:
        parts.append((f"manifest:{name}", _manifest(root, name)))
    for label, data in parts:
        for field in (label.encode(), data):
            digest.update(len(field).to_bytes(8, "big"))
            digest.update(field)
    return f"{ENV_REPO}:{digest.hexdigest()[:12]}"


def _manifest(root: Path, name: str) -> bytes:
    """A manifest's bytes (empty when absent); a link out of the repository reads as empty."""
    try:
        return read_bytes(root, name, follow_inside=True)
    except OSError:
        return b""


def ensure_environment(
    client: docker.DockerClient,
    sandbox_image: str,
    plan: SetupPlan,
    *,
    root: Path,
    repo: Path,
    snapshot: Callable[[], bytes],
    network: HostNetwork,
    timeout: float,
    log_dir: Path,
    say: Say,
    progress: Progress,
    rebuild: bool = False,
    before_build: Callable[[], None] = lambda: None,
) -> Environment:
    """The environment image for this plan: reused when its inputs are unchanged, else built
    (`before_build` runs first)."""
    started = time.monotonic()
    tag = environment_tag(client, sandbox_image, plan, root)
    if not rebuild and image_exists(client, tag):
        return Environment(tag, plan.layers, False, time.monotonic() - started, None)
    before_build()
    with _build_lock(tag, say):
        if not rebuild and image_exists(client, tag):  # built by another session while we waited
            return Environment(tag, plan.layers, False, time.monotonic() - started, None)
        log = log_dir / f"{tag.split(':')[1]}.log"
        say(f"setup: building {tag} ({len(plan.commands)} command(s); log: {log})")
        _build(client, sandbox_image, tag, plan, repo, snapshot(), network, timeout, log, say, progress)
    seconds = time.monotonic() - started
    say(f"setup: built {tag} in {seconds:.1f}s")
    return Environment(tag, plan.layers, True, seconds, log)


def _build(
    client: docker.DockerClient,
    sandbox_image: str,
    tag: str,
    plan: SetupPlan,
    repo: Path,
    snapshot: bytes,
    network: HostNetwork,
    timeout: float,
    log: Path,
    say: Say,
    progress: Progress,
) -> None:
    api = client.api
    mounts = [f"{host}:{inside}:ro" for host, inside in network.mounts.items()]
    container = api.create_container(
        sandbox_image,
        # Kept idle: setup runs as an exec, so the proxy and CA variables live in the exec only and
        # are never committed into the image the agent's container starts from.
        command=["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
        user="0:0",
        working_dir=WORKSPACE,
        labels={LABEL: "setup", OWNER_LABEL: owner_token()},  # swept like a sandbox if we die
        host_config=api.create_host_config(binds=mounts, network_mode="bridge", init=True),
    )["Id"]
    try:
        api.put_archive(container, "/", _workspace_tar(snapshot))
        api.start(container)
        code, failed, tail = _run_script(api, container, plan, network, timeout, log, repo, progress)
        if code != 0:
            for line in tail:
                say(f"  {line}")
            if failed is None:
                raise EnvironmentProblem(f"setup did not finish within {timeout:g} s (log: {log})")
            last = tail[-1] if tail else "no output"
            raise EnvironmentProblem(
                f"setup failed: `{failed}` exited with code {code}: {last} (full log: {log}); "
                "fix the command or set setup (--setup CMD, --no-setup)"
            )
        api.stop(container, timeout=5)
        changes = [
            'CMD ["python3", "-u", "/opt/actsmith/server.py"]',
            f"WORKDIR {WORKSPACE}",
            *(f"ENV {name}={value}" for name, value in {**ECOSYSTEM_ENV, **RUN_ENV}.items()),
            f"LABEL {ENV_LABEL}={tag.split(':')[1]}",
            f"LABEL {REPO_LABEL}={json.dumps(str(repo))}",
            f"LABEL {LAYERS_LABEL}={json.dumps(json.dumps(list(plan.layers)))}",
        ]
        repository, _, version = tag.partition(":")
        api.commit(container, repository=repository, tag=version, changes=changes)
    finally:
        with contextlib.suppress(Exception):
            api.remove_container(container, force=True, v=True)


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


def _run_script(
    api: docker.APIClient,
    container: str,
    plan: SetupPlan,
    network: HostNetwork,
    timeout: float,
    log: Path,
    repo: Path,  # the log lies in its .actsmith/
    progress: Progress,
) -> tuple[int, str | None, list[str]]:
    """Run the commands; (exit code, the command that failed, the last lines of output)."""
    environment = {"HOME": "/root", **ECOSYSTEM_ENV, **network.environment}
    exec_id = api.exec_create(container, ["sh", "-c", _script(plan)], environment=environment, user="0:0")[
        "Id"
    ]
    timer = threading.Timer(timeout, lambda: _kill_quietly(api, container))
    timer.daemon = True
    timer.start()
    tail: list[str] = []
    step, command, last_progress = 0, "", 0.0
    failed: str | None = None
    try:
        with open_path(log, "w", repo, errors="replace") as out:  # in the mount: never through a link
            for line in _lines(api.exec_start(exec_id, stream=True)):
                out.write(line + "\n")
                if line.startswith(MARKER):
                    words = line.split()
                    if words[1] == "failed":
                        failed = plan.commands[int(words[2]) - 1]
                    elif "/" in words[1]:
                        step = int(words[1].split("/")[0])
                        command = plan.commands[step - 1]
                        progress(step, len(plan.commands), command, "")
                    continue
                tail = [*tail, line][-TAIL_LINES:] if line.strip() else tail
                now = time.monotonic()
                if now - last_progress >= PROGRESS_EVERY_S:
                    last_progress = now
                    progress(step, len(plan.commands), command, line)
    finally:
        timer.cancel()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return (code if code is not None else -1), failed, tail


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
def _build_lock(tag: str, say: Say) -> Iterator[None]:
    """One build per environment at a time, across processes (a batch may start several at once)."""
    from agent_cli.sandbox.image import cache_dir

    with open(cache_dir() / f"env-{tag.split(':')[1]}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"setup: waiting for another actsmith session building {tag} ...")
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

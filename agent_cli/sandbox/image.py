"""Build the sandbox image from `sandboxes/`: one code path for users and CI, cached by a hash of its inputs.

The final image is `actsmith-sandbox:<hash>`. Its base is resolved in order: present locally, pulled, or
built offline from Debian packages (debootstrap, then import) as `actsmith-base:<hash of the recipe>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent_cli.errors import EnvironmentProblem
from agent_cli.resources import resource_dir

if TYPE_CHECKING:
    import docker
    from docker.errors import BuildError

DEFAULT_BASE = "python:3.12-slim"
IMAGE_REPO = "actsmith-sandbox"
BASE_REPO = "actsmith-base"
IMAGE_LABEL = "actsmith.image"  # on every image built here, so they can be listed and pruned
MIRROR_ENV = "ACTSMITH_DEBIAN_MIRROR"
DEBOOTSTRAP_TIMEOUT_S = 30 * 60
_HASH_CHARS = 12

Log = Callable[[str], None]


def print_to_stderr(line: str) -> None:
    """Default progress sink: stdout may be carrying the agent's own output."""
    print(line, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- inputs


def sandboxes_dir() -> Path:
    return resource_dir("sandboxes")


def kernel_dir() -> Path:
    """The in-container interpreter's sources (this module lives in the same package)."""
    return Path(__file__).resolve().parent / "kernel"


def _input_files(root: Path) -> list[tuple[str, Path]]:
    """Files under `root` that go into an image, as (relative posix path, path), in a stable order."""
    if not root.is_dir():
        return []
    files = [
        (path.relative_to(root).as_posix(), path)
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]
    return sorted(files)


def _is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o111)


def _feed(digest: hashlib._Hash, label: str, data: bytes) -> None:
    """Length-prefix every field so no two different input sets can hash the same."""
    for part in (label.encode(), data):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)


def _feed_tree(digest: hashlib._Hash, label: str, root: Path) -> None:
    for rel, path in _input_files(root):
        mode = b"x" if _is_executable(path) else b"-"  # the build context keeps the executable bit
        _feed(digest, f"{label}/{rel}", mode + path.read_bytes())


def _short_hash(digest: hashlib._Hash) -> str:
    return digest.hexdigest()[:_HASH_CHARS]


def offline_base_tag(sandboxes_root: Path | None = None) -> str:
    """Tag of the Debian base built from `sandboxes/base/`: changes only when that recipe changes."""
    digest = hashlib.sha256()
    _feed_tree(digest, "base", (sandboxes_root or sandboxes_dir()) / "base")
    return f"{BASE_REPO}:{_short_hash(digest)}"


def image_tag(
    base: str = DEFAULT_BASE, *, sandboxes_root: Path | None = None, kernel: Path | None = None
) -> str:
    """`actsmith-sandbox:<hash>` over the recipe files, the offline base recipe, the kernel and `base`."""
    root = sandboxes_root or sandboxes_dir()
    digest = hashlib.sha256()
    _feed(digest, "base-name", base.encode())
    _feed_tree(digest, "default", root / "default")
    # The offline base recipe is an input too: on a host without a registry it becomes the FROM image.
    _feed_tree(digest, "base", root / "base")
    _feed_tree(digest, "kernel", kernel or kernel_dir())
    return f"{IMAGE_REPO}:{_short_hash(digest)}"


# ------------------------------------------------------------------------------------------ entry point


def ensure_image(
    client: docker.DockerClient,
    base: str = DEFAULT_BASE,
    *,
    rebuild: bool = False,
    log: Log = print_to_stderr,
    before_build: Callable[[], None] = lambda: None,
) -> str:
    """Return the sandbox image tag, building it (and its base) first if it is not present locally;
    `before_build` runs first when a build is needed."""
    tag = image_tag(base)
    if not rebuild and image_exists(client, tag):  # hot path: one API call
        return tag
    before_build()
    with _build_lock(log):
        # Another process may have built it while we waited for the lock.
        if not rebuild and image_exists(client, tag):
            return tag
        resolved = _resolve_base(client, base, log)
        _build_sandbox(client, tag, resolved, rebuild=rebuild, log=log)
    return tag


@dataclass(frozen=True)
class ImagePlan:
    """Whether the sandbox image is present, and if not, how the first run will get it."""

    tag: str
    present: bool
    how: str


def plan_image(client: docker.DockerClient, base: str = DEFAULT_BASE) -> ImagePlan:
    """What `ensure_image` would do, without doing it; EnvironmentProblem (naming the fix) when the
    image can be neither found nor built. The registry is asked for metadata only, nothing is pulled."""
    tag = image_tag(base)
    if image_exists(client, tag):
        return ImagePlan(tag, True, "present")
    if image_exists(client, base):
        how = f"the first run builds it on {base}, present locally (seconds)"
    elif image_exists(client, offline_base_tag()):
        how = f"the first run builds it on the offline base {offline_base_tag()}, present locally (seconds)"
    elif _in_registry(client, base):
        how = f"the first run pulls {base} and builds on it"
    else:
        _require_debootstrap()
        how = "no registry is reachable: the first run builds a base from Debian packages (about a minute)"
    return ImagePlan(tag, False, how)


def _in_registry(client: docker.DockerClient, base: str) -> bool:
    from docker.errors import APIError, NotFound

    try:
        client.images.get_registry_data(base)
    except NotFound as exc:
        raise EnvironmentProblem(f"base image {base!r} does not exist in its registry") from exc
    except APIError:
        return False
    return True


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client.images.get(ref)
    except ImageNotFound:
        return False
    return True


# ----------------------------------------------------------------------------------------------- locking


def cache_dir() -> Path:
    """`~/.cache/actsmith`, or a per-user temp dir when HOME is not writable."""
    candidates = [Path(tempfile.gettempdir()) / f"actsmith-{os.getuid()}"]
    with contextlib.suppress(RuntimeError, KeyError):  # an arbitrary uid may have no home at all
        cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        candidates.insert(0, Path(cache_home) / "actsmith")
    for candidate in candidates:
        with contextlib.suppress(OSError):
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
    raise EnvironmentProblem(f"no writable cache directory for actsmith (tried {candidates[0]})")


@contextlib.contextmanager
def _build_lock(log: Log) -> Iterator[None]:
    """Serialise builds across processes: two at once would race on the same tags and temp space."""
    try:
        import fcntl
    except ImportError:  # not POSIX: Docker tags still end consistent, we just may build twice
        yield
        return
    with open(cache_dir() / "image-build.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("waiting for another actsmith process to finish building the sandbox image ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------- base resolution


def _resolve_base(client: docker.DockerClient, base: str, log: Log) -> str:
    """The image to build FROM: `base` if local or pullable, else the offline Debian base."""
    if image_exists(client, base) or _pull(client, base, log):
        return base
    return _ensure_offline_base(client, log)


def _pull(client: docker.DockerClient, base: str, log: Log) -> bool:
    """Pull `base`; False when the registry is unreachable. A name the registry rejects is an error."""
    from docker.errors import APIError, NotFound

    log(f"pulling {base} ...")
    try:
        client.images.pull(base)
    except NotFound as exc:
        raise EnvironmentProblem(
            f"base image {base!r} does not exist in its registry: {_one_line(exc.explanation)}"
        ) from exc
    except APIError as exc:
        log(f"cannot pull {base}: {_one_line(exc.explanation or str(exc))}")
        return False
    return True


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ------------------------------------------------------------------------------ offline base (Debian)


@dataclass(frozen=True)
class BaseRecipe:
    """`sandboxes/base/debian.yaml`: what debootstrap installs and what is stripped before import."""

    suite: str
    variant: str
    mirror: str
    packages: list[str]
    remove: list[str]
    config: list[str]


def load_base_recipe(sandboxes_root: Path | None = None) -> BaseRecipe:
    import yaml  # only needed on the rare offline build path

    path = (sandboxes_root or sandboxes_dir()) / "base" / "debian.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return BaseRecipe(
        suite=str(data["suite"]),
        variant=str(data["variant"]),
        mirror=os.environ.get(MIRROR_ENV) or str(data["mirror"]),
        packages=[str(p) for p in data["packages"]],
        remove=[str(p) for p in data.get("remove", [])],
        config=[str(c) for c in data.get("config", [])],
    )


def _ensure_offline_base(client: docker.DockerClient, log: Log) -> str:
    """`actsmith-base:<recipe hash>`, built once from Debian packages and then reused by tag."""
    tag = offline_base_tag()
    if image_exists(client, tag):
        return tag
    recipe = load_base_recipe()
    debootstrap = _require_debootstrap()
    log("no registry: building base from Debian packages (about a minute) ...")
    started = time.monotonic()
    with _scratch_dir("actsmith-rootfs-", log) as work:
        rootfs = work / "rootfs"
        _run_debootstrap(debootstrap, recipe, rootfs, cache_dir() / "debootstrap.log")
        _strip_rootfs(rootfs, recipe.remove)
        tarball = _pack_rootfs(rootfs, work / "rootfs.tar")
        log(f"importing {tag} ...")
        _import_rootfs(client, tarball, tag, recipe.config)
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag


def _require_debootstrap() -> str:
    path = shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise EnvironmentProblem(
            "no container registry is reachable and debootstrap is missing: install it: "
            "apt-get install debootstrap (or make a registry reachable so the base image can be pulled)"
        )
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            "no container registry is reachable and building the offline base with debootstrap needs "
            "root: run actsmith once as root (or make a registry reachable so the base can be pulled)"
        )
    return path


def _scratch_dir_parent() -> str | None:
    """A disk-backed temp dir: the root filesystem and its tarball take a few hundred MB."""
    if os.environ.get("TMPDIR"):
        return None
    return "/var/tmp" if os.path.isdir("/var/tmp") else None


@contextlib.contextmanager
def _scratch_dir(prefix: str, log: Log) -> Iterator[Path]:
    """A temp dir removed afterwards even on failure, but never while something is mounted inside."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=_scratch_dir_parent()))
    try:
        yield work
    finally:
        _unmount_under(work)
        still_mounted = _mounts_under(work)
        if still_mounted:
            # rmtree would descend into a bind-mounted /dev or /proc of the host.
            log(f"left {work} in place: {still_mounted[0]} is still mounted")
        else:
            shutil.rmtree(work, ignore_errors=True)


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (debootstrap mounts /proc, /sys, /dev/pts)."""
    prefix = str(root.resolve())
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) < 2:
            continue
        point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[1])  # " " appears as \040
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _unmount_under(root: Path) -> None:
    """Undo mounts a killed debootstrap left behind (its own exit trap normally does this)."""
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _run_debootstrap(debootstrap: str, recipe: BaseRecipe, rootfs: Path, log_path: Path) -> None:
    command = [
        debootstrap,
        f"--variant={recipe.variant}",
        f"--include={','.join(recipe.packages)}",
        recipe.suite,
        str(rootfs),
        recipe.mirror,
    ]
    with open(log_path, "w", encoding="utf-8") as log_file:
        log_file.write("$ " + " ".join(command) + "\n")
        log_file.flush()
        returncode = _wait_for(
            subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        )
    if returncode != 0:
        _append_inner_log(rootfs, log_path)  # the detailed log lives in the rootfs we are about to delete
        raise EnvironmentProblem(
            f"debootstrap failed (exit {returncode}): {_last_line(log_path)} (full log: {log_path})"
        )


def _wait_for(process: subprocess.Popen[bytes]) -> int:
    """Wait for debootstrap; on timeout or Ctrl-C let it run its exit trap (unmounts) before killing."""
    try:
        return process.wait(timeout=DEBOOTSTRAP_TIMEOUT_S)
    except BaseException:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise


def _append_inner_log(rootfs: Path, log_path: Path) -> None:
    inner = rootfs / "debootstrap" / "debootstrap.log"
    with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as out:
        out.write(f"\n--- {inner} ---\n")
        out.write(inner.read_text(encoding="utf-8", errors="replace"))


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    # Prefer debootstrap's own error line over the trailing inner log.
    errors = [line for line in lines if line.startswith("E: ")]
    meaningful = errors or [line for line in lines if line.strip() and not line.startswith("--- ")]
    return _one_line(meaningful[-1]) if meaningful else "(empty log)"


def _strip_rootfs(rootfs: Path, patterns: Iterable[str]) -> None:
    """Delete docs and caches; never follow a symlink out of the rootfs (e.g. var/run -> /run)."""
    if _mounts_under(rootfs):
        raise EnvironmentProblem(f"{rootfs} still has mounts after debootstrap; not touching it")
    root = rootfs.resolve()
    for pattern in patterns:
        for path in root.glob(pattern):
            if not path.parent.resolve().is_relative_to(root):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _pack_rootfs(rootfs: Path, tarball: Path) -> Path:
    """GNU tar with numeric owners: uids must match the rootfs's own /etc/passwd, not the host's."""
    result = subprocess.run(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise EnvironmentProblem(f"packing the Debian root filesystem failed: {_one_line(result.stderr)}")
    return tarball


def _import_rootfs(client: docker.DockerClient, tarball: Path, tag: str, config: list[str]) -> None:
    from docker.errors import APIError

    repository, _, version = tag.partition(":")
    changes = [*config, f"LABEL {IMAGE_LABEL}=base"]
    try:
        # From a file path the SDK streams with no read timeout; importing a few hundred MB takes a while.
        client.api.import_image_from_file(str(tarball), repository=repository, tag=version, changes=changes)
    except APIError as exc:
        raise EnvironmentProblem(f"docker import of {tag} failed: {_one_line(exc.explanation)}") from exc
    if not image_exists(client, tag):
        raise EnvironmentProblem(f"docker import of {tag} reported success but the image is missing")


# ----------------------------------------------------------------------------------------- final image


def _build_sandbox(client: docker.DockerClient, tag: str, base: str, *, rebuild: bool, log: Log) -> None:
    from docker.errors import APIError, BuildError

    log(f"building {tag} on {base} ...")
    with _scratch_dir("actsmith-build-", log) as context:
        _assemble_context(context, sandboxes_dir() / "default", kernel_dir())
        try:
            client.images.build(
                path=str(context),
                tag=tag,
                buildargs={"BASE": base},
                labels={IMAGE_LABEL: "sandbox"},  # each label key costs a build step
                pull=False,  # the base was resolved above; a re-pull would fail offline
                nocache=rebuild,
                rm=True,
                forcerm=True,
            )
        except BuildError as exc:
            raise EnvironmentProblem(f"docker build of {tag} failed: {_build_failure(exc)}") from exc
        except APIError as exc:
            raise EnvironmentProblem(f"docker build of {tag} failed: {_one_line(exc.explanation)}") from exc
    log(f"built {tag}")


def _assemble_context(context: Path, recipe: Path, kernel: Path) -> None:
    """The recipe directory plus the kernel in `kernel/`, world-readable whatever the host umask."""
    for rel, source in _input_files(recipe):
        if rel == "kernel" or rel.startswith("kernel/"):
            raise ValueError(f"{recipe} must not contain kernel/: the build puts the kernel there")
        _copy_normalised(source, context / rel)
    (context / "kernel").mkdir(mode=0o755, exist_ok=True)
    for rel, source in _input_files(kernel):
        _copy_normalised(source, context / "kernel" / rel)
    for directory in [context, *(p for p in context.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)


def _copy_normalised(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(0o755 if _is_executable(source) else 0o644)


# Lines the classic builder prints itself; they never explain a failure.
_BUILDER_CHATTER = re.compile(r"\s*(Step \d+/\d+ :|---> |Removing intermediate container |Successfully )")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# "The command '/bin/sh -c <the whole RUN script>' returned a non-zero code: 1": the script is noise.
_RUN_FAILED = re.compile(r"The command .* returned a non-zero code: (\d+)\s*$", re.S)


def _build_failure(exc: BuildError) -> str:
    """The failing step's exit code plus the last line it printed, which usually names the real problem."""
    last = ""
    for chunk in exc.build_log:
        for line in _ANSI_ESCAPE.sub("", str(chunk.get("stream") or "")).splitlines():
            if line.strip() and not _BUILDER_CHATTER.match(line):
                last = line.strip()
    run_failed = _RUN_FAILED.match(str(exc.msg))
    reason = f"a RUN step exited with code {run_failed.group(1)}" if run_failed else _one_line(exc.msg)
    return f"{reason} (last output: {_one_line(last, 200)})" if last else reason

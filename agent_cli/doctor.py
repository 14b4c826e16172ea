"""`actsmith doctor`: check everything a run needs, one line per check, each failure with its fix.

Checks: the settings, Docker (reachable, its version), the sandbox image (present, or how the first run
will get it), the repository's setup (what it runs, and whether its environment image is ready), the
model configuration (a model, and credentials for it: names only, never values), and containers
left by runs that died. Secrets are never printed: only the names of missing keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_cli.errors import EXIT_OK, EXIT_USAGE, ActsmithError
from agent_cli.settings import Settings, load_settings

if TYPE_CHECKING:
    import docker

    from agent_cli.setup import SetupPlan

DOCKER_TIMEOUT_S = 10


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<10} {self.detail}{fix}"


def run_checks(repo: Path | None, flags: dict[str, Any]) -> list[Check]:
    """Every check, in the order a run needs them; later checks are skipped when Docker is down."""
    config, settings = check_settings(repo, flags)
    docker_check, client = check_docker()
    checks = [config, docker_check]
    if client is None:
        skipped = "not checked: Docker is not reachable"
        checks += [Check("image", False, skipped), Check("leftovers", False, skipped)]
    else:
        checks += [check_image(client, settings), check_leftovers(client)]
        if repo is not None:
            checks.append(check_setup(client, settings, repo))
    if repo is not None:
        checks.append(check_instructions(repo))
    checks.append(check_model(settings))
    return checks


def exit_code(checks: list[Check]) -> int:
    return EXIT_OK if all(check.ok for check in checks) else EXIT_USAGE


def check_settings(repo: Path | None, flags: dict[str, Any]) -> tuple[Check, Settings]:
    """The merged settings and the sandbox limits they give. When they are broken, defaults and the
    model named by the flags stand in, so the other checks still run."""
    from agent_cli.sandbox import SandboxLimits

    try:
        settings = load_settings(repo, flags)
        limits = SandboxLimits.from_settings(settings)
    except ActsmithError as error:
        fallback = Settings(model=flags.get("model") or "", api_base=flags.get("api_base"))
        return Check("settings", False, str(error)), fallback
    network = "on" if limits.network else "off"
    detail = f"sandbox memory {limits.memory}, cpus {limits.cpus:g}, pids {limits.pids}, network {network}"
    return Check("settings", True, detail), settings


def check_docker() -> tuple[Check, docker.DockerClient | None]:
    import docker

    try:
        client = docker.from_env(timeout=DOCKER_TIMEOUT_S)
        version = client.version()
    except Exception as error:
        detail = f"Docker daemon not reachable ({type(error).__name__})"
        return Check("docker", False, detail, "start Docker, or set DOCKER_HOST to a reachable daemon"), None
    where = client.api.base_url.replace("http+docker://localhost", "local socket")
    detail = f"Docker Engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')}) at {where}"
    return Check("docker", True, detail), client


def check_image(client: docker.DockerClient, settings: Settings) -> Check:
    from docker.errors import ImageNotFound

    from agent_cli.sandbox.image import plan_image

    if settings.image:
        try:
            client.images.get(settings.image)
        except ImageNotFound:
            return Check("image", False, f"{settings.image} (--image) is not present", "pull or build it")
        return Check("image", True, f"{settings.image} (--image) present")
    try:
        plan = plan_image(client, settings.base_image)
    except ActsmithError as error:
        return Check("image", False, "the sandbox image is missing and cannot be built", str(error))
    return Check("image", True, f"{plan.tag} {plan.how}")


def check_setup(client: docker.DockerClient, settings: Settings, repo: Path) -> Check:
    """The setup plan: its commands, why each file was chosen or left out, and whether its
    environment image is ready."""
    from docker.errors import ImageNotFound

    from agent_cli.sandbox.image import image_tag
    from agent_cli.setup import plan_for
    from agent_cli.setup.environment import environment_key, reusable

    plan = plan_for(settings, repo)
    why = _choices_text(plan)
    if plan.empty:
        return Check("setup", True, f"none ({plan.reason}){why}")
    what = f"{' && '.join(plan.commands)} ({plan.reason}){why}"
    try:
        key = environment_key(
            client, settings.image or image_tag(settings.base_image), plan, root=repo, repo=repo
        )
    except ImageNotFound:
        key = None  # no sandbox image yet: no environment either
    if key is None or not reusable(client, key):
        return Check(
            "setup", True, f"{what}; the first run builds its environment (or: actsmith sandbox setup)"
        )
    return Check("setup", True, f"{what}; environment {key.tag} is ready")


def _choices_text(plan: SetupPlan) -> str:
    taken = [choice.text() for choice in plan.choices if choice.taken]
    left = [choice.text() for choice in plan.choices if not choice.taken]
    text = f"; chosen: {', '.join(taken)}" if taken else ""
    text += f"; left out: {', '.join(left)}" if left else ""
    if plan.fallbacks:
        text += "; if it fails: " + " / ".join(f.reason.rpartition("; fallback: ")[2] for f in plan.fallbacks)
        text += " / the plain sandbox"
    return text


def check_instructions(repo: Path) -> Check:
    """The AGENTS.md files the model will be given (the root one always, a folder's when it works there)."""
    from agent_cli.instructions import RepoInstructions

    found = RepoInstructions.read(repo).files
    if not found:
        return Check(
            "agents.md", True, "none (AGENTS.md, AGENT.md, CLAUDE.md or .github/copilot-instructions.md)"
        )
    shown = [f"{item.path}{f' (cut by {item.cut} characters)' if item.cut else ''}" for item in found]
    return Check("agents.md", True, ", ".join(shown))


def check_leftovers(client: docker.DockerClient) -> Check:
    from agent_cli.sandbox.identity import sandbox_containers

    containers = sandbox_containers(client)
    orphans = [c.name for c in containers if c.orphaned]
    live = len(containers) - len(orphans)
    running = f"; {live} of runs in progress" if live else ""
    if orphans:
        detail = f"{len(orphans)} container(s) of runs that died: {', '.join(orphans[:5])}{running}"
        return Check("leftovers", False, detail, "actsmith sandbox clean")
    return Check("leftovers", True, f"no containers of runs that died{running}")


def check_model(settings: Settings) -> Check:
    from agent_cli.model import REPLAY_PREFIX, check_credentials, make_model

    try:
        make_model(settings.model, api_base=settings.api_base)  # a replay file is read and validated
        check_credentials(settings.model, api_base=settings.api_base)
    except ActsmithError as error:
        return Check("model", False, str(error))
    if settings.model.startswith(REPLAY_PREFIX):
        return Check("model", True, f"{settings.model} (scripted replies, no provider)")
    where = f" at {settings.api_base}" if settings.api_base else ": its credentials are set"
    return Check("model", True, f"{settings.model}{where}")

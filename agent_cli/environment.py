"""The image a sandbox runs, prepared in one sequence: the sandbox image (the user's, or ours built
from sandboxes/ when missing), then the repository's environment image on top of it when setup has
work to do. A session's sandbox, a batch preparing a task ahead and `actsmith sandbox setup` all go
through `prepare`; it sits above sandbox/ and setup/, which never import each other's Docker code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agent_cli.errors import EnvironmentProblem
from agent_cli.sandbox import SandboxFactory, SandboxLimits, SandboxRequest
from agent_cli.sandbox.identity import docker_client

if TYPE_CHECKING:
    import docker

    from agent_cli.events import EventStream
    from agent_cli.sandbox.docker_sandbox import DockerSandbox
    from agent_cli.settings import Settings
    from agent_cli.setup import Prepared


def prepare(
    settings: Settings,
    request: SandboxRequest,
    events: EventStream,
    *,
    rebuild: bool = False,
    client: docker.DockerClient | None = None,
) -> Prepared:
    """The image (and layered folders) a sandbox on `request.root` starts from."""
    from agent_cli.setup import prepare_environment

    client = client or docker_client()
    image = image_for(client, settings, events.notice, before_build=request.ready)
    return prepare_environment(client, image, settings, request, events, rebuild=rebuild)


def docker_factory(settings: Settings, events: EventStream) -> SandboxFactory:
    """Sandboxes for sessions with these settings, each on its prepared image."""

    def make(request: SandboxRequest) -> DockerSandbox:
        from agent_cli.sandbox.docker_sandbox import DockerSandbox

        client = docker_client()
        prepared = prepare(settings, request, events, client=client)
        return DockerSandbox(
            client,
            prepared.image,
            request.root,
            SandboxLimits.from_settings(settings),
            layers=prepared.layers,
            setup_problem=prepared.problem,
            read_only=request.read_only,
        )

    return make


def image_for(
    client: docker.DockerClient,
    settings: Settings,
    log: Callable[[str], None],
    before_build: Callable[[], None] = lambda: None,
) -> str:
    """The image to run: the one the user named, or ours built from sandboxes/ (cached by recipe hash)."""
    if settings.image:
        from docker.errors import ImageNotFound

        try:
            client.images.get(settings.image)
        except ImageNotFound:
            raise EnvironmentProblem(
                f"image {settings.image} is not present locally: pull or build it, or drop --image"
            ) from None
        return settings.image
    from agent_cli.sandbox.image import ensure_image

    return ensure_image(client, base=settings.base_image, log=log, before_build=before_build)

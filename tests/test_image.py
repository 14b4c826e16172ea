"""The sandbox image: tag hashing (no Docker) and the real build path (offline here: no registry)."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest

from agent_cli.errors import EnvironmentProblem
from agent_cli.sandbox import image
from agent_cli.sandbox.image import ensure_image, image_tag, offline_base_tag

TAG_PATTERN = re.compile(r"actsmith-sandbox:[0-9a-f]{12}")
TEST_LABEL = {"actsmith.test": "test_image"}


# ------------------------------------------------------------------------------------- tag (no Docker)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    """Private copies of sandboxes/ and the kernel dir, so tests can edit them."""
    sandboxes = tmp_path / "sandboxes"
    kernel = tmp_path / "kernel"
    shutil.copytree(image.sandboxes_dir(), sandboxes)
    shutil.copytree(image.kernel_dir(), kernel, ignore=shutil.ignore_patterns("__pycache__"))
    (kernel / "probe.py").write_text("VALUE = 1\n")
    return sandboxes, kernel


def tag_of(inputs: tuple[Path, Path], base: str = image.DEFAULT_BASE) -> str:
    sandboxes, kernel = inputs
    return image_tag(base, sandboxes_root=sandboxes, kernel=kernel)


def test_tag_is_well_formed_and_stable(inputs: tuple[Path, Path]) -> None:
    assert TAG_PATTERN.fullmatch(image_tag())
    assert image_tag() == image_tag()
    assert tag_of(inputs) == tag_of(inputs)


def test_tag_follows_kernel_content(inputs: tuple[Path, Path]) -> None:
    before = tag_of(inputs)
    (inputs[1] / "probe.py").write_text("VALUE = 2\n")
    assert tag_of(inputs) != before


def test_tag_ignores_bytecode_caches(inputs: tuple[Path, Path]) -> None:
    before = tag_of(inputs)
    cache = inputs[1] / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "probe.cpython-312.pyc").write_bytes(b"\0junk")
    assert tag_of(inputs) == before


def test_tag_follows_base_name(inputs: tuple[Path, Path]) -> None:
    assert tag_of(inputs, "python:3.12-slim") != tag_of(inputs, "debian:bookworm")


def test_tag_follows_recipes_but_not_the_readme(inputs: tuple[Path, Path]) -> None:
    sandboxes, _ = inputs
    before, base_before = tag_of(inputs), offline_base_tag(sandboxes)

    (sandboxes / "README.md").write_text("docs only\n")
    assert (tag_of(inputs), offline_base_tag(sandboxes)) == (before, base_before)

    with open(sandboxes / "default" / "Dockerfile", "a") as dockerfile:
        dockerfile.write("# changed\n")
    after_dockerfile = tag_of(inputs)
    assert after_dockerfile != before
    assert offline_base_tag(sandboxes) == base_before

    with open(sandboxes / "base" / "debian.yaml", "a") as recipe:
        recipe.write("# changed\n")
    assert offline_base_tag(sandboxes) != base_before
    assert tag_of(inputs) != after_dockerfile


def test_offline_base_tag_ignores_the_kernel(inputs: tuple[Path, Path]) -> None:
    assert offline_base_tag(inputs[0]) == offline_base_tag()
    assert re.fullmatch(r"actsmith-base:[0-9a-f]{12}", offline_base_tag())


def test_base_recipe_and_mirror_override(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = image.load_base_recipe()
    assert {"python3", "git", "python3-pytest"} <= set(recipe.packages)
    monkeypatch.setenv(image.MIRROR_ENV, "http://mirror.example/debian")
    assert image.load_base_recipe().mirror == "http://mirror.example/debian"


def test_build_context_is_world_readable(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    sandboxes, kernel = inputs
    (kernel / "probe.py").chmod(0o600)
    context = tmp_path / "context"
    context.mkdir()
    image._assemble_context(context, sandboxes / "default", kernel)
    assert (context / "Dockerfile").is_file()
    assert (context / "kernel" / "probe.py").stat().st_mode & 0o777 == 0o644
    assert (context / "kernel").stat().st_mode & 0o777 == 0o755


# ---------------------------------------------------------------------------------------- real Docker


@pytest.fixture(scope="module")
def client(docker_client) -> object:
    """The suite's Docker client: an unreachable engine fails these tests, it never skips them."""
    return docker_client


@pytest.fixture(scope="module")
def built(client) -> str:
    """The real image, built (offline here: no registry) or found by tag."""
    return ensure_image(client, log=lambda line: None)


def run_in(client, tag: str, script: str, user: str = "65534:65534", commit_as: str = "") -> str:
    """Run `sh -c script` with no network (as an arbitrary uid by default); always remove the container."""
    container = client.containers.create(
        tag, ["sh", "-c", script], user=user, network_disabled=True, labels=TEST_LABEL
    )
    try:
        container.start()
        status = container.wait(timeout=120)["StatusCode"]
        output = container.logs(stdout=True, stderr=True).decode()
        assert status == 0, output
        if commit_as:
            repository, _, version = commit_as.partition(":")
            container.commit(repository=repository, tag=version)
        return output
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_image_has_python_pytest_git_and_the_kernel(client, built: str) -> None:
    kernel_files = sorted(p.name for p in image.kernel_dir().glob("*.py"))
    output = run_in(
        client,
        built,
        "python3 -c 'import pytest; print(\"pytest\", pytest.__version__)' && git --version && "
        'cd /opt/actsmith && for f in *.py; do [ -e "$f" ] || continue; cat "$f" >/dev/null && '
        'echo "kernel $f"; done',
    )
    assert re.search(r"^pytest \d", output, re.M), output
    assert re.search(r"^git version \d", output, re.M), output
    assert re.findall(r"^kernel (\S+)$", output, re.M) == kernel_files


@pytest.mark.docker
def test_image_config(client, built: str) -> None:
    config = client.images.get(built).attrs["Config"]
    assert config["WorkingDir"] == "/workspace"
    assert {"HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"} <= set(config["Env"])
    assert config["Cmd"] == ["python3", "-u", "/opt/actsmith/server.py"]


@pytest.mark.docker
def test_second_call_reuses_the_image(client, built: str) -> None:
    image_id = client.images.get(built).id
    lines: list[str] = []
    assert ensure_image(client, log=lines.append) == built
    assert lines == []  # no pull, no build: the hot path only looked the tag up
    assert client.images.get(built).id == image_id


@pytest.mark.docker
def test_concurrent_calls_build_once(client, built: str) -> None:
    # A base that is present locally gives a fresh tag whose build is quick and needs no network.
    tag = image_tag(built)
    if image.image_exists(client, tag):
        client.images.remove(tag)
    logs: list[list[str]] = [[], []]
    results: list[str | BaseException] = ["", ""]

    def call(index: int) -> None:
        try:
            results[index] = ensure_image(client, built, log=logs[index].append)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [tag, tag]
        building = [line for log in logs for line in log if line.startswith("building ")]
        assert len(building) == 1, logs
    finally:
        if image.image_exists(client, tag):
            client.images.remove(tag)


@pytest.mark.docker
def test_failed_build_is_one_actionable_line(client, built: str) -> None:
    base = "actsmith-test-nopython:latest"
    # Every python3 on PATH goes (the sandbox's virtualenv has one too).
    no_python = 'while command -v python3 >/dev/null; do rm -f "$(command -v python3)"; hash -r; done'
    run_in(client, built, no_python, user="0", commit_as=base)
    tag = image_tag(base)
    try:
        with pytest.raises(EnvironmentProblem) as failure:
            ensure_image(client, base, log=lambda line: None)
        assert str(failure.value) == (
            f"docker build of {tag} failed: a RUN step exited with code 1 "
            "(last output: actsmith: the base image has no python3)"
        )
    finally:
        if image.image_exists(client, tag):
            client.images.remove(tag)
        client.images.remove(base)

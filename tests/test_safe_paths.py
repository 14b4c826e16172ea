"""safe_paths: host reads and writes under the repository never follow a link out of it."""

from __future__ import annotations

import os
import threading

import pytest

from agent_cli import safe_paths
from agent_cli.safe_paths import PathRefused


@pytest.fixture
def layout(tmp_path):
    """A repository with a file, and a secret outside it that links inside point at."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("x = 1\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOPSECRET\n")
    return root, outside


def test_a_regular_file_is_read(layout):
    root, _ = layout
    assert safe_paths.read_bytes(root, "src/app.py") == b"x = 1\n"
    assert safe_paths.read_text(root, "src/app.py", limit=3) == "x ="


def test_a_link_as_the_last_component_is_refused(layout):
    root, outside = layout
    (root / "src" / "app.py").unlink()
    (root / "src" / "app.py").symlink_to(outside / "secret.txt")
    with pytest.raises(PathRefused, match=r"src/app.py is a symbolic link"):
        safe_paths.read_bytes(root, "src/app.py")


def test_a_link_in_the_middle_of_the_path_is_refused(layout):
    root, outside = layout
    (root / "data").symlink_to(outside)
    with pytest.raises(PathRefused, match=r"^data is a symbolic link"):
        safe_paths.read_bytes(root, "data/secret.txt")
    assert "data/secret.txt" not in safe_paths.lstat_all(root, ["data/secret.txt", "src/app.py"])


def test_paths_that_climb_out_or_are_absolute_are_refused(layout):
    root, outside = layout
    for path in ("../outside/secret.txt", "src/../../outside/secret.txt", str(outside / "secret.txt")):
        with pytest.raises(PathRefused, match="is not a path inside the repository"):
            safe_paths.read_bytes(root, path)


def test_a_fifo_is_refused_without_waiting_for_a_writer(layout):
    root, _ = layout
    os.mkfifo(root / "pipe")
    result: list[BaseException] = []

    def read() -> None:
        try:
            safe_paths.read_bytes(root, "pipe")
        except OSError as error:
            result.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "the read blocked on the FIFO"
    assert "not a regular file" in str(result[0])


def test_follow_inside_reads_a_link_within_the_repository_and_refuses_one_leading_out(layout):
    root, outside = layout
    (root / "setup.cfg").symlink_to("src/app.py")
    (root / "pyproject.toml").symlink_to(outside / "secret.txt")
    assert safe_paths.read_text(root, "setup.cfg", follow_inside=True) == "x = 1\n"
    with pytest.raises(PathRefused, match="leads out of the repository"):
        safe_paths.read_text(root, "pyproject.toml", follow_inside=True)


def test_appending_makes_the_folders_and_refuses_a_planted_link(layout):
    root, outside = layout
    with safe_paths.open_file(root, ".actsmith/runs/1/trajectory.jsonl", "a") as out:
        out.write("line\n")
    assert (root / ".actsmith/runs/1/trajectory.jsonl").read_text() == "line\n"

    (root / ".actsmith" / "runs" / "2").symlink_to(outside)  # a folder swapped for a link
    with pytest.raises(PathRefused, match=r"^\.actsmith/runs/2 is a symbolic link"):
        safe_paths.open_file(root, ".actsmith/runs/2/trajectory.jsonl", "a")
    (root / ".actsmith" / "t.jsonl").symlink_to(outside / "secret.txt")  # the file itself
    with pytest.raises(PathRefused, match=r"^\.actsmith/t.jsonl is a symbolic link"):
        safe_paths.open_file(root, ".actsmith/t.jsonl", "a")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "TOPSECRET\n"


def test_open_path_opens_paths_outside_the_repository_as_they_are(layout, tmp_path):
    root, _ = layout
    with safe_paths.open_path(tmp_path / "logs" / "t.jsonl", "a", root) as out:
        out.write("x")
    assert (tmp_path / "logs" / "t.jsonl").read_text() == "x"
    (root / "link").symlink_to(tmp_path / "logs")
    with pytest.raises(PathRefused):
        safe_paths.open_path(root / "link" / "t.jsonl", "a", root)


def test_an_atomic_write_replaces_a_link_instead_of_writing_through_it(layout):
    root, outside = layout
    (root / ".actsmith").mkdir()
    (root / ".actsmith" / "session.json").symlink_to(outside / "secret.txt")
    safe_paths.write_atomic(root, ".actsmith/session.json", b"{}")
    assert not (root / ".actsmith" / "session.json").is_symlink()
    assert (root / ".actsmith" / "session.json").read_bytes() == b"{}"
    assert (outside / "secret.txt").read_text() == "TOPSECRET\n"
    assert sorted(p.name for p in (root / ".actsmith").iterdir()) == ["session.json"]


def test_removing_a_file_removes_the_folders_it_leaves_empty_and_never_goes_through_a_link(layout):
    root, outside = layout
    (root / "build" / "deep").mkdir(parents=True)
    (root / "build" / "deep" / "out.txt").write_text("o")
    (root / "build" / "keep.txt").write_text("k")
    safe_paths.remove_file(root, "build/deep/out.txt")
    assert sorted(p.name for p in (root / "build").iterdir()) == ["keep.txt"]

    (root / "cache").symlink_to(outside)
    with pytest.raises(PathRefused):
        safe_paths.remove_file(root, "cache/secret.txt")
    assert (outside / "secret.txt").exists()


def test_the_chat_history_keeps_prompt_toolkits_format_and_is_never_read_or_written_through_a_link(layout):
    from prompt_toolkit.history import FileHistory

    from agent_cli.chat.input import RepositoryHistory

    root, outside = layout
    history = RepositoryHistory(root, ".actsmith/chat/history")
    history.store_string("first")
    history.store_string("two\nlines")
    assert list(history.load_history_strings()) == ["two\nlines", "first"]
    assert list(FileHistory(str(root / ".actsmith/chat/history")).load_history_strings()) == [
        "two\nlines",
        "first",
    ]

    (root / ".actsmith" / "chat" / "history").unlink()
    (root / ".actsmith" / "chat" / "history").symlink_to(outside / "secret.txt")
    assert list(history.load_history_strings()) == []
    history.store_string("not kept")
    assert (outside / "secret.txt").read_text() == "TOPSECRET\n"

"""The chat's input line (prompt_toolkit): `actsmith> `, Enter sends, Alt-Enter (or a paste) makes
several lines, a history kept per repository, completion of slash commands and of file paths."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import History
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from agent_cli.safe_paths import open_file, read_text

PROMPT = "actsmith> "


class ChatCompleter(Completer):
    """Slash commands at the start of the line; file paths (relative to the repository) elsewhere."""

    def __init__(self, commands: dict[str, str], root: Path):
        self.commands = commands
        self.paths = PathCompleter(get_paths=lambda: [str(root)], expanduser=False)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if text.startswith("/") and " " not in text:
            for name, help_text in self.commands.items():
                if name.startswith(text[1:]):
                    yield Completion(f"/{name}", start_position=-len(text), display_meta=help_text)
            return
        word = document.get_word_before_cursor(WORD=True)
        if not word or word.startswith("/"):
            return
        yield from self.paths.get_completions(Document(word, len(word)), complete_event)


def key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add("c-c")
    def _interrupt(event: KeyPressEvent) -> None:
        """Ctrl-C clears a line being typed; on an empty line it counts towards leaving."""
        if event.current_buffer.text:
            event.current_buffer.reset()
        else:
            event.app.exit(exception=KeyboardInterrupt())

    return bindings


class RepositoryHistory(History):
    """The input history in a file of the repository, in prompt_toolkit's FileHistory format,
    opened through safe_paths: the sandbox could have replaced the file (or a folder above it) with
    a link to a file of the user's. A history that cannot be read or written is simply not kept."""

    def __init__(self, root: Path, relative: str):
        super().__init__()
        self.root = root
        self.relative = relative

    def load_history_strings(self) -> Iterable[str]:
        try:
            text = read_text(self.root, self.relative)
        except OSError:
            return []
        entries: list[str] = []
        lines: list[str] = []
        for line in [*text.splitlines(keepends=True), "\n"]:
            if line.startswith("+"):
                lines.append(line[1:])
            elif lines:  # a comment or blank line ends an entry
                entries.append("".join(lines)[:-1])
                lines = []
        return reversed(entries)  # newest first

    def store_string(self, string: str) -> None:
        entry = f"\n# {datetime.datetime.now()}\n" + "".join(f"+{line}\n" for line in string.split("\n"))
        with contextlib.suppress(OSError), open_file(self.root, self.relative, "ab") as out:
            out.write(entry.encode("utf-8", errors="replace"))


def input_session(root: Path, history: str, commands: dict[str, str], workdir: Path) -> PromptSession[str]:
    """The prompt; `history` is its file, relative to the repository `root`."""
    return PromptSession(
        PROMPT,
        history=RepositoryHistory(root, history),
        completer=ChatCompleter(commands, workdir),
        complete_while_typing=False,
        key_bindings=key_bindings(),
        multiline=False,
        prompt_continuation="... ",
    )

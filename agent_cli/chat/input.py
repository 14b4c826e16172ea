"""The chat's input line (prompt_toolkit): `actsmith> `, Enter sends, Alt-Enter (or a paste) makes
several lines, a history kept per repository, completion of slash commands and of file paths."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

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


def input_session(history: Path, commands: dict[str, str], root: Path) -> PromptSession[str]:
    history.parent.mkdir(parents=True, exist_ok=True)
    return PromptSession(
        PROMPT,
        history=FileHistory(str(history)),
        completer=ChatCompleter(commands, root),
        complete_while_typing=False,
        key_bindings=key_bindings(),
        multiline=False,
        prompt_continuation="... ",
    )

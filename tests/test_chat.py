"""`actsmith chat` driven as a person would: a real terminal (tmux send-keys and capture-pane), the real
CLI, real git and Docker, a replay model whose replies span several turns."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import clean_env, make_repo, write_replay

pytestmark = pytest.mark.docker

PROMPT = "actsmith>"  # capture-pane drops the trailing space of an empty prompt


class Terminal:
    """One tmux server of our own (its own socket), running one command in a 200x50 pane."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]):
        self.socket = f"actsmith-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items() if key.isidentifier())
        script = (
            f"cd {shlex.quote(str(cwd))} && env -i {exports} {command}; echo '[chat exited]' $?; sleep 600"
        )
        self._tmux("new-session", "-d", "-x", "200", "-y", "50", script)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-3000")

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "0", "-l", text)

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "0", *keys)

    def wait_for(self, what: str, count: int = 1, timeout: float = 120) -> str:
        """Poll the screen until `what` shows `count` times."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if screen.count(what) >= count:
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"{what!r} x{count} never showed; the screen:\n{screen[-3000:]}")
            time.sleep(0.1)

    def prompts(self) -> int:
        return self.screen().count(PROMPT)

    def say(self, line: str, timeout: float = 120) -> str:
        """Type a line, press Enter, wait for the next prompt; returns what was printed after the line."""
        before = self.prompts()
        self.type(line)
        self.keys("Enter")
        screen = self.wait_for(PROMPT, before + 1, timeout)
        return screen.rsplit(f"{PROMPT} {line}", 1)[-1]

    def close(self) -> None:
        """Leave the chat as a person would (Ctrl-D), so it removes its sandbox, then stop tmux
        (its server is ours alone: its own socket), whatever happened."""
        try:
            if "[chat exited]" not in self.screen():
                self.keys("C-d")
                self.wait_for("[chat exited]", timeout=60)
        finally:
            subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def chat(repo: Path, replay: Path, trajectory: Path | None, *extra: str) -> Terminal:
    command = " ".join(
        shlex.quote(part)
        for part in [sys.executable, "-m", "agent_cli", "chat", "--model", f"replay:{replay}"]
        + (["--trajectory", str(trajectory)] if trajectory else [])
        + list(extra)
    )
    terminal = Terminal(command, repo, clean_env(TERM="xterm-256color"))
    terminal.wait_for(PROMPT)
    return terminal


def events(trajectory: Path, kind: str) -> list[dict]:
    return [e for e in map(json.loads, trajectory.read_text().splitlines()) if e["event"] == kind]


def containers_for(docker_client, repo: Path) -> list[dict]:
    return [
        c
        for c in docker_client.api.containers(all=True, filters={"label": "actsmith.container"})
        if any(str(m.get("Source", "")).startswith(str(repo)) for m in c.get("Mounts") or [])
    ]


@pytest.fixture
def calc(tmp_path) -> Path:
    return make_repo(
        tmp_path / "calc",
        {
            "calc.py": "def add(a, b):\n    return a + b\n",
            "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        },
    )


def test_a_conversation_keeps_its_interpreter_and_the_commands_work(
    calc, tmp_path, sandbox_image, docker_client
):
    replies = [
        "<execute>\nanswer = 41\nfinish('kept 41 in `answer`')\n</execute>",
        "<execute>\nprint('answer + 1 =', answer + 1)\nreplace('calc.py', 'a + b', 'b + a')\nfinish('swapped')\n</execute>",
        "<execute>\nprint('saw it')\nfinish('read what the user ran')\n</execute>",
    ]
    replay, trajectory = write_replay(tmp_path / "r.yaml", replies), tmp_path / "chat.jsonl"
    original = (calc / "calc.py").read_bytes()
    terminal = chat(calc, replay, trajectory)
    try:
        assert "kept 41 in `answer`" in terminal.say("remember 41")
        second = terminal.say("add one and tidy calc.py")
        assert "answer + 1 = 42" in second  # the variable of the first turn
        diff = terminal.say("/diff")
        assert "-    return a + b" in diff and "+    return b + a" in diff
        assert "+    return b + a" in terminal.say("/diff turn")
        report = terminal.say("/test")
        assert "1 passed" in report
        assert "tokens in" in terminal.say("/cost")
        assert "restored 1 file(s)" in terminal.say("/undo")
        assert (calc / "calc.py").read_bytes() == original  # back byte for byte
        assert "hello from the sandbox" in terminal.say("/run echo hello from the sandbox")
        terminal.say("what did I run?")
        last_prompt = events(trajectory, "model_call")[-1]["messages"][-1]["content"]
        assert (
            "The user ran `echo hello from the sandbox`" in last_prompt
            and "hello from the sandbox" in last_prompt
        )
        assert "The user undid your last turn" in last_prompt
        assert containers_for(docker_client, calc)
        terminal.type("/exit")
        terminal.keys("Enter")
        terminal.wait_for("[chat exited] 0")
        assert containers_for(docker_client, calc) == []
    finally:
        terminal.close()


def test_ctrl_c_stops_an_endless_action_and_the_next_turn_has_the_variables(calc, tmp_path, sandbox_image):
    replies = [
        "<execute>\nkept = 'still here'\nimport time\nwhile True:\n    time.sleep(0.05)\n</execute>",
        "<execute>\nprint(kept)\nfinish('the variable survived')\n</execute>",
    ]
    replay, trajectory = write_replay(tmp_path / "r.yaml", replies), tmp_path / "chat.jsonl"
    terminal = chat(calc, replay, trajectory)
    try:
        terminal.type("loop forever")
        terminal.keys("Enter")
        terminal.wait_for("running…")  # the action is in the sandbox (its spinner)
        before = terminal.prompts()
        terminal.keys("C-c")
        screen = terminal.wait_for(PROMPT, before + 1, 60)
        assert "stopped after 1 step: the sandbox and its variables are kept" in screen
        assert "still here" in terminal.say("go on")
        terminal.keys("C-d")
        terminal.wait_for("[chat exited] 0")
    finally:
        terminal.close()


def test_the_users_edits_are_named_and_undo_leaves_them_alone(calc, tmp_path, sandbox_image):
    replies = [
        "<execute>\ncreate('notes.md', 'one\\n')\nreplace('calc.py', 'a + b', 'b + a')\nfinish('wrote notes')\n</execute>",
        "<execute>finish('looked')</execute>",
    ]
    replay, trajectory = write_replay(tmp_path / "r.yaml", replies), tmp_path / "chat.jsonl"
    terminal = chat(calc, replay, trajectory)
    try:
        terminal.say("write notes")
        (calc / "notes.md").write_text("one\nand mine\n")  # the user edits a file the turn wrote
        terminal.say("anything new?")
        prompt = events(trajectory, "model_call")[-1]["messages"][-1]["content"]
        assert "the user changed these files themselves" in prompt and "notes.md" in prompt
        undone = terminal.say("/undo")  # the last turn changed nothing: undoes nothing
        assert "nothing restored" in undone
        undone = terminal.say("/undo")  # the first turn: calc.py back, notes.md kept for the user
        assert "restored 1 file(s) as they were before the last turn: calc.py" in undone
        assert "left alone (you edited them since): notes.md" in undone
        assert (calc / "notes.md").read_text() == "one\nand mine\n"
        assert "a + b" in (calc / "calc.py").read_text()
    finally:
        terminal.close()


def test_resume_restores_the_conversation_in_a_new_sandbox(calc, tmp_path, sandbox_image):
    replies = [
        "<execute>\nsecret_word = 'pelican'\nfinish('noted the word')\n</execute>",
        "<execute>\nprint('secret_word' in globals())\nfinish('checked')\n</execute>",
    ]
    replay, trajectory = write_replay(tmp_path / "r.yaml", replies[:1]), tmp_path / "chat.jsonl"
    terminal = chat(calc, replay, trajectory)
    try:
        terminal.say("remember the word pelican")
        terminal.keys("C-d")
        terminal.wait_for("[chat exited] 0")
    finally:
        terminal.close()
    write_replay(replay, replies[1:])
    resumed = chat(calc, replay, None, "--resume")
    try:
        assert "False" in resumed.say("do you still have it?")  # a new interpreter...
        prompt = events(trajectory, "model_call")[-1]["messages"]  # ...the same trajectory file
        text = json.dumps(prompt)
        assert "remember the word pelican" in text and "noted the word" in text  # ...the conversation
        assert "resumed in a new sandbox" in text
        assert len(events(trajectory, "start")) == 2  # one file for the whole chat
    finally:
        resumed.close()


def test_completion_history_and_several_lines_work_as_in_a_shell(calc, tmp_path, sandbox_image):
    replies = ["<execute>finish('read both lines')</execute>"]
    replay, trajectory = write_replay(tmp_path / "r.yaml", replies), tmp_path / "chat.jsonl"
    terminal = chat(calc, replay, trajectory)
    try:
        before = terminal.prompts()
        terminal.type("/cos")
        terminal.keys("Tab")
        terminal.wait_for(f"{PROMPT} /cost")  # completed (prompt_toolkit completes in the background)
        terminal.keys("Enter")
        assert "tokens in" in terminal.wait_for(PROMPT, before + 1).rsplit("/cost", 1)[-1]
        before = terminal.prompts()
        terminal.type("first line")
        terminal.keys("Escape", "Enter")  # Alt-Enter: a new line, not a send
        terminal.type("second line")
        terminal.keys("Enter")
        terminal.wait_for(PROMPT, before + 1)
        sent = events(trajectory, "model_call")[0]["messages"][1]["content"]
        assert "first line\nsecond line" in sent
    finally:
        terminal.close()
    again = chat(calc, replay, None)
    try:
        before = again.prompts()
        # The history of this repository, across sessions: the two-line message (Up enters it at its
        # last line, Up again moves to its first), then /cost.
        again.keys("Up", "Up", "Up")
        again.wait_for(f"{PROMPT} /cost")
        again.keys("Enter")
        assert again.wait_for(PROMPT, before + 1).count("tokens in") == 1
    finally:
        again.close()


def test_plan_then_go_plans_read_only_and_carries_the_plan_out_with_write_access(
    calc, tmp_path, sandbox_image
):
    replies = [
        "<execute>\ntry:\n    open('calc.py', 'a').write('# planned\\n')\nexcept OSError as e:\n"
        "    print('write refused:', e.strerror)\n</execute>",
        "<execute>\nfinish('## Plan\\n\\n1. Swap the operands in `add()`.')\n</execute>",
        "<execute>\nreplace('calc.py', 'a + b', 'b + a')\nfinish('swapped as planned')\n</execute>",
    ]
    replay, trajectory = write_replay(tmp_path / "r.yaml", replies), tmp_path / "chat.jsonl"
    original = (calc / "calc.py").read_bytes()
    terminal = chat(calc, replay, trajectory)
    try:
        planned = terminal.say("/plan swap the operands of add")
        assert "Swap the operands in add()" in planned and "/go to carry it out" in planned
        assert (calc / "calc.py").read_bytes() == original  # the plan turn wrote nothing
        first = events(trajectory, "observation")[0]["text"]
        assert "write refused: Read-only file system" in first
        asked = events(trajectory, "model_call")[0]["messages"][-1]["content"]
        assert "[Plan mode for this request:" in asked and "swap the operands of add" in asked
        done = terminal.say("/go")
        assert "swapped as planned" in done
        assert "b + a" in (calc / "calc.py").read_text()
        told = events(trajectory, "model_call")[-1]["messages"]
        assert any("Carry out the plan you made above" in m["content"] for m in told)
        assert "there is no plan to carry out" in terminal.say("/go")
    finally:
        terminal.close()

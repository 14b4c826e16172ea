"""The trajectory and --json output redact secrets wherever they appear in an event."""

import io
import json

from agent_cli.events import ModelCalled, Notice
from agent_cli.model import Usage
from agent_cli.trajectory import JsonLines, Redactor, Trajectory, read_trajectory


def test_environment_secrets_and_known_key_shapes_are_redacted(tmp_path):
    redactor = Redactor(
        {"ANTHROPIC_API_KEY": "anthropic-secret-value", "HOME": "/home/me", "PIN_TOKEN": "short"}
    )
    trajectory = Trajectory(tmp_path / "t.jsonl", redactor)
    messages = [
        {"role": "user", "content": "use anthropic-secret-value and ghp_abcdefghijklmnopqrstuvwxyz012345"}
    ]
    trajectory.emit(ModelCalled(1, messages, "home is /home/me", Usage(), 0.1))
    trajectory.close()
    [event] = read_trajectory(tmp_path / "t.jsonl")
    assert event["event"] == "model_call"
    content = event["messages"][0]["content"]
    assert "anthropic-secret-value" not in content and "[REDACTED:ANTHROPIC_API_KEY]" in content
    assert "ghp_" not in content
    assert event["reply"] == "home is /home/me"  # not a secret: left alone
    assert event["usage"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": 0.0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
    }


def test_secrets_handed_over_and_credentials_in_urls_are_redacted():
    stream = io.StringIO()
    redactor = Redactor({})
    redactor.add("a-token-given-in-code", "GITHUB_TOKEN")
    sink = JsonLines(stream, redactor)
    sink.emit(Notice("push with a-token-given-in-code via http://user:hunter22@proxy.example:3128"))
    [line] = stream.getvalue().splitlines()
    message = json.loads(line)["message"]
    assert "a-token-given-in-code" not in message and "[REDACTED:GITHUB_TOKEN]" in message
    assert "hunter22" not in message and "http://[REDACTED]@proxy.example:3128" in message

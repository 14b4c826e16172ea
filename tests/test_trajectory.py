"""The trajectory redacts secrets wherever they appear in an event."""

from agent_cli.trajectory import Redactor, Trajectory, read_trajectory


def test_environment_secrets_and_known_key_shapes_are_redacted(tmp_path):
    redactor = Redactor(
        {"ANTHROPIC_API_KEY": "anthropic-secret-value", "HOME": "/home/me", "PIN_TOKEN": "short"}
    )
    trajectory = Trajectory(tmp_path / "t.jsonl", redactor)
    trajectory.event(
        "model_call",
        messages=[
            {"role": "user", "content": "use anthropic-secret-value and ghp_abcdefghijklmnopqrstuvwxyz012345"}
        ],
        reply="home is /home/me",
    )
    trajectory.close()
    [event] = read_trajectory(tmp_path / "t.jsonl")
    content = event["messages"][0]["content"]
    assert "anthropic-secret-value" not in content and "[REDACTED:ANTHROPIC_API_KEY]" in content
    assert "ghp_" not in content
    assert event["reply"] == "home is /home/me"  # not a secret: left alone

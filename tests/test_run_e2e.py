"""`actsmith run` end to end: the real CLI, a real git repository, a real Docker sandbox, a replay model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import clean_env, container_ids, git, run_cli, wait_until, write_replay

from agent_cli.trajectory import read_trajectory

pytestmark = pytest.mark.docker


def observations(run) -> list[str]:
    return [e["text"] for e in run.events("observation")]


def test_state_persists_across_actions_and_finish_exits_0(run_agent, repo):
    run = run_agent(
        [
            "Set a variable.\n<execute>\nanswer = 21\nimport math\n</execute>",
            "Use it.\n<execute>\nprint(answer * 2, math.pi > 3)\n</execute>",
            "<execute>\nfinish('computed the answer')\n</execute>",
        ]
    )
    assert run.code == 0, run.stderr
    assert "42 True" in observations(run)[1]
    assert "computed the answer" in run.stdout
    assert run.events("result")[0]["status"] == "finished_untested"  # the repository has no tests


def test_an_exception_is_observed_and_the_run_goes_on(run_agent):
    run = run_agent(
        [
            "<execute>\ndef boom():\n    return 1 / 0\nboom()\n</execute>",
            "<execute>\nprint('still here')\n</execute>",
            "<execute>finish('ok')</execute>",
        ]
    )
    assert run.code == 0, run.stderr
    first, second = observations(run)[:2]
    assert "ZeroDivisionError: division by zero" in first
    assert 'File "<action-1>", line 2, in boom' in first
    assert "worker.py" not in first  # the traceback starts at the model's own code
    assert "still here" in second


def test_a_timeout_interrupts_an_endless_loop(run_agent):
    run = run_agent(
        [
            "<execute>\nkept = 'yes'\nwhile True:\n    pass\n</execute>",
            "<execute>\nprint('alive', kept)\n</execute>",
            "<execute>finish('ok')</execute>",
        ],
        "--action-timeout",
        "2",
    )
    assert run.code == 0, run.stderr
    first, second = observations(run)[:2]
    assert "stopped after 2 seconds" in first
    assert "KeyboardInterrupt" in first
    assert "alive yes" in second  # interrupted, not restarted: variables survive


def test_an_interpreter_that_exits_is_restarted_and_the_model_is_told(run_agent, repo):
    run = run_agent(
        [
            "<execute>\nx = 1\nopen('kept.txt', 'w').write('files persist')\n</execute>",
            "<execute>\nimport os\nos._exit(3)\n</execute>",
            "<execute>\nprint('x' in globals(), open('kept.txt').read())\n</execute>",
            "<execute>finish('ok')</execute>",
        ]
    )
    assert run.code == 0, run.stderr
    second, third = observations(run)[1:3]
    assert "interpreter was restarted" in second
    assert "exited with code 3" in second
    assert "variables" in second
    assert "False files persist" in third


def test_huge_output_is_cut_with_a_marker_saying_how_much(run_agent):
    run = run_agent(
        [
            "<execute>\nprint('a' * 300_000)\nprint('END-MARK')\n</execute>",
            "<execute>finish('ok')</execute>",
        ],
        "--max-output",
        "2000",
    )
    assert run.code == 0, run.stderr
    text = observations(run)[0]
    assert "characters cut" in text
    assert len(text) < 3000
    assert "END-MARK" in text  # the tail is kept: the end of output is usually what matters


def test_subprocess_output_and_stderr_are_observed(run_agent):
    run = run_agent(
        [
            "<execute>\nimport subprocess\nsubprocess.run('echo out-line; echo err-line >&2', shell=True)\n"
            "sh('echo via-sh')\n</execute>",
            "<execute>finish('ok')</execute>",
        ]
    )
    text = observations(run)[0]
    assert "out-line" in text and "err-line" in text and "via-sh" in text


def test_edits_land_in_the_repository_and_the_summary_shows_the_diff_stat(run_agent, repo):
    run = run_agent(
        [
            "<execute>\nreplace('app.py', \"return 'hi'\", \"return 'hello'\")\n"
            "create('notes/todo.md', '- ship it\\n')\n</execute>",
            "<execute>finish('greeting changed')</execute>",
        ]
    )
    assert run.code == 0, run.stderr
    assert (repo / "app.py").read_text() == "def greet():\n    return 'hello'\n"
    assert (repo / "notes" / "todo.md").read_text() == "- ship it\n"
    assert "app.py" in run.stdout and "notes/todo.md" in run.stdout
    assert "2 files changed" in run.stdout
    # Files written by the sandbox belong to the repository's owner.
    assert (repo / "notes" / "todo.md").stat().st_uid == repo.stat().st_uid


def test_a_model_that_runs_out_of_replies_exits_3(run_agent):
    run = run_agent(["<execute>\nprint(1)\n</execute>"])
    assert run.code == 3
    assert "no reply left" in run.stdout + run.stderr
    assert run.events("result")[0]["status"] == "model_stopped"


def test_three_replies_without_an_action_stop_the_run(run_agent):
    run = run_agent(["I am thinking.", "Still thinking.", "Hmm."])
    assert run.code == 3
    assert len(run.events("model_call")) == 3
    corrective = observations(run)[0]
    assert "<execute>" in corrective  # the model is told how to write an action
    assert run.events("result")[0]["status"] == "no_action"


def test_the_step_limit_ends_the_run_with_exit_3(run_agent):
    run = run_agent(["<execute>print(1)</execute>"] * 5, "--max-steps", "2")
    assert run.code == 3
    assert "step limit" in run.stdout + run.stderr
    assert len(run.events("model_call")) == 2


def test_the_trajectory_holds_every_model_call_and_observation(run_agent):
    replies = [
        "First.\n<execute>\nprint('obs-one')\n</execute>",
        "Second.\n<execute>\nprint('obs-two')\n</execute>",
        "<execute>finish('done')</execute>",
    ]
    run = run_agent(replies, task="inspect the repo")
    calls = run.events("model_call")
    assert [c["reply"] for c in calls] == replies
    first_messages = calls[0]["messages"]
    assert first_messages[0]["role"] == "system" and "<execute>" in first_messages[0]["content"]
    assert "inspect the repo" in first_messages[1]["content"]
    assert "2 tracked files" in first_messages[1]["content"] and "app.py" in first_messages[1]["content"]
    # The third call saw both earlier replies and both observations, exactly as sent.
    third = calls[2]["messages"]
    assert [m["role"] for m in third] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "obs-one" in third[3]["content"] and "obs-two" in third[5]["content"]
    assert [e["text"] for e in run.events("observation")][:2] == [third[3]["content"], third[5]["content"]]


def test_default_trajectory_is_under_dot_actsmith_and_kept_out_of_git(repo, tmp_path, sandbox_image):
    replay = write_replay(tmp_path / "r.yaml", ["<execute>finish('nothing to do')</execute>"])
    run = run_cli(["run", "noop", "--model", f"replay:{replay}"], repo)
    assert run.code == 0, run.stderr
    trajectories = list((repo / ".actsmith" / "runs").glob("*/trajectory.jsonl"))
    assert len(trajectories) == 1
    assert git(repo, "status", "--porcelain") == ""
    assert "/.actsmith/" in (repo / ".git" / "info" / "exclude").read_text()
    assert not (repo / ".gitignore").exists()


def test_secrets_in_observations_are_redacted_from_the_trajectory(run_agent):
    secret = (
        "plain-looking-secret-7f3a9c"  # no known credential shape: only the env-based redaction catches it
    )
    run = run_agent(
        [f"<execute>\nprint('key is {secret}')\n</execute>", "<execute>finish('ok')</execute>"],
        env=clean_env(MY_SERVICE_TOKEN=secret),
    )
    assert run.code == 0, run.stderr
    text = json.dumps(run.trajectory)
    assert secret not in text
    assert "REDACTED" in text


def containers_of(docker_client, pid: int) -> list:
    """Sandbox containers started by the actsmith process `pid` (and no one else's)."""
    from agent_cli.sandbox.identity import OWNER_LABEL, owner_token

    label = f"{OWNER_LABEL}={owner_token(pid)}"
    return container_ids(docker_client, label=label)


def test_ctrl_c_mid_action_exits_130_says_what_changed_and_leaves_no_container(
    repo, tmp_path, sandbox_image, docker_client
):
    replay = write_replay(
        tmp_path / "r.yaml",
        [
            "<execute>\nreplace('app.py', 'hi', 'hello')\nimport time\nprint('sleeping', flush=True)\ntime.sleep(120)\n</execute>"
        ],
    )
    trajectory = tmp_path / "t.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent_cli", "run", "sleep", "--model", f"replay:{replay}"]
        + ["--trajectory", str(trajectory)],
        cwd=repo,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: trajectory.exists() and '"event": "action"' in trajectory.read_text(), 120, "the action"
        )
        assert containers_of(docker_client, proc.pid)
        wait_until(lambda: (repo / "app.py").read_text().count("hello") == 1, 30, "the edit")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    summary = " ".join(stdout.replace("│", " ").split())
    assert "status interrupted" in summary
    assert "1 file changed" in summary  # what the run left behind...
    run_id = next(e for e in read_trajectory(trajectory) if e["event"] == "start")["run_id"]
    assert f"actsmith undo --run {run_id}" in summary  # ...and how to take it back
    observation = next(e for e in read_trajectory(trajectory) if e["event"] == "observation")
    assert "The user interrupted this action" in observation["text"]
    assert containers_of(docker_client, proc.pid) == []


def test_not_a_git_repository_is_one_line_exit_2(tmp_path):
    run = run_cli(["run", "x", "--model", "replay:nothing.yaml"], tmp_path)
    assert run.code == 2
    assert run.stderr.strip().count("\n") == 0
    assert "not a git repository" in run.stderr


def test_no_model_configured_is_one_line_exit_2(repo):
    run = run_cli(["run", "x"], repo)
    assert run.code == 2
    assert "no model configured" in run.stderr and "--model" in run.stderr


def test_missing_api_key_is_one_line_exit_2(repo):
    run = run_cli(["run", "x", "--model", "gpt-4o-mini"], repo, timeout=120)
    assert run.code == 2, run.stderr
    assert "OPENAI_API_KEY" in run.stderr
    assert run.stderr.strip().count("\n") == 0


def test_docker_not_reachable_is_one_line_exit_2(repo, tmp_path):
    replay = write_replay(tmp_path / "r.yaml", ["<execute>finish('x')</execute>"])
    env = clean_env(DOCKER_HOST=f"unix://{tmp_path}/no-such-docker.sock")
    run = run_cli(["run", "x", "--model", f"replay:{replay}"], repo, env=env)
    assert run.code == 2
    assert "Docker daemon not reachable" in run.stderr


def test_model_from_repo_config_file(repo, tmp_path, sandbox_image):
    replay = write_replay(tmp_path / "r.yaml", ["<execute>finish('configured')</execute>"])
    (repo / ".actsmith.toml").write_text(f'model = "replay:{replay}"\nmax_steps = 5\n')
    run = run_cli(["run", "x"], repo)
    assert run.code == 0, run.stderr
    assert "configured" in run.stdout


def test_litellm_network_path_against_a_local_openai_compatible_server(repo, tmp_path, sandbox_image):
    from openai_stub import Reply, StubServer

    server = StubServer().start()
    try:
        server.script(
            Reply("Let me check.\n<execute>\nprint(6 * 7)\n</execute>"),
            Reply("<execute>finish('asked a real HTTP model')</execute>"),
        )
        trajectory = tmp_path / "t.jsonl"
        run = run_cli(
            ["run", "compute", "--model", "openai/stub-model", "--api-base", server.api_base]
            + ["--trajectory", str(trajectory)],
            repo,
            env=clean_env(OPENAI_API_KEY="local-stub-key-123456"),
            timeout=180,
        )
        assert run.code == 0, run.stderr
        assert len(server.requests) == 2
        assert server.headers[0].get("authorization") == "Bearer local-stub-key-123456"
        second_request = server.requests[1]["messages"]
        assert "42" in second_request[-1]["content"]
    finally:
        server.stop()
    assert "local-stub-key-123456" not in Path(trajectory).read_text()


def test_explicit_trajectory_creates_no_run_directory(run_agent, repo):
    run = run_agent(["<execute>finish('ok')</execute>"])
    assert run.code == 0, run.stderr
    assert not (repo / ".actsmith").exists()


def test_a_missing_image_is_one_line_exit_2(repo, tmp_path):
    replay = write_replay(tmp_path / "r.yaml", ["<execute>finish('x')</execute>"])
    run = run_cli(["run", "x", "--model", f"replay:{replay}", "--image", "no-such-image:1"], repo)
    assert run.code == 2
    assert "no-such-image:1 is not present" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_unwritable_trajectory_path_is_one_line_exit_2(repo, tmp_path, sandbox_image):
    replay = write_replay(tmp_path / "r.yaml", ["<execute>finish('x')</execute>"])
    target = tmp_path / "not-a-dir"
    target.write_text("a file")
    run = run_cli(["run", "x", "--model", f"replay:{replay}", "--trajectory", str(target / "t.jsonl")], repo)
    assert run.code == 2
    assert "cannot write the trajectory" in run.stderr
    assert "Traceback" not in run.stderr


def test_error_text_with_brackets_is_printed_literally(repo):
    run = run_cli(["run", "x", "--model", "replay:/nonexistent/[bold]x.yaml"], repo)
    assert run.code == 2
    assert "[bold]x.yaml" in run.stderr


def test_sandboxed_code_cannot_make_the_hosts_git_run_a_command(run_agent, repo, tmp_path):
    canary = tmp_path / "host-ran-it"
    hook = f"#!/bin/sh\ntouch {canary}\n"
    run = run_agent(
        [
            "<execute>\n"
            f"open('fsmonitor.sh', 'w').write({hook!r})\n"
            "import os\nos.chmod('fsmonitor.sh', 0o755)\n"
            "r = sh('git config core.fsmonitor \"$PWD/fsmonitor.sh\"')\n"
            "try:\n    open('.git/config', 'a').write('[core]\\n\\tfsmonitor = /workspace/fsmonitor.sh\\n')\n"
            "except OSError as e:\n    print('refused:', e.strerror)\n"
            "</execute>",
            "<execute>finish('tried')</execute>",
        ]
    )
    assert run.code == 0, run.stderr
    assert "refused: Read-only file system" in observations(run)[0]
    assert "fsmonitor" not in (repo / ".git" / "config").read_text()
    assert not canary.exists()


def test_the_cost_limit_ends_the_run_with_exit_3(repo, tmp_path, sandbox_image):
    from openai_stub import Reply, StubServer

    server = StubServer().start()
    try:
        # gpt-4o is in litellm's bundled price map: 100k prompt tokens cost far more than $0.01.
        server.script(*[Reply("<execute>print(1)</execute>", prompt_tokens=100_000)] * 3)
        trajectory = tmp_path / "t.jsonl"
        run = run_cli(
            ["run", "spend", "--model", "openai/gpt-4o", "--api-base", server.api_base, "--max-cost", "0.01"]
            + ["--trajectory", str(trajectory)],
            repo,
            env=clean_env(OPENAI_API_KEY="local-stub-key-123456"),
        )
    finally:
        server.stop()
    assert run.code == 3, run.stderr
    assert "cost limit reached" in run.stdout + run.stderr
    assert len(server.requests) == 1
    result = next(e for e in read_trajectory(trajectory) if e["event"] == "result")
    assert result["status"] == "limit" and result["usage"]["cost"] > 0.01


def test_the_wall_time_limit_cuts_a_long_action_and_ends_with_exit_3(run_agent):
    run = run_agent(
        ["<execute>\nimport time\ntime.sleep(60)\n</execute>", "<execute>finish('never')</execute>"],
        "--max-time",
        "3",
    )
    assert run.code == 3
    assert "time limit reached" in run.stdout + run.stderr
    assert "stopped after" in observations(run)[0]

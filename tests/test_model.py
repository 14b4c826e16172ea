"""The Model seam: replay files, and litellm's real HTTP path against a local OpenAI-compatible stub.

No mocks of litellm: every LiteLLMModel test sends real HTTP requests to a server on 127.0.0.1 that
answers with scripted behaviours (replies, 429s, 5xx, hangs, malformed bodies, 401s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_cli import model as model_module
from agent_cli.errors import ModelError, ModelStopped, UsageError
from agent_cli.model import (
    LiteLLMModel,
    Model,
    ReplayModel,
    Usage,
    check_credentials,
    make_model,
)

try:  # works whether or not tests/ is a package
    from tests.openai_stub import Hang, Malformed, RateLimited, Reply, ServerError, StubServer, Unauthorized
except ImportError:
    from openai_stub import Hang, Malformed, RateLimited, Reply, ServerError, StubServer, Unauthorized

MESSAGES = [
    {"role": "system", "content": "You are a careful coder."},
    {"role": "user", "content": "Fix the bug in foo.py"},
]
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stub():
    server = StubServer().start()
    yield server
    server.stop()


def stub_model(server: StubServer, **overrides) -> LiteLLMModel:
    """A LiteLLMModel pointed at the stub, with tiny backoff so retry tests stay fast."""
    options = {
        "api_base": server.api_base,
        "api_key": "sk-test",
        "timeout": 5.0,
        "max_retries": 3,
        "backoff_s": 0.01,
    }
    options.update(overrides)
    return LiteLLMModel("openai/stub-model", **options)


def assert_one_line(error: BaseException) -> None:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text


# ------------------------------------------------------------------------------------- litellm over HTTP


def test_completion_returns_content_usage_and_sends_the_exact_messages(stub):
    stub.script(Reply("Here is the fix.", prompt_tokens=42, completion_tokens=5))

    reply = stub_model(stub).complete(MESSAGES)

    assert reply.content == "Here is the fix."
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (42, 5)
    assert reply.model == "openai/stub-model"
    assert reply.latency_s > 0
    assert len(stub.requests) == 1
    assert stub.requests[0]["messages"] == MESSAGES
    assert stub.requests[0]["model"] == "stub-model"
    assert stub.headers[0]["authorization"] == "Bearer sk-test"


def test_cost_of_a_model_missing_from_the_price_map_is_unknown(stub):
    stub.script(Reply("ok"))

    reply = stub_model(stub).complete(MESSAGES)

    assert reply.usage.cost is None


def test_temperature_and_extra_options_reach_the_server(stub):
    stub.script(Reply("ok"))

    stub_model(stub, temperature=0.2, extra={"max_tokens": 64}).complete(MESSAGES)

    assert stub.requests[0]["temperature"] == 0.2
    assert stub.requests[0]["max_tokens"] == 64


def test_rate_limit_is_retried_after_the_servers_retry_after(stub):
    stub.script(RateLimited(retry_after="1"), Reply("after the pause"))

    started = time.monotonic()
    reply = stub_model(stub).complete(MESSAGES)
    elapsed = time.monotonic() - started

    assert reply.content == "after the pause"
    assert len(stub.requests) == 2
    assert elapsed >= 0.9, "Retry-After: 1 was not honoured (backoff alone is 0.01 s)"


def test_a_huge_retry_after_is_capped(stub, monkeypatch):
    monkeypatch.setattr(model_module, "MAX_RETRY_AFTER_S", 0.05)
    stub.script(RateLimited(retry_after="3600"), Reply("ok"))

    started = time.monotonic()
    assert stub_model(stub).complete(MESSAGES).content == "ok"
    assert time.monotonic() - started < 5


def test_rate_limit_without_retry_after_uses_backoff(stub):
    stub.script(RateLimited(retry_after=None), Reply("ok"))

    assert stub_model(stub).complete(MESSAGES).content == "ok"
    assert len(stub.requests) == 2


def test_two_server_errors_then_success(stub):
    stub.script(ServerError(500), ServerError(503), Reply("third time lucky"))

    reply = stub_model(stub).complete(MESSAGES)

    assert reply.content == "third time lucky"
    assert len(stub.requests) == 3
    assert all(body["messages"] == MESSAGES for body in stub.requests)


def test_a_hang_beyond_the_timeout_is_retried(stub):
    stub.script(Hang(seconds=10), Reply("ok"))

    reply = stub_model(stub, timeout=0.5).complete(MESSAGES)

    assert reply.content == "ok"
    assert len(stub.requests) == 2


def test_hangs_until_retries_run_out_stop_the_model(stub):
    stub.script(Hang(seconds=10), Hang(seconds=10))

    with pytest.raises(ModelStopped) as caught:
        stub_model(stub, timeout=0.3, max_retries=1).complete(MESSAGES)

    assert_one_line(caught.value)
    assert "openai/stub-model" in str(caught.value)
    assert "Timeout" in str(caught.value)
    assert caught.value.exit_code == 3
    assert len(stub.requests) == 2


def test_malformed_body_is_retried_then_stops_with_one_clear_line(stub):
    stub.script(Malformed(), Malformed(b"<html>502 Bad Gateway</html>"), Malformed(b'{"no": "choices"}'))

    with pytest.raises(ModelStopped) as caught:
        stub_model(stub, max_retries=2).complete(MESSAGES)

    message = str(caught.value)
    assert_one_line(caught.value)
    assert "openai/stub-model" in message
    assert "after 2 retries" in message
    assert len(message) < 500
    assert len(stub.requests) == 3


def test_malformed_body_then_good_reply_succeeds(stub):
    stub.script(Malformed(), Reply("ok"))

    assert stub_model(stub).complete(MESSAGES).content == "ok"
    assert len(stub.requests) == 2


def test_empty_or_missing_content_is_retried(stub):
    stub.script(Reply(None), Reply(""), Reply("finally"))

    reply = stub_model(stub).complete(MESSAGES)

    assert reply.content == "finally"
    assert len(stub.requests) == 3


def test_unauthorized_is_a_model_error_at_once(stub):
    stub.script(Unauthorized(), Reply("never sent"))

    with pytest.raises(ModelError) as caught:
        stub_model(stub).complete(MESSAGES)

    assert_one_line(caught.value)
    assert "authentication failed" in str(caught.value)
    assert "sk-test" not in str(caught.value)
    assert caught.value.exit_code == 2
    assert len(stub.requests) == 1


def test_connection_refused_is_retried_then_stops():
    with socket.socket() as sock:  # find a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = LiteLLMModel(
        "openai/stub-model",
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key="sk-test",
        timeout=2.0,
        max_retries=1,
        backoff_s=0.01,
    )

    with pytest.raises(ModelStopped) as caught:
        model.complete(MESSAGES)

    assert_one_line(caught.value)


def test_local_server_without_any_key_gets_a_placeholder(stub, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stub.script(Reply("ok"))

    reply = stub_model(stub, api_key=None).complete(MESSAGES)

    assert reply.content == "ok"
    assert stub.headers[0]["authorization"].startswith("Bearer ")


# ------------------------------------------------------------------------------------------------ usage


def test_usage_accumulates_and_unknown_cost_stays_unknown():
    total = Usage()
    total.add(Usage(10, 2, 0.5))
    assert (total.prompt_tokens, total.completion_tokens, total.cost) == (10, 2, 0.5)
    total.add(Usage(1, 1, None))
    total.add(Usage(1, 1, 0.25))
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (12, 4, 16)
    assert total.cost is None


# ----------------------------------------------------------------------------------------------- replay


def write(tmp_path: Path, text: str, name: str = "replies.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_replay_returns_replies_in_order_whatever_the_prompt_then_stops(tmp_path):
    path = write(tmp_path, '- "first <execute>print(1)</execute>"\n- |\n  second\n  line two\n')
    model = make_model(f"replay:{path}")

    assert isinstance(model, ReplayModel)
    assert isinstance(model, Model)
    first = model.complete(MESSAGES)
    second = model.complete([{"role": "user", "content": "something else entirely"}])
    assert first.content == "first <execute>print(1)</execute>"
    assert second.content == "second\nline two\n"
    assert first.usage.cost == 0.0
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0

    with pytest.raises(ModelStopped) as caught:
        model.complete(MESSAGES)
    assert str(caught.value) == f"replay file {path} has no reply left after 2 replies"
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- ok\n- [unclosed\n", "not valid YAML"),
        ("reply: hello\n", "must hold a YAML list of strings"),
        ("just a string\n", "must hold a YAML list of strings"),
        ("", "must hold a YAML list of strings"),
        ("- ok\n- 42\n", "reply 2 is a int, not a string"),
        ("- ok\n- null\n", "reply 2 is nothing, not a string"),
    ],
)
def test_bad_replay_file_is_a_usage_error(tmp_path, text, expected):
    path = write(tmp_path, text)

    with pytest.raises(UsageError) as caught:
        make_model(f"replay:{path}")

    assert expected in str(caught.value)
    assert_one_line(caught.value)


def test_missing_or_unreadable_replay_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        make_model(f"replay:{tmp_path / 'nope.yaml'}")
    with pytest.raises(UsageError, match="cannot read replay file"):
        make_model(f"replay:{tmp_path}")
    with pytest.raises(UsageError, match="needs a path"):
        make_model("replay:")


# ------------------------------------------------------------------------------- make_model, credentials


@pytest.mark.parametrize("spec", ["", "   "])
def test_no_model_is_a_usage_error(spec):
    with pytest.raises(UsageError) as caught:
        make_model(spec)
    assert str(caught.value) == (
        "no model configured: pass --model NAME, set ACTSMITH_MODEL, or set model in .actsmith.toml"
    )


def test_make_model_builds_litellm_models_with_options():
    model = make_model("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1", timeout=3.0)

    assert isinstance(model, LiteLLMModel)
    assert (model.name, model.api_base, model.timeout) == ("openai/gpt-4o-mini", "http://127.0.0.1:9/v1", 3.0)


def test_replay_model_ignores_litellm_options(tmp_path):
    path = write(tmp_path, "- hi\n")
    assert make_model(f"replay:{path}", api_base="http://x", temperature=0.1).complete([]).content == "hi"


def test_missing_provider_key_is_a_model_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    with pytest.raises(ModelError) as caught:
        check_credentials("gpt-4o-mini")

    assert "OPENAI_API_KEY" in str(caught.value)
    assert "gpt-4o-mini" in str(caught.value)
    assert caught.value.exit_code == 2


def test_no_key_needed_with_an_api_base_or_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    check_credentials("gpt-4o-mini", api_base="http://127.0.0.1:11434/v1")
    check_credentials("gpt-4o-mini", api_key="sk-test")


def test_present_key_passes(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    check_credentials("gpt-4o-mini")


def test_replay_needs_no_credentials(tmp_path):
    check_credentials(f"replay:{tmp_path / 'anything.yaml'}")


def test_unknown_provider_is_a_model_error():
    with pytest.raises(ModelError) as caught:
        check_credentials("no-such-model-xyz")
    assert "openai/no-such-model-xyz" in str(caught.value)
    assert_one_line(caught.value)


def test_importing_the_module_does_not_import_litellm():
    code = "import sys, agent_cli.model; print('litellm' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

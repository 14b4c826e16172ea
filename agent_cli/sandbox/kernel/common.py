"""What the supervisor and the worker share. Stdlib only."""

import re

MIN_KEEP = 256  # bytes: always more than the end-of-action marker

# Control characters other than tab, newline and carriage return (C0, DEL, C1), raw, could drive the
# user's terminal (escape sequences) or garble the model's context; U+DC80-U+DCFF are the bytes that
# were not UTF-8, as the surrogateescape decoder leaves them.
_UNSHOWABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\udc80-\udcff]")


def with_cut_note(head, tail, cut):
    return head + "\n[... %d characters cut: output was too long ...]\n" % cut + tail, cut


def cut_middle(text, max_chars):
    """Keep the head and tail of `text` within `max_chars`; say how many characters were cut."""
    if len(text) <= max_chars:
        return text, 0
    half = max(max_chars // 2, 1)
    return with_cut_note(text[:half], text[-half:], len(text) - 2 * half)


def _escape(match):
    code = ord(match.group())
    return "\\x%02x" % (code - 0xDC00 if code >= 0xDC80 else code)


def escape_unshowable(text):
    """`text` with control characters and undecodable bytes written as \\xNN, and how many there were."""
    return _UNSHOWABLE.subn(_escape, text)


def decode_output(data):
    """Bytes an action printed, as text safe to show, and how many bytes or characters were escaped."""
    return escape_unshowable(data.decode("utf-8", "surrogateescape"))

"""What the supervisor and the worker share. Stdlib only."""

MIN_KEEP = 256  # bytes: always more than the end-of-action marker


def with_cut_note(head, tail, cut):
    return head + "\n[... %d characters cut: output was too long ...]\n" % cut + tail, cut


def cut_middle(text, max_chars):
    """Keep the head and tail of `text` within `max_chars`; say how many characters were cut."""
    if len(text) <= max_chars:
        return text, 0
    half = max(max_chars // 2, 1)
    return with_cut_note(text[:half], text[-half:], len(text) - 2 * half)

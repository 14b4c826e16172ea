"""The action parser: what a model reply turns into, including the awkward replies models really send."""

from agent_cli.actions import parse_reply


def test_execute_block_with_prose_around_it():
    reply = (
        "I will list the files.\n<execute>\nimport os\nprint(os.listdir('.'))\n</execute>\n"
        "Then I'll read them."
    )
    parsed = parse_reply(reply)
    assert parsed.code == "import os\nprint(os.listdir('.'))"
    assert parsed.thought == "I will list the files.\n\nThen I'll read them."
    assert parsed.blocks == 1 and not parsed.unclosed


def test_python_fence_is_accepted_when_there_is_no_execute_tag():
    parsed = parse_reply("Let me check.\n```python\nx = 1\nprint(x)\n```\n")
    assert parsed.code == "x = 1\nprint(x)"
    assert parsed.thought == "Let me check."


def test_py_and_python3_fences_are_accepted():
    assert parse_reply("```py\na = 2\n```").code == "a = 2"
    assert parse_reply("```python3\na = 3\n```").code == "a = 3"


def test_fences_in_other_languages_are_not_actions():
    parsed = parse_reply("Run this in your shell:\n```bash\nrm -rf /\n```")
    assert parsed.code is None


def test_reply_without_any_action():
    parsed = parse_reply("I think the bug is in utils.py.")
    assert parsed.code is None
    assert parsed.thought == "I think the bug is in utils.py."


def test_several_execute_blocks_run_in_order_as_one_action():
    reply = "<execute>a = 1</execute> and then <execute>\nb = a + 1\nprint(b)\n</execute>"
    parsed = parse_reply(reply)
    assert parsed.code == "a = 1\n\nb = a + 1\nprint(b)"
    assert parsed.blocks == 2
    assert parsed.thought == "and then"


def test_unclosed_execute_runs_to_the_end_of_the_reply():
    parsed = parse_reply("Fixing it now.\n<execute>\nreplace('a.py', 'x', 'y')\nprint('ok')")
    assert parsed.code == "replace('a.py', 'x', 'y')\nprint('ok')"
    assert parsed.unclosed
    assert parsed.thought == "Fixing it now."


def test_fence_inside_execute_is_unwrapped():
    parsed = parse_reply("<execute>\n```python\nprint('hi')\n```\n</execute>")
    assert parsed.code == "print('hi')"


def test_execute_tags_win_over_fences_elsewhere_in_the_reply():
    reply = "For example:\n```python\nold_code()\n```\n<execute>new_code()</execute>"
    parsed = parse_reply(reply)
    assert parsed.code == "new_code()"
    assert "old_code()" in parsed.thought


def test_uniformly_indented_block_is_dedented():
    parsed = parse_reply("<execute>\n    if True:\n        print(1)\n</execute>")
    assert parsed.code == "if True:\n    print(1)"


def test_empty_execute_block_is_no_action():
    assert parse_reply("<execute>\n\n</execute>").code is None


def test_tags_are_case_insensitive():
    assert parse_reply("<EXECUTE>print(1)</EXECUTE>").code == "print(1)"


def test_execute_code_keeps_strings_that_mention_tags():
    parsed = parse_reply("<execute>\nprint('use ``` fences')\n</execute>")
    assert parsed.code == "print('use ``` fences')"

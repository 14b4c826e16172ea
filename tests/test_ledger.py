"""The edit ledger on real git repositories and real tree-sitter parses (file edits stand in for actions)."""

from __future__ import annotations

from pathlib import Path

from conftest import make_repo
from test_checkpoints import start_run

from agent_cli.ledger import MAX_FILES_SHOWN, parse_raw_numstat
from agent_cli.templates import render

SHAPES = """class Shape:
    def area(self):
        return 0

    def name(self):
        return "shape"


def helper(x):
    return x + 1
"""


def state_block(ledger) -> str:
    return render("state", ledger=ledger.view())


def test_a_step_records_changed_definitions_by_qualified_name(tmp_path):
    repo = make_repo(tmp_path / "r", {"shapes.py": SHAPES, "other.py": "x = 1\n"})
    ledger = start_run(repo)
    (repo / "shapes.py").write_text(SHAPES.replace("return 0", "return 42") + "\n\ndef added():\n    pass\n")
    ledger.record_step(1)
    (change,) = ledger.steps[-1].files
    assert change.path == "shapes.py" and change.status == "changed"
    assert change.symbols == ("+added", "Shape.area")  # the class is not named: its method explains it
    (state,) = ledger.view().files
    assert (state.added, state.removed, state.steps) == (5, 1, (1,))


def test_an_unparseable_file_gives_a_warning_with_file_and_line_until_it_is_fixed(tmp_path):
    repo = make_repo(tmp_path / "r", {"pkg/mod.py": "def ok():\n    return 1\n"})
    ledger = start_run(repo)
    (repo / "pkg" / "mod.py").write_text("def ok():\n    return 1\n\ndef broken(:\n    pass\n")
    warnings = ledger.record_step(1).warnings
    assert len(warnings) == 1 and warnings[0].startswith("pkg/mod.py line 4:")
    assert "pkg/mod.py line 4" in state_block(ledger)

    assert ledger.record_step(2).warnings == []  # nothing changed: no new warning, the problem stays open
    assert "Syntax problems still open" in state_block(ledger)

    (repo / "pkg" / "mod.py").write_text("def ok():\n    return 1\n\ndef broken():\n    pass\n")
    assert ledger.record_step(3).warnings == []
    assert "Syntax problems" not in state_block(ledger)


def test_the_state_block_merges_steps_per_file_and_follows_renames(tmp_path):
    body = "".join(f"    v{i} = {i}\n" for i in range(10))
    repo = make_repo(tmp_path / "r", {"a.py": f"def f():\n{body}    return 1\n", "gone.txt": "bye\n"})
    ledger = start_run(repo)
    (repo / "a.py").write_text(f"def f():\n{body}    return 2\n")
    ledger.record_step(1)
    (repo / "gone.txt").unlink()
    ledger.record_step(2)
    (repo / "a.py").rename(repo / "b.py")
    ledger.record_step(3)
    (repo / "b.py").write_text(f"def f():\n{body}    return 3\n")
    ledger.record_step(4)

    block = state_block(ledger)
    assert "- b.py: renamed from a.py (+1 -1), steps 1, 3, 4: f" in block
    assert "- gone.txt: deleted, step 2" in block
    assert block.count("a.py") == 1


def test_a_file_put_back_as_it_was_leaves_the_state_block(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    ledger = start_run(repo)
    (repo / "a.py").write_text("x = 2\n")
    ledger.record_step(1)
    (repo / "a.py").write_text("x = 1\n")
    ledger.record_step(2)
    assert state_block(ledger).strip() == ""


def test_reverting_a_one_line_edit_records_a_revert_with_no_symbols_and_no_map(tmp_path):
    module = "class Shape:\n    def area(self):\n        return 1\n\n\ndef helper():\n    return 2\n"
    repo = make_repo(tmp_path / "r", {"shapes.py": module})
    ledger = start_run(repo)
    (repo / "shapes.py").write_text(module.replace("return 1", "return 10"))
    edited = ledger.record_step(1)
    assert edited.files[0].symbols == ("Shape.area",)
    (repo / "shapes.py").write_text(module)
    reverted = ledger.record_step(2)
    (change,) = reverted.files
    assert change.status == "reverted"
    assert change.symbols == ()  # not "-Shape", "-Shape.area", "-helper"
    assert reverted.reshaped == []  # so no repo-map block rides on the observation
    assert state_block(ledger).strip() == ""


def test_binary_and_non_utf8_files_are_recorded_without_parsing(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    ledger = start_run(repo)
    (repo / "blob.bin").write_bytes(bytes(range(256)) * 4)
    (repo / "latin1.py").write_bytes("nom = 'caf\xe9'\n".encode("latin-1"))
    ledger.record_step(1)
    block = state_block(ledger)
    assert "blob.bin: created (binary)" in block
    assert "latin1.py: created (+1 -0)" in block


def test_the_state_block_stays_compact_on_a_long_run(tmp_path):
    repo = make_repo(tmp_path / "r", {"keep.py": "x = 1\n"})
    ledger = start_run(repo)
    for step in range(1, 41):
        Path(repo, f"gen/file{step:02}.py").parent.mkdir(exist_ok=True)
        Path(repo, f"gen/file{step:02}.py").write_text(f"def f{step}():\n    return {step}\n")
        ledger.record_step(step)
    block = state_block(ledger)
    assert block.count("\n- gen/") == MAX_FILES_SHOWN
    assert f"- and {40 - MAX_FILES_SHOWN} more files" in block
    assert len(block) < 3000


def test_raw_numstat_parsing_handles_renames_binaries_and_odd_names():
    sha_a, sha_b, null = "a" * 40, "b" * 40, "0" * 40
    out = "\0".join(
        [
            f":100644 100644 {sha_a} {sha_b} R090",
            "old name.py",
            ":colon.py",
            f":000000 100644 {null} {sha_b} A",
            "img.png",
            "3\t1\t",
            "old name.py",
            ":colon.py",
            "-\t-\timg.png",
            "",
        ]
    )
    renamed, image = parse_raw_numstat(out)
    assert (renamed.path, renamed.old_path, renamed.status) == (":colon.py", "old name.py", "renamed")
    assert (renamed.added, renamed.removed) == (3, 1)
    assert (image.status, image.binary, image.old_blob) == ("created", True, None)

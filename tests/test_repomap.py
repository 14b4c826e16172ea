"""The repo map on real code: fixture repositories in several languages, and a copy of part of this
machine's Python standard library, each in a real git repository."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest
from conftest import clean_env, git, make_repo, run_cli

from agent_cli.repomap import RepoMap, estimate_tokens, focus_from_text, repository_context
from agent_cli.repomap.graph import ReferenceGraph
from agent_cli.workspace import Workspace

STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_PARTS = [
    "email",
    "json",
    "http",
    "urllib",
    "logging",
    "asyncio",
    "concurrent",
    "importlib",
    "collections",
]
STDLIB_FILES = ["os.py", "typing.py", "functools.py", "abc.py", "enum.py", "dataclasses.py", "pathlib.py"]


@pytest.fixture(scope="module")
def stdlib_repo(tmp_path_factory) -> Path:
    """About 120 files of the standard library, committed; its map is cached in its .git."""
    root = tmp_path_factory.mktemp("stdlib") / "repo"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in STDLIB_PARTS:
        shutil.copytree(STDLIB / part, root / part, ignore=ignore)
    for name in STDLIB_FILES:
        shutil.copy(STDLIB / name, root / name)
    return make_repo(root, {})


def fresh_map(root: Path, tmp_path: Path, **kwargs) -> RepoMap:
    return RepoMap(root, cache_path=tmp_path / "cache.sqlite", **kwargs)


# --- a repository in several languages ---------------------------------------------------------------

POLYGLOT = {
    "engine/core.py": '''
class Engine:
    """Runs jobs."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def submit(self, job: "Job") -> int:
        return job.run_on(self)


class Job:
    def run_on(self, engine: Engine) -> int:
        return engine.workers


def make_engine(workers: int = 4) -> Engine:
    return Engine(workers)
''',
    "engine/cli.py": """
from engine.core import Engine, Job, make_engine


def main() -> None:
    engine = make_engine()
    engine.submit(Job())
""",
    "engine/batch.py": """
from engine.core import Engine, Job


def run_all(engine: Engine, jobs: list[Job]) -> list[int]:
    return [engine.submit(job) for job in jobs]
""",
    "tests/test_core.py": """
from engine.core import Engine, Job, make_engine


def test_submit():
    assert make_engine(2).submit(Job()) == 2
    assert Engine(3).workers == 3
""",
    "web/client.js": """
class ApiClient {
  constructor(base) { this.base = base; }
  fetchJobs() { return request(this.base + "/jobs"); }
}
function request(url) { return fetch(url); }
module.exports = { ApiClient, request };
""",
    "web/app.ts": """
import { ApiClient } from "./client";
export interface JobView { id: number; name: string }
export function renderJobs(client: ApiClient): JobView[] {
  return client.fetchJobs();
}
""",
    "server/main.go": """
package server

type Scheduler struct {
	queue []string
}

func (s *Scheduler) Schedule(name string) int {
	s.queue = append(s.queue, name)
	return len(s.queue)
}

func NewScheduler() *Scheduler { return &Scheduler{} }
""",
    "server/api.go": """
package server

func Handle(name string) int {
	return NewScheduler().Schedule(name)
}
""",
    "native/src/lib.rs": """
pub struct Buffer { data: Vec<u8> }

impl Buffer {
    pub fn with_capacity(size: usize) -> Buffer { Buffer { data: Vec::with_capacity(size) } }
    pub fn write_bytes(&mut self, bytes: &[u8]) { self.data.extend_from_slice(bytes); }
}
""",
    "native/src/main.rs": """
mod lib;
fn main() { let mut b = lib::Buffer::with_capacity(8); b.write_bytes(b"hi"); }
""",
    "java/Queue.java": """
public class Queue {
    public void enqueue(String item) { }
}
""",
    "java/Worker.java": """
public class Worker {
    private final Queue queue = new Queue();
    public void work() { queue.enqueue("x"); }
}
""",
    "c/buf.h": "struct ring { int head; };\nint ring_push(struct ring *r, int value);\n",
    "c/buf.c": '#include "buf.h"\nint ring_push(struct ring *r, int value) { r->head = value; return 0; }\n',
    "c/main.c": '#include "buf.h"\nint main(void) { struct ring r; return ring_push(&r, 1); }\n',
    "ruby/store.rb": "module Store\n  class Cache\n    def fetch(key)\n      key\n    end\n  end\nend\n",
    "ruby/app.rb": "cache = Store::Cache.new\ncache.fetch(:a)\n",
    "README.md": "# polyglot\n",
}


@pytest.fixture
def polyglot(tmp_path) -> Path:
    return make_repo(tmp_path / "polyglot", {name: text.lstrip("\n") for name, text in POLYGLOT.items()})


def test_every_language_is_mapped_with_its_central_definitions(polyglot, tmp_path):
    with fresh_map(polyglot, tmp_path) as mapper:
        text = mapper.render(4000)
    for expected in (
        "engine/core.py:\n  class Engine:\n",
        '    def submit(self, job: "Job") -> int:\n',
        "  def make_engine(workers: int = 4) -> Engine:\n",
        "web/client.js:\n  class ApiClient\n",
        "  function request(url)\n",
        "web/app.ts:\n",
        "  interface JobView\n",
        "server/main.go:\n  type Scheduler struct\n",
        "  func (s *Scheduler) Schedule(name string) int\n",
        "native/src/lib.rs:\n  pub struct Buffer\n",
        "  pub fn with_capacity(size: usize) -> Buffer\n",
        "java/Queue.java:\n  public class Queue\n    public void enqueue(String item)\n",
        "c/buf.c:\n  int ring_push(struct ring *r, int value)\n",
        "ruby/store.rb:\n  module Store\n    class Cache\n      def fetch(key)\n",
    ):
        assert expected in text, expected
    assert "README.md" not in text


def test_a_small_budget_keeps_the_most_referenced_definitions(polyglot, tmp_path):
    with fresh_map(polyglot, tmp_path) as mapper:
        text = mapper.render(60)
    assert estimate_tokens(text) <= 60
    assert "class Engine:" in text  # referenced from three files
    assert "def test_submit" not in text  # referenced by nothing, and a test


def test_focus_brings_a_file_and_a_name_forward(polyglot, tmp_path):
    with fresh_map(polyglot, tmp_path) as mapper:
        plain = mapper.render(40)
        focused = mapper.render(40, focus_files=["batch.py"], focus_names=["Scheduler"])
    assert "def run_all(" not in plain
    assert "engine/batch.py:\n  def run_all(engine: Engine, jobs: list[Job]) -> list[int]:\n" in focused
    assert "type Scheduler struct" in focused


def test_focus_from_text_finds_files_and_identifiers():
    files, names = focus_from_text("Fix Parser.parse in src/pkg/parser.py so that `load_config()` works.")
    assert "src/pkg/parser.py" in files
    assert {"Parser", "parse", "load_config"} <= names


def test_outline_of_some_files_shows_all_their_definitions(polyglot, tmp_path):
    (polyglot / "engine" / "extra.py").write_text("class Extra:\n    def go(self):\n        pass\n")
    with fresh_map(polyglot, tmp_path) as mapper:
        mapper.scan()
        text = mapper.outline(["engine/core.py", "engine/extra.py", "missing.py"])
    assert text == (
        "engine/core.py:\n"
        "  class Engine:\n"
        "    def __init__(self, workers: int) -> None:\n"
        '    def submit(self, job: "Job") -> int:\n'
        "  class Job:\n"
        "    def run_on(self, engine: Engine) -> int:\n"
        "  def make_engine(workers: int = 4) -> Engine:\n"
        "engine/extra.py:\n"
        "  class Extra:\n"
        "    def go(self):\n"
    )


# --- which files are mapped --------------------------------------------------------------------------


def test_gitignore_vendored_generated_minified_binary_and_huge_files_are_left_out(tmp_path):
    used = "from lib import helper\n\ndef run():\n    return helper()\n"
    repo = make_repo(
        tmp_path / "repo",
        {
            ".gitignore": "build/\nsecret_*.py\n",
            "lib.py": "def helper():\n    return 1\n",
            "app.py": used,
            "node_modules/pkg/index.js": "function vendoredThing() {}\n",
            "vendor/dep.go": "package dep\nfunc VendoredFunc() {}\n",
            "api_pb2.py": "class GeneratedMessage:\n    pass\n",
            "gen.py": "# Code generated by a tool. DO NOT EDIT.\ndef generated_function():\n    pass\n",
            "bundle.js": "function minifiedThing(){return 1};" * 200,
            "blob.py": b"def binary_thing():\n    pass\n\x00\x01\x02",
            "huge.py": "def huge_thing():\n    pass\n" + "x = 1\n" * 200_000,
        },
    )
    (repo / "build").mkdir()
    (repo / "build" / "out.py").write_text("def built_thing():\n    pass\n")
    (repo / "secret_keys.py").write_text("def secret_thing():\n    pass\n")
    (repo / "new_module.py").write_text("def brand_new():\n    return 2\n")  # untracked, not ignored
    with fresh_map(repo, tmp_path) as mapper:
        text = mapper.render(2000)
        assert sorted(mapper.files) == ["app.py", "lib.py", "new_module.py"]
    assert "def helper():" in text and "def brand_new():" in text
    for left_out in (
        "vendoredThing",
        "VendoredFunc",
        "GeneratedMessage",
        "generated_function",
        "minifiedThing",
        "binary_thing",
        "huge_thing",
        "built_thing",
        "secret_thing",
    ):
        assert left_out not in text


def test_a_repository_without_code_has_an_empty_map(tmp_path):
    repo = make_repo(tmp_path / "docs", {"README.md": "# nothing to parse\n"})
    with fresh_map(repo, tmp_path) as mapper:
        assert mapper.render(1024) == ""


# --- the budget, on real code ------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [256, 1024, 4096])
def test_the_budget_is_respected_within_15_percent(stdlib_repo, tmp_path, budget):
    with fresh_map(stdlib_repo, tmp_path) as mapper:
        text = mapper.render(budget)
    used = estimate_tokens(text)
    assert 0.85 * budget <= used <= budget


def test_the_stdlib_map_shows_its_central_definitions(stdlib_repo, tmp_path):
    with fresh_map(stdlib_repo, tmp_path) as mapper:
        text = mapper.render(1024)
    for expected in (
        "email/message.py:\n  class Message:\n",
        "  def getLogger(name=None):\n",
        "  def wraps(wrapped, assigned = WRAPPER_ASSIGNMENTS, updated = WRAPPER_UPDATES):\n",
        "  class AbstractEventLoop:\n",
        "  def namedtuple(",
    ):
        assert expected in text
    assert "def test_" not in text


# --- caching: a warm re-map parses only what changed -------------------------------------------------


def test_a_warm_remap_parses_only_the_changed_file(stdlib_repo, tmp_path):
    cache = tmp_path / "cache.sqlite"
    edited = stdlib_repo / "json" / "decoder.py"
    original = edited.read_text()
    try:
        with RepoMap(stdlib_repo, cache_path=cache) as mapper:
            mapper.render(1024)
            assert mapper.stats.parsed > 100  # every file, but identical ones (empty __init__.py) once
            edited.write_text(original + "\n\ndef brand_new_decoder():\n    return 1\n")
            text = mapper.render(1024, focus_names=["brand_new_decoder"])
            assert mapper.stats.parsed == 1
            assert "def brand_new_decoder():" in text
            mapper.render(1024)
            assert mapper.stats.parsed == 0
        # A new process: tags come from the disk cache; only a file changed since is parsed.
        (stdlib_repo / "json" / "tool.py").write_text("def tool_rewritten():\n    pass\n")
        with RepoMap(stdlib_repo, cache_path=cache) as mapper:
            mapper.render(1024)
            assert mapper.stats.parsed == 1
        with RepoMap(stdlib_repo, cache_path=cache) as mapper:
            mapper.render(1024)
            assert mapper.stats.parsed == 0
    finally:
        edited.write_text(original)
        git(stdlib_repo, "checkout", "--", "json/tool.py")


def test_the_default_cache_lives_in_the_git_directory(polyglot):
    with RepoMap(polyglot) as mapper:
        mapper.render(100)
        assert mapper.stats.parsed > 0
    assert (polyglot / ".git" / "actsmith" / "repomap.sqlite").is_file()
    with RepoMap(polyglot) as mapper:
        mapper.render(100)
        assert mapper.stats.parsed == 0
    assert "actsmith" not in git(polyglot, "status", "--porcelain")


def test_deleted_and_renamed_files_leave_the_map(polyglot, tmp_path):
    with fresh_map(polyglot, tmp_path) as mapper:
        mapper.render(2000)
        git(polyglot, "mv", "engine/batch.py", "engine/jobs.py")
        (polyglot / "engine" / "cli.py").unlink()
        text = mapper.render(2000)
        assert mapper.stats.parsed == 0  # a rename keeps the content: its tags are reused
    assert "engine/jobs.py:\n  def run_all(" in text
    assert "engine/batch.py" not in text and "engine/cli.py" not in text


def test_workers_and_a_single_process_give_the_same_tags(stdlib_repo, tmp_path):
    with RepoMap(stdlib_repo, cache_path=tmp_path / "a.sqlite", workers=2) as parallel:
        parallel.scan()
    with RepoMap(stdlib_repo, cache_path=tmp_path / "b.sqlite", workers=1) as single:
        single.scan()
    assert parallel.stats.parsed >= 100  # enough to go to worker processes
    assert parallel.files == single.files


def test_workers_never_import_code_from_the_mapped_repository(tmp_path, monkeypatch):
    """The repository is untrusted: its own agent_cli/ must not shadow ours in a worker process,
    even when the map runs from inside it."""
    marker = tmp_path / "pwned"
    trap = f"open({str(marker)!r}, 'w').close()\n"
    files = {f"pkg/mod{i}.py": f"def function_{i}():\n    return {i}\n" for i in range(120)}
    files.update({"agent_cli/__init__.py": trap, "agent_cli/repomap/__init__.py": trap})
    files["agent_cli/repomap/worker.py"] = trap
    repo = make_repo(tmp_path / "hostile", files)
    monkeypatch.chdir(repo)
    with fresh_map(repo, tmp_path, workers=2) as mapper:
        mapper.scan()
        assert mapper.stats.parsed >= 100
    assert "pkg/mod7.py" in mapper.files
    assert not marker.exists()


def test_the_incremental_ranking_matches_a_fresh_one(stdlib_repo, tmp_path):
    """Edits that add, remove and rename definitions and references, applied one by one."""
    edits = {
        "json/decoder.py": "\n\ndef decode_everything(x):\n    return getLogger(x)\n",
        "email/message.py": "\n\nclass Envelope(Message):\n    pass\n",
        "logging/__init__.py": None,  # deleted
    }
    originals = {path: (stdlib_repo / path).read_text() for path in edits}
    try:
        with fresh_map(stdlib_repo, tmp_path) as mapper:
            mapper.scan()
            mapper.ranked()
            for path, addition in edits.items():
                if addition is None:
                    (stdlib_repo / path).unlink()
                else:
                    (stdlib_repo / path).write_text(originals[path] + addition)
                mapper.scan()
                incremental = mapper.ranked()
            fresh = ReferenceGraph()
            fresh.update(mapper.files)
            exact = fresh.ranked()
    finally:
        for path, text in originals.items():
            (stdlib_repo / path).write_text(text)

    def top(ranked, n=60):
        return [(r.path, r.definition.name) for r in ranked[:n]]

    assert len(set(top(incremental)) & set(top(exact))) >= 57
    assert top(incremental, 10) == top(exact, 10)


def test_moving_the_focus_matches_a_graph_built_for_it(stdlib_repo, tmp_path):
    with fresh_map(stdlib_repo, tmp_path) as mapper:
        mapper.scan()
        mapper.ranked(["email/message.py"], ["Message"])
        moved = mapper.ranked(["json/decoder.py", "http/client.py"], ["getLogger", "JSONDecoder"])
        fresh = ReferenceGraph(
            mapper.resolve(["json/decoder.py", "http/client.py"]), ["getLogger", "JSONDecoder"]
        )
        fresh.update(mapper.files)
        exact = fresh.ranked()

    def top(ranked, n=40):
        return [(r.path, r.definition.name) for r in ranked[:n]]

    assert top(moved, 10) == top(exact, 10)
    assert len(set(top(moved)) & set(top(exact))) >= 38
    assert ("json/decoder.py", "JSONDecoder") in top(moved, 10)


# --- the CLI and the first prompt --------------------------------------------------------------------


def test_actsmith_map_prints_the_map(polyglot):
    result = run_cli(["map", str(polyglot / "engine"), "--tokens", "200"], polyglot.parent)
    assert result.code == 0, result.stderr
    assert "engine/core.py:\n  class Engine:\n" in result.stdout
    assert estimate_tokens(result.stdout) <= 200
    focused = run_cli(["map", "--tokens", "30", "--focus", "server/api.go"], polyglot)
    assert "server/api.go:\n  func Handle(name string) int\n" in focused.stdout


def test_actsmith_map_outside_a_repository_is_a_usage_error(tmp_path):
    result = run_cli(["map", str(tmp_path)], tmp_path, env=clean_env())
    assert result.code == 2
    assert "not a git repository" in result.stderr


def test_the_first_prompt_carries_the_map_or_the_summary(polyglot):
    workspace = Workspace.open(polyglot)
    with_map = repository_context(workspace, "speed up Engine.submit", 400)
    assert with_map.startswith(workspace.summary())
    assert "class Engine:" in with_map and "def submit(" in with_map
    assert repository_context(workspace, "speed up Engine.submit", 0) == workspace.summary()


def test_map_tokens_is_a_setting_and_a_run_option(tmp_path):
    from agent_cli.settings import load_settings

    assert load_settings(None, {}, environ={}).map_tokens == 1024
    assert load_settings(None, {}, environ={"ACTSMITH_MAP_TOKENS": "0"}).map_tokens == 0
    assert load_settings(None, {"map_tokens": 300}, environ={}).map_tokens == 300
    help_text = run_cli(["run", "--help"], tmp_path, env=clean_env(COLUMNS="200")).stdout
    assert "--map-tokens" in help_text


@pytest.mark.docker
def test_a_run_shows_the_map_in_its_first_prompt_unless_turned_off(run_agent):
    run = run_agent(["<execute>finish('done')</execute>"], "--no-tests", task="change greet")
    first = run.events("model_call")[0]["messages"][1]["content"]
    assert "2 tracked files" in first
    assert "app.py:\n  def greet():\n" in first
    run = run_agent(
        ["<execute>finish('done')</execute>"], "--no-tests", "--map-tokens", "0", task="change greet"
    )
    first = run.events("model_call")[0]["messages"][1]["content"]
    assert "2 tracked files" in first and "def greet():" not in first

"""agent_cli.syntax on real snippets of each language: definitions, references, syntax problems."""

from __future__ import annotations

import textwrap

import pytest

from agent_cli.syntax import Definition, FileTags, analyse, language_for


def tags(path: str, code: str) -> FileTags:
    result = analyse(path, textwrap.dedent(code).lstrip("\n").encode())
    assert result is not None
    return result


def by_name(result: FileTags) -> dict[str, Definition]:
    return {d.name: d for d in result.definitions}


def spans(result: FileTags) -> dict[str, tuple[str, int, int]]:
    return {d.name: (d.kind, d.line, d.end_line) for d in result.definitions}


PYTHON = """
import os
from typing import List


@dataclass
class Parser(Base):
    \"\"\"Turns text into nodes.\"\"\"

    def parse(self, text: str) -> Node:
        def helper():
            return 1

        return self.tokenize(text)

    @property
    def name(self):
        return "x"


def main(argv=None):
    Parser().parse(os.getcwd())
"""


def test_python_definitions_are_qualified_with_their_lines_and_signatures():
    result = tags("pkg/parser.py", PYTHON)
    assert result.language == "python"
    assert spans(result) == {
        "Parser": ("class", 5, 17),  # the decorator line starts it
        "Parser.parse": ("method", 9, 13),
        "Parser.name": ("method", 15, 17),
        "main": ("function", 20, 21),
    }  # helper() is local to parse(): not part of the outline
    defs = by_name(result)
    assert defs["Parser.parse"].signature == "def parse(self, text: str) -> Node:"
    assert defs["Parser"].signature == "class Parser(Base):"
    assert {"Base", "Node", "tokenize", "dataclass", "getcwd", "Parser", "parse"} <= set(result.references)
    assert result.problems == ()


def test_a_changed_body_changes_its_hash_and_nothing_else():
    before = by_name(tags("p.py", PYTHON))
    after = by_name(tags("p.py", PYTHON.replace('return "x"', 'return "y"')))
    assert after["Parser.name"].body_hash != before["Parser.name"].body_hash
    assert after["Parser"].body_hash != before["Parser"].body_hash  # the class contains the method
    assert after["Parser.parse"] == before["Parser.parse"]
    assert after["main"] == before["main"]


def test_moving_a_definition_keeps_its_hash():
    before = by_name(tags("p.py", PYTHON))
    after = by_name(tags("p.py", "# a comment\n\n" + PYTHON))
    assert after["main"].body_hash == before["main"].body_hash
    assert after["main"].line == before["main"].line + 3


def test_typescript():
    result = tags(
        "src/parser.ts",
        """
        export class Parser extends Base implements Thing {
          parse(text: string): Node {
            return this.tokenize(text);
          }
        }
        export interface Thing {
          run(): void;
        }
        type Alias = { a: number };
        enum Color { Red, Green }
        export const helper = (x: number): number => {
          return x * 2;
        };
        """,
    )
    assert spans(result) == {
        "Parser": ("class", 1, 5),
        "Parser.parse": ("method", 2, 4),
        "Thing": ("interface", 6, 8),
        "Alias": ("type", 9, 9),
        "Color": ("enum", 10, 10),
        "helper": ("function", 11, 13),
    }
    defs = by_name(result)
    assert defs["Parser"].signature == "class Parser extends Base implements Thing"
    assert defs["helper"].signature == "const helper = (x: number): number =>"
    assert {"Base", "Thing", "Node", "tokenize"} <= set(result.references)


def test_tsx_and_javascript():
    assert language_for("a/App.tsx") == "tsx"
    result = tags(
        "web/app.js",
        """
        class Parser extends Base {
          constructor() { super(); }
          parse(text) { return this.tokenize(text); }
        }
        function main() { new Parser().parse("x"); }
        """,
    )
    assert spans(result) == {
        "Parser": ("class", 1, 4),
        "Parser.constructor": ("method", 2, 2),
        "Parser.parse": ("method", 3, 3),
        "main": ("function", 5, 5),
    }
    assert {"Base", "Parser", "parse", "tokenize"} <= set(result.references)
    app = tags("App.tsx", "export function App(props: Props) {\n  return <div>{props.title}</div>;\n}\n")
    assert spans(app) == {"App": ("function", 1, 3)}


def test_go_methods_are_named_after_their_receiver():
    result = tags(
        "parser.go",
        """
        package parse

        type Parser struct {
        \tname string
        }

        type Runner interface {
        \tRun() error
        }

        func (p *Parser) Parse(text string) (*Node, error) {
        \treturn tokenize(text), nil
        }

        func New() *Parser { return &Parser{} }
        """,
    )
    assert spans(result) == {
        "Parser": ("struct", 3, 5),
        "Runner": ("interface", 7, 9),
        "Parser.Parse": ("method", 11, 13),
        "New": ("function", 15, 15),
    }
    defs = by_name(result)
    assert defs["Parser.Parse"].signature == "func (p *Parser) Parse(text string) (*Node, error)"
    assert defs["Parser"].signature == "type Parser struct"
    assert {"Node", "tokenize"} <= set(result.references)


def test_rust_impl_blocks_qualify_their_functions():
    result = tags(
        "src/lib.rs",
        """
        pub struct Parser {
            name: String,
        }

        pub trait Run {
            fn run(&self) -> i32;
        }

        impl Parser {
            pub fn parse(&self, text: &str) -> Node {
                tokenize(text)
            }
        }

        impl Run for Parser {
            fn run(&self) -> i32 { 1 }
        }
        """,
    )
    assert spans(result) == {
        "Parser": ("struct", 1, 3),
        "Run": ("trait", 5, 7),
        "Run.run": ("method", 6, 6),
        "Parser.parse": ("method", 10, 12),
        "Parser.run": ("method", 16, 16),
    }
    assert by_name(result)["Parser.parse"].signature == "pub fn parse(&self, text: &str) -> Node"


def test_java():
    result = tags(
        "src/Parser.java",
        """
        package a;

        public class Parser extends Base {
            public Parser(int x) {
                this.x = x;
            }

            public Node parse(String text) {
                return tokenize(text);
            }

            interface Inner { void go(); }
        }
        """,
    )
    assert spans(result) == {
        "Parser": ("class", 3, 13),
        "Parser.Parser": ("method", 4, 6),
        "Parser.parse": ("method", 8, 10),
        "Parser.Inner": ("interface", 12, 12),
        "Parser.Inner.go": ("method", 12, 12),
    }
    assert by_name(result)["Parser.parse"].signature == "public Node parse(String text)"


def test_c_and_cpp():
    c = tags(
        "src/names.c",
        """
        struct point {
            int x, y;
        };

        static char *dup_name(const char *s)
        {
            return strdup(s);
        }
        """,
    )
    assert spans(c) == {"point": ("struct", 1, 3), "dup_name": ("function", 5, 8)}
    assert by_name(c)["dup_name"].signature == "static char *dup_name(const char *s)"
    assert "strdup" in c.references
    cpp = tags(
        "src/shape.cpp",
        """
        namespace geo {
        class Shape : public Base {
        public:
            int sides() const { return n; }
        };
        }

        double geo::Shape::perimeter() const {
            return compute(this);
        }
        """,
    )
    assert spans(cpp) == {
        "geo": ("namespace", 1, 6),
        "geo.Shape": ("class", 2, 5),
        "geo.Shape.sides": ("method", 4, 4),
        "geo.Shape.perimeter": ("method", 8, 10),
    }


def test_ruby():
    result = tags(
        "lib/shapes.rb",
        """
        module Shapes
          class Parser < Base
            def parse(text)
              tokenize(text)
            end

            def self.build
              new
            end
          end
        end
        """,
    )
    assert spans(result) == {
        "Shapes": ("module", 1, 11),
        "Shapes.Parser": ("class", 2, 10),
        "Shapes.Parser.parse": ("method", 3, 5),
        "Shapes.Parser.build": ("method", 7, 9),
    }
    assert by_name(result)["Shapes.Parser.parse"].signature == "def parse(text)"
    assert {"Base", "tokenize"} <= set(result.references)


def test_an_unparseable_python_file_reports_the_line():
    result = tags(
        "broken.py",
        """
        def ok():
            return 1


        def broken(a, b:
            return a + b
        """,
    )
    assert result.problems
    assert result.problems[0].line == 5
    assert "def broken" in result.problems[0].message


def test_a_missing_token_is_named():
    result = tags("main.go", "package m\n\nfunc f( {\n}\n")
    assert result.problems[0].line == 3
    assert result.problems[0].message == "missing ')'"


def test_bad_indentation_is_a_problem_even_where_tree_sitter_recovers():
    result = tags("indent.py", "def f():\n    x = 1\n        y = 2\n")
    assert [(p.line, p.message) for p in result.problems] == [(3, "unexpected indent")]


def test_problems_can_be_skipped():
    result = analyse("broken.py", b"def broken(:\n")
    assert result is not None and result.problems
    assert analyse("broken.py", b"def broken(:\n", problems=False).problems == ()


@pytest.mark.parametrize("path", ["README.md", "data.json", "Makefile", "image.png", "noext"])
def test_unsupported_files_give_none(path):
    assert language_for(path) is None
    assert analyse(path, b"whatever") is None


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("a.py", "python"),
        ("a.js", "javascript"),
        ("a.ts", "typescript"),
        ("a.tsx", "tsx"),
        ("a.go", "go"),
        ("a.rs", "rust"),
        ("A.java", "java"),
        ("a.c", "c"),
        ("a.h", "c"),
        ("a.cpp", "cpp"),
        ("a.hpp", "cpp"),
        ("a.rb", "ruby"),
    ],
)
def test_languages_by_extension(path, language):
    assert language_for(path) == language


def test_binary_garbage_does_not_crash():
    result = analyse("x.py", bytes(range(256)) * 4)
    assert result is not None

"""A worker process: tag the files named (a marshal'd list) on stdin and write the marshal'd results
to stdout. files.tag_in_workers starts it for a cold map; `python -m agent_cli.repomap.worker ROOT`
runs it by hand."""

from __future__ import annotations

import marshal
import sys
from pathlib import Path

from agent_cli.repomap.files import tag_files


def main(root: str) -> None:
    paths = marshal.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(marshal.dumps(tag_files(Path(root), paths)))


if __name__ == "__main__":
    main(sys.argv[1])

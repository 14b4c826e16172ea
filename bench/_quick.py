"""`--quick`, shared by every bench: the same measurement at small sizes, in seconds.

The test suite runs each bench this way (tests/test_benches.py), so a change that breaks a bench
fails CI; the figures it prints are only a smoke check. Options given explicitly still win.
"""

from __future__ import annotations

import argparse
from typing import Any


def parse_args(parser: argparse.ArgumentParser, quick: dict[str, Any]) -> argparse.Namespace:
    """Parse the command line; with --quick, the `quick` values replace the defaults first."""
    sizes = ", ".join(f"--{name.replace('_', '-')} {shown(value)}" for name, value in quick.items())
    parser.add_argument(
        "--quick", action="store_true", help=f"small sizes, seconds ({sizes or 'the defaults'})"
    )
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args()
    return args


def shown(value: Any) -> str:
    """A value as it would be typed: a list as comma-separated values."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)

"""The ``fastloss`` command (also ``python -m fastloss``).

Each subcommand lives in its own module, which provides ``add_parser(subparsers)`` and
``run(args) -> int``; this file only wires them together, importing each lazily.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# subcommand -> module providing add_parser(subparsers) and run(args)
SUBCOMMANDS = {
    "bench": "fastloss._bench",
    "info": "fastloss._config",
    "score": "fastloss.scoring",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastloss", description="Fused, parallel loss kernels: benchmark, score, inspect."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

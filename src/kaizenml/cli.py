"""The ``kaizenml`` command."""

from __future__ import annotations

import argparse

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaizenml",
        description="Continuous improvement of ML models in trading research.",
    )
    parser.add_argument("--version", action="version", version=f"kaizenml {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0

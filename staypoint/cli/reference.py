"""Renders docs/cli.md from the argument parser, so the reference cannot drift.

.venv/bin/python -m staypoint.cli.reference > docs/cli.md
"""

from __future__ import annotations

import argparse

from staypoint.cli.main import build_parser


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    """The whole command reference as Markdown."""
    parser = build_parser()
    out = [
        "# `staypoint` command reference",
        "",
        "Generated from the program itself (`python -m staypoint.cli.reference > docs/cli.md`);",
        "a test fails when this page and the commands disagree.",
        "",
    ]

    def walk(p: argparse.ArgumentParser, path: list[str]) -> None:
        children = _subparsers(p)
        if not children:
            out.extend([f"## `staypoint {' '.join(path)}`", "", "```", p.format_help().rstrip(), "```", ""])
            return
        for name, child in children.items():
            walk(child, [*path, name])

    walk(parser, [])
    return "\n".join(out)


if __name__ == "__main__":
    import os

    os.environ["COLUMNS"] = "100"
    print(render(), end="")

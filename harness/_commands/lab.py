"""`cihub lab up|status|down|token`: bring the lab up and down from a shell."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("lab", help="bring the containerized lab up or down")
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)

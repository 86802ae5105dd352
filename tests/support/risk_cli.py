"""`peercare eval risk` run in-process, as the command line parses it (tests of its options and reports)."""

from __future__ import annotations

import argparse

from inference.risk.cli import register_eval


def run_eval_risk(argv: list[str]) -> int:
    """The exit status of ``peercare eval risk ARGV``; its output goes to stdout and stderr as usual."""
    parser = argparse.ArgumentParser()
    register_eval(parser.add_subparsers(dest="model"))
    args = parser.parse_args(["risk", *argv])
    return args.func(args)

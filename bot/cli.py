"""The `peercare` command line: run the bot, manage the database, train/evaluate models, try scoring offline."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from bot import __version__
from bot.logging_setup import configure_logging
from bot.settings import SettingsError, load_settings

log = logging.getLogger(__name__)

# Modules that contribute subcommands: each exposes register_train/register_eval (models) or register (tools).
_TRAIN_EVAL_MODULES = ("inference.empathy.cli", "inference.risk.cli")
_TOOL_MODULES = ("bot.tools.score_cli",)


def _fail(message: str, code: int = 2) -> int:
    print(f"peercare: error: {message}", file=sys.stderr)
    return code


def _cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    token = settings.require_token()  # fail fast, before importing anything heavy
    configure_logging(settings.log_level, secrets=[token])

    import discord

    from bot.app import run_bot
    from bot.db.migrate import upgrade_database

    upgrade_database(settings.database_url)
    try:
        asyncio.run(run_bot(settings))
    except discord.LoginFailure:
        return _fail(
            "Discord rejected DISCORD_TOKEN (login failed): copy the bot token again from the portal"
        )
    except discord.PrivilegedIntentsRequired:
        return _fail(
            "enable the Message Content and Server Members intents for this bot in the Developer Portal"
        )
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    from alembic import command

    from bot.db.migrate import alembic_config

    settings = load_settings()
    config = alembic_config(settings.database_url)
    if args.db_command == "upgrade":
        command.upgrade(config, args.revision)
    elif args.db_command == "downgrade":
        command.downgrade(config, args.revision)
    elif args.db_command == "current":
        command.current(config, verbose=True)
    elif args.db_command == "revision":
        command.revision(config, message=args.message, autogenerate=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peercare",
        description="PeerCare: private empathy coaching and consent-based escalation for peer-support servers.",
    )
    parser.add_argument("--version", action="version", version=f"peercare {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the Discord bot (migrates the database first)")
    run.set_defaults(func=_cmd_run)

    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations (default: to head)")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="revert migrations (e.g. -1, base)")
    down.add_argument("revision")
    db_sub.add_parser("current", help="show the database's revision")
    rev = db_sub.add_parser("revision", help="autogenerate a revision from the models (developers)")
    rev.add_argument("-m", "--message", required=True)
    db.set_defaults(func=_cmd_db)

    train = sub.add_parser("train", help="train a model").add_subparsers(dest="model", required=True)
    evaluate = sub.add_parser("eval", help="evaluate a model").add_subparsers(dest="model", required=True)
    for module_name in _TRAIN_EVAL_MODULES:
        module = importlib.import_module(module_name)
        module.register_train(train)
        module.register_eval(evaluate)
    for module_name in _TOOL_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SettingsError as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    raise SystemExit(main())

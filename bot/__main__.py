"""`python -m bot` runs the bot, like `peercare run`."""

from bot.cli import main

raise SystemExit(main(["run"]))

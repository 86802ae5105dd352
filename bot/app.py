"""The PeerCare bot: a discord.py ``commands.Bot`` that owns the database, the scheduler and the inference client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pkgutil
import signal
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import discord
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from discord import app_commands
from discord.ext import commands

import cogs
from bot.db.session import Database
from bot.interaction_replies import AutoDefer, answer
from bot.services.escalation_policy import ModeratorAction
from bot.services.risk_tier import DefaultThresholds
from bot.settings import Settings
from inference.client import InferenceClient

log = logging.getLogger(__name__)


def required_intents() -> discord.Intents:
    """The intents PeerCare needs; message content and members are privileged (enable them in the portal)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True  # privileged: replies must be read to be scored
    intents.members = True  # privileged: member-leave events trigger data deletion
    return intents


def extension_names() -> list[str]:
    """Every extension in ``cogs/``: one per feature area, loaded at start-up."""
    return sorted(f"cogs.{module.name}" for module in pkgutil.iter_modules(cogs.__path__))


def _top_level_app_commands(cog: commands.Cog) -> list[app_commands.Command | app_commands.Group]:
    # A GroupCog's get_app_commands() lists its subcommands (parent = the cog's group), not the group itself.
    group = cog.app_command if isinstance(cog, commands.GroupCog) else None
    return [group] if group is not None else list(cog.get_app_commands())


def _dropping_unreadable(event: str, parse: Callable[[Any], None]) -> Callable[[Any], None]:
    def parse_or_drop(data: Any) -> None:
        try:
            parse(data)
        except Exception as exc:
            # Where it failed, never the payload (it can hold message text).
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(
                "dropped a %s event that could not be read (%s in %s, %s:%d)",
                event,
                type(exc).__name__,
                where.name,
                Path(where.filename).name,
                where.lineno or 0,
            )

    return parse_or_drop


RESTARTING = "PeerCare is restarting; try again in a minute."
CogT = TypeVar("CogT", bound=commands.Cog)
HandlerT = TypeVar("HandlerT")


async def _or_restarting(
    interaction: discord.Interaction, handler: HandlerT | None, *, ephemeral: bool
) -> HandlerT | None:
    # A press that finds no handler is answered, never dropped: the member learns to try again.
    if handler is None:
        await answer(interaction, RESTARTING, ephemeral=ephemeral)
    return handler


async def cog_for(
    interaction: discord.Interaction, cog_type: type[CogT], *, ephemeral: bool = False
) -> CogT | None:
    """The loaded cog a restart-proof button or form hands its press to.

    None while that cog is not loaded (PeerCare is restarting): the member is told so and tries again.
    """
    client = interaction.client
    cog = client.get_cog(cog_type.__cog_name__) if isinstance(client, commands.Bot) else None
    return await _or_restarting(interaction, cog if isinstance(cog, cog_type) else None, ephemeral=ephemeral)


class CaseDesk(Protocol):
    """The Discord side of escalation cases (the escalation cog): deliver a case, take a button press."""

    async def deliver(self, escalation_id: int) -> None: ...

    async def moderator_pressed(
        self, interaction: discord.Interaction, escalation_id: int, action: ModeratorAction
    ) -> None: ...

    async def member_answered(
        self, interaction: discord.Interaction, escalation_id: int, wants_moderator: bool
    ) -> None: ...


async def case_desk_for(interaction: discord.Interaction, *, ephemeral: bool = False) -> CaseDesk | None:
    """The case desk an escalation button hands its press to (the bot's, not a cog looked up by name).

    None while the escalation cog is not loaded (PeerCare is restarting): the member is told so and tries again.
    """
    client = interaction.client
    desk = client.case_desk if isinstance(client, PeerCareBot) else None
    return await _or_restarting(interaction, desk, ephemeral=ephemeral)


class PeerCareBot(commands.Bot):
    """The bot. Feature cogs hang their slash commands under the one ``/peercare`` group."""

    def __init__(
        self,
        settings: Settings,
        *,
        inference: InferenceClient | None = None,
        database: Database | None = None,
        extensions: Iterable[str] | None = None,
        **options: object,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=required_intents(),
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            **options,  # type: ignore[arg-type]
        )
        self.settings = settings
        # The guilds whose periodic work (sweeps, recovery, retention, check-ins) this process does: bot.sharding.
        self.guild_ownership = settings.shard_plan.ownership()
        self.database = database or Database(settings.database_url)
        self._inference = inference
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        # The risk model card's thresholds: every tier the bot decides falls back to these (bot.services.risk_tier).
        self.risk_defaults = DefaultThresholds(settings.risk_model)
        # Set by the escalation cog while it is loaded; a case opened while it is not is delivered by its sweep.
        self.case_desk: CaseDesk | None = None
        self.peercare_group = app_commands.Group(
            name="peercare", description="PeerCare: empathy coaching, check-ins and safety settings"
        )
        self._extensions = list(extensions) if extensions is not None else extension_names()
        self._closing: asyncio.Task[None] | None = None
        # Acknowledges slow commands and buttons before Discord's 3 s deadline (see bot.interaction_replies).
        self.auto_defer = AutoDefer()
        # discord.py lets an exception in one event's parser end the whole connection task (the bot stops):
        # a malformed or unexpected event must cost only itself.
        parsers = self._connection.parsers
        for event, parse in list(parsers.items()):
            parsers[event] = _dropping_unreadable(event, parse)

    @property
    def inference(self) -> InferenceClient:
        if self._inference is None:
            raise RuntimeError("the inference client is not started yet")
        return self._inference

    @property
    def has_inference(self) -> bool:
        return self._inference is not None

    async def setup_hook(self) -> None:
        if self._inference is None:
            from bot.inference_config import inference_config_from_settings
            from inference.factory import create_inference_client

            self._inference = create_inference_client(inference_config_from_settings(self.settings))
        # Models load in the background: the bot answers commands while they do.
        await self._inference.start()
        await self.risk_defaults.load()
        self.scheduler.start()
        for name in self._extensions:
            await self.load_extension(name)
        self.tree.add_command(self.peercare_group)
        await self.sync_commands()

    async def deliver_cases(self, escalation_ids: Iterable[int]) -> None:
        """Deliver cases a unit of work opened or updated; one that fails here stays for the periodic sweep."""
        desk = self.case_desk
        for escalation_id in escalation_ids:
            if desk is None:
                log.info(
                    "escalation %s waits for the escalation sweep (its cog is not loaded)", escalation_id
                )
                continue
            try:
                await desk.deliver(escalation_id)
            except Exception:
                if self.is_closed():
                    # The case is committed as pending: the next start's sweep delivers it.
                    log.warning("escalation %s left pending by shutdown", escalation_id)
                else:
                    log.exception("could not deliver escalation %s now; the sweep retries it", escalation_id)

    async def sync_commands(self) -> None:
        guild_id = self.settings.dev_guild_id
        if guild_id is not None:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log.info("synced %d application commands%s", len(synced), f" to guild {guild_id}" if guild_id else "")

    async def add_cog(self, cog: commands.Cog, /, **kwargs: object) -> None:  # type: ignore[override]
        """Add a cog, then move its app commands under ``/peercare`` (Discord allows one level of groups)."""
        await super().add_cog(cog, **kwargs)  # type: ignore[arg-type]
        for command in _top_level_app_commands(cog):
            self.tree.remove_command(command.name)
            self.peercare_group.add_command(command)

    async def remove_cog(self, name: str, /, **kwargs: object) -> commands.Cog | None:  # type: ignore[override]
        cog = self.get_cog(name)
        if cog is not None:
            for command in _top_level_app_commands(cog):
                self.peercare_group.remove_command(command.name)
        return await super().remove_cog(name, **kwargs)  # type: ignore[arg-type]

    async def on_message(self, message: discord.Message, /) -> None:
        """No text commands: "@PeerCare help" is a message like any other (cogs' listeners still get it).

        discord.py's default would look it up as a prefix command and log CommandNotFound as an ERROR.
        """

    async def on_interaction(self, interaction: discord.Interaction, /) -> None:
        self.auto_defer.watch(interaction)

    async def close(self) -> None:
        """Flush and close in order: stop taking events, finish scheduled work, stop models, close the DB.

        Every caller waits for the whole of it: ``run_bot``'s ``async with`` exit comes while a SIGTERM's close is
        still stopping the models (a Ray Serve app being deleted), and leaving then would cancel that.
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self._close_in_order(), name="peercare-close"
            )
        await asyncio.shield(self._closing)

    async def __aexit__(self, *exc_info: object) -> None:
        # discord.py's exit waits for its own part of close() only; the models and the database close after it.
        await self.close()

    async def _close_in_order(self) -> None:
        log.info("shutting down")
        self.auto_defer.cancel_all()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        try:
            await super().close()
        finally:
            if self._inference is not None:
                await self._inference.close()
            await self.database.close()


class ShardedPeerCareBot(PeerCareBot, commands.AutoShardedBot):
    """PeerCare on discord.py's AutoShardedBot: the shards ``SHARD_COUNT`` / ``SHARD_IDS`` give this process."""


def create_bot(
    settings: Settings,
    *,
    inference: InferenceClient | None = None,
    database: Database | None = None,
    extensions: Iterable[str] | None = None,
    **options: object,
) -> PeerCareBot:
    """Build the bot; ``inference=None`` starts the backend chosen by ``INFERENCE_BACKEND``."""
    plan = settings.shard_plan
    bot_class = ShardedPeerCareBot if plan.sharded else PeerCareBot
    return bot_class(
        settings,
        inference=inference,
        database=database,
        extensions=extensions,
        **plan.bot_options(),
        **options,
    )


async def run_bot(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly. Raises discord.LoginFailure on a bad token."""
    token = settings.require_token()
    bot = create_bot(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no loop signal handlers
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    async with bot:
        await bot.start(token)

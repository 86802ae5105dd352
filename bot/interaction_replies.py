"""Answering interactions within Discord's 3 s deadline: one ``answer`` for handlers, and an automatic defer.

Discord refuses an interaction's *initial* response more than 3 s after the interaction was created (404,
code 10062, and the member sees "The application did not respond"); follow-ups work for 15 minutes after it
is acknowledged. Under load a handler's database work can take longer than that, so ``AutoDefer`` (hooked
once, in ``PeerCareBot.on_interaction``) acknowledges every application command and every PeerCare button
or form that is still unanswered ``after_seconds`` after its creation time (the snowflake's, so event-loop
lag counts). Handlers never care whether that happened: ``answer``, ``update``, ``defer`` and
``open_modal`` send the initial response when none was sent yet and fall back to a follow-up or an edit
of the original response otherwise. One lock per interaction keeps the timer and the handler from both
sending an initial response.

Declarations, for the few cases where the private "thinking…" defer is wrong:

- ``@answers_publicly`` above ``@app_commands.command``: the auto-defer is public (the first follow-up
  after a defer takes the defer's visibility, whatever it asks for).
- ``@opens_modal`` above ``@app_commands.command``, or on a ``DynamicItem`` class: never auto-deferred
  (Discord allows a modal only as the initial response).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import discord
from discord import app_commands
from discord.utils import MISSING

log = logging.getLogger(__name__)

AUTO_DEFER_AFTER_S = 2.0
# Only PeerCare's own buttons and forms: a stale foreign component is left alone, as discord.py leaves it.
OWN_CUSTOM_ID_PREFIX = "peercare:"
EXTRAS_KEY = "peercare.auto_defer"
PUBLIC = "public"
NEVER = "never"
UNKNOWN_INTERACTION = 10062  # Discord's answer to a first response after the deadline
_STATE_KEY = "peercare.reply_state"
# custom_id templates of components that open a modal (filled by ``opens_modal``; a set, as extensions
# are executed again at every load).
_MODAL_TEMPLATES: set[re.Pattern[str]] = set()

T = TypeVar("T")


@dataclasses.dataclass(eq=False)
class ReplyState:
    """Per interaction (kept in ``interaction.extras``): the lock and the pending auto-defer."""

    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    timer: asyncio.Task[None] | None = None
    timer_fired: bool = False
    expired: bool = False

    def stop_timer(self) -> None:
        # Only while it sleeps: a defer cancelled on its way may still reach Discord, and then a second
        # first answer would be refused. Once fired, the lock orders it before or after the handler.
        if self.timer is not None and not self.timer_fired:
            self.timer.cancel()


def reply_state(interaction: discord.Interaction) -> ReplyState:
    state = interaction.extras.get(_STATE_KEY)
    if state is None:
        state = interaction.extras[_STATE_KEY] = ReplyState()
    return state


def _declare(command: T, how: str) -> T:
    if not isinstance(command, (app_commands.Command, app_commands.ContextMenu)):
        raise TypeError("put this decorator above @app_commands.command")
    command.extras[EXTRAS_KEY] = how
    return command


def answers_publicly(command: T) -> T:
    """This command's answer is for everyone: an automatic defer is public, not private."""
    return _declare(command, PUBLIC)


def opens_modal(target: T) -> T:
    """This command (or ``DynamicItem`` button class) answers with a modal: never defer it automatically."""
    template = getattr(target, "__discord_ui_compiled_template__", None)
    if isinstance(target, type) and isinstance(template, re.Pattern):
        _MODAL_TEMPLATES.add(template)
        return target
    return _declare(target, NEVER)


def component_opens_modal(custom_id: str) -> bool:
    """Whether a button with this custom id was declared ``opens_modal``."""
    return any(template.fullmatch(custom_id) for template in _MODAL_TEMPLATES)


def _declared(interaction: discord.Interaction) -> str | None:
    if interaction.type is discord.InteractionType.application_command:
        command = interaction.command
        return command.extras.get(EXTRAS_KEY) if command is not None else None
    custom_id = str((interaction.data or {}).get("custom_id", ""))
    if interaction.type is discord.InteractionType.component and component_opens_modal(custom_id):
        return NEVER
    return None


def _watched(interaction: discord.Interaction) -> bool:
    if interaction.type is discord.InteractionType.application_command:
        return True
    if interaction.type in (discord.InteractionType.component, discord.InteractionType.modal_submit):
        return str((interaction.data or {}).get("custom_id", "")).startswith(OWN_CUSTOM_ID_PREFIX)
    return False  # autocomplete answers itself; pings never reach the bot over the gateway


class AutoDefer:
    """Defers interactions still unanswered ``after_seconds`` after creation (``None`` turns it off)."""

    def __init__(self, after_seconds: float | None = AUTO_DEFER_AFTER_S) -> None:
        self.after_seconds = after_seconds
        self._timers: set[asyncio.Task[None]] = set()

    def watch(self, interaction: discord.Interaction) -> None:
        """Start the timer for a new interaction (called once, from the bot's ``on_interaction``)."""
        if self.after_seconds is None or not _watched(interaction) or _declared(interaction) == NEVER:
            return
        state = reply_state(interaction)
        if state.timer is not None or interaction.response.is_done():
            return
        state.timer = asyncio.create_task(
            self._defer_when_late(interaction, state), name=f"auto-defer-{interaction.id}"
        )
        self._timers.add(state.timer)
        state.timer.add_done_callback(self._timers.discard)

    def cancel_all(self) -> None:
        """At shutdown: nothing more is deferred."""
        for timer in list(self._timers):
            timer.cancel()

    async def _defer_when_late(self, interaction: discord.Interaction, state: ReplyState) -> None:
        age = (discord.utils.utcnow() - interaction.created_at).total_seconds()
        await asyncio.sleep(max((self.after_seconds or 0.0) - age, 0.0))
        state.timer_fired = True
        async with state.lock:
            if interaction.response.is_done():
                return
            public = _declared(interaction) == PUBLIC
            try:
                if interaction.type is discord.InteractionType.application_command:
                    await interaction.response.defer(ephemeral=not public, thinking=True)
                else:
                    # A button or form: acknowledge without replacing or re-rendering the message.
                    await interaction.response.defer()
            except discord.InteractionResponded:
                return
            except discord.HTTPException as exc:
                # Expired: the handler's answers are skipped (refused the same way); else they try themselves.
                state.expired = exc.code == UNKNOWN_INTERACTION
                log.warning(
                    "could not defer interaction %s: HTTP %s code %s%s",
                    interaction.id,
                    exc.status,
                    exc.code,
                    " (past Discord's 3 s deadline)" if state.expired else "",
                )
                return
            age = (discord.utils.utcnow() - interaction.created_at).total_seconds()
            log.info(
                "interaction %s deferred: still unanswered %.1f s after it was created", interaction.id, age
            )


async def _first_or_later(
    interaction: discord.Interaction,
    first: Callable[[], Any],
    later: Callable[[], Any],
) -> None:
    state = reply_state(interaction)
    async with state.lock:
        state.stop_timer()
        if state.expired:
            return  # already said: Discord no longer takes any answer to it
        if not interaction.response.is_done():
            try:
                await first()
                return
            except discord.InteractionResponded:
                pass
            except discord.NotFound as exc:
                if exc.code != UNKNOWN_INTERACTION:
                    raise
                # Too late: the member saw "The application did not respond". The work itself is done;
                # an error answer would be refused the same way.
                state.expired = True
                log.warning(
                    "interaction %s expired before its first answer (Discord's 3 s deadline)", interaction.id
                )
                return
        await later()


async def answer(
    interaction: discord.Interaction,
    content: str | None = None,
    *,
    embed: discord.Embed = MISSING,
    file: discord.File = MISSING,
    view: discord.ui.View = MISSING,
    ephemeral: bool = False,
) -> None:
    """Answer the member: the initial response if none was sent yet, otherwise a follow-up.

    After a "thinking…" deferral the first follow-up takes the defer's visibility (Discord's rule), not
    ``ephemeral``. The auto-defer is private unless the command declared ``answers_publicly``, so it can
    only make an answer more private.
    """

    async def first() -> None:
        await interaction.response.send_message(
            content, embed=embed, file=file, view=view, ephemeral=ephemeral
        )

    async def later() -> None:
        await interaction.followup.send(
            content or MISSING, embed=embed, file=file, view=view, ephemeral=ephemeral
        )

    await _first_or_later(interaction, first, later)


async def update(
    interaction: discord.Interaction,
    *,
    content: str | None = MISSING,
    embed: discord.Embed | None = MISSING,
    view: discord.ui.View | None = MISSING,
) -> None:
    """Edit the message whose button was pressed: in the initial response, or after a deferral."""

    async def first() -> None:
        await interaction.response.edit_message(content=content, embed=embed, view=view)

    async def later() -> None:
        await interaction.edit_original_response(content=content, embed=embed, view=view)

    await _first_or_later(interaction, first, later)


async def defer(interaction: discord.Interaction, *, ephemeral: bool, thinking: bool = True) -> None:
    """Defer now (slow work ahead); nothing to do when the interaction was already acknowledged."""

    async def first() -> None:
        await interaction.response.defer(ephemeral=ephemeral, thinking=thinking)

    async def later() -> None:
        return None

    await _first_or_later(interaction, first, later)


async def open_modal(interaction: discord.Interaction, modal: discord.ui.Modal) -> None:
    """Open a form. It must be the initial response: declare the command or button ``opens_modal``."""
    state = reply_state(interaction)
    async with state.lock:
        state.stop_timer()
        await interaction.response.send_modal(modal)

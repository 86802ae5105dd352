"""INTERACTION_CREATE payloads (slash commands checked against the synced commands, clicks, modals) and their answers."""

# Test helpers take a plain ``timeout=`` argument: tests read better than with asyncio.timeout blocks.
# ruff: noqa: ASYNC109

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tests.discord_server.world import Attachment, Channel, Message, MessageFlag, Role, User, World

if TYPE_CHECKING:
    from tests.discord_server.server import DiscordServer

DEFAULT_WAIT_S = 10.0  # as in server.py: generous on a shared machine

log = logging.getLogger(__name__)

Payload = dict[str, Any]


class InteractionType:
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


class CallbackType:
    PONG = 1
    CHANNEL_MESSAGE = 4
    DEFERRED_CHANNEL_MESSAGE = 5
    DEFERRED_UPDATE_MESSAGE = 6
    UPDATE_MESSAGE = 7
    AUTOCOMPLETE_RESULT = 8
    MODAL = 9


class OptionType:
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


class CommandError(ValueError):
    """The test asked for a command or option the bot never synced (a typo, or a bug in the bot)."""


@dataclasses.dataclass(eq=False)
class Interaction:
    """One interaction the server sent, and everything the bot answered to it."""

    id: int
    token: str
    type: int
    user: User
    channel: Channel
    payload: Payload
    server: DiscordServer
    source_message: Message | None = None  # the message whose component was clicked
    callbacks: list[Payload] = dataclasses.field(default_factory=list)
    original: Message | None = None
    followups: list[Message] = dataclasses.field(default_factory=list)
    modal: Payload | None = None

    @property
    def responded(self) -> bool:
        return bool(self.callbacks)

    @property
    def messages(self) -> list[Message]:
        """The original response (once it has content) and every follow-up, in order."""
        found = [] if self.original is None or self.original.flags & MessageFlag.LOADING else [self.original]
        return found + [m for m in self.followups if not m.deleted]

    @property
    def text(self) -> str:
        return "\n".join(m.text for m in self.messages)

    async def response(self, timeout: float = DEFAULT_WAIT_S) -> Payload:
        """The bot's first callback (``{"type": 4, "data": {...}}``), waiting for it if needed."""
        await self.server.wait_until(lambda: self.callbacks, timeout, f"a response to interaction {self.id}")
        return self.callbacks[0]

    async def reply(
        self, predicate: Callable[[Message], bool] | None = None, timeout: float = DEFAULT_WAIT_S
    ) -> Message:
        """The first response message (original after any defer, or a follow-up) matching ``predicate``."""

        def found() -> Message | None:
            return next((m for m in self.messages if predicate is None or predicate(m)), None)

        return await self.server.wait_until(found, timeout, f"a reply message to interaction {self.id}")


def member_payload(world: World, channel: Channel, user: User) -> Payload:
    guild = world.guilds[channel.guild_id]  # type: ignore[index]
    member = guild.members[user.id]
    return {**member.payload(), "permissions": str(guild.permissions_of(user.id))}


def base_payload(
    world: World, server: DiscordServer, interaction_type: int, user: User, channel: Channel, data: Payload
) -> tuple[int, str, Payload]:
    interaction_id = world.ids.next()
    token = f"loopback-interaction-{secrets.token_urlsafe(24)}"
    payload: Payload = {
        "id": str(interaction_id),
        "application_id": str(server.application_id),
        "type": interaction_type,
        "data": data,
        "channel_id": str(channel.id),
        "channel": channel.payload(),
        "token": token,
        "version": 1,
        "locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": 10 * 1024 * 1024,
    }
    if channel.guild_id is not None:
        guild = world.guilds[channel.guild_id]
        payload.update(
            guild_id=str(guild.id),
            guild_locale="en-US",
            guild={"id": str(guild.id), "locale": "en-US", "features": []},
            member=member_payload(world, channel, user),
            app_permissions=str(guild.permissions_of(world.cast.bot.id)),
            authorizing_integration_owners={"0": str(guild.id)},
            context=0,
        )
        payload["channel"]["permissions"] = str(guild.permissions_of(user.id))
    else:
        payload.update(
            user=user.payload(),
            app_permissions=str((1 << 50) - 1),
            authorizing_integration_owners={"0": "0"},
            context=1,
        )
    return interaction_id, token, payload


# -- slash commands --------------------------------------------------------------------------------------


def find_command(commands: list[Payload], name: str) -> Payload:
    for command in commands:
        if command["name"] == name and command.get("type", 1) == 1:
            return command
    raise CommandError(f"/{name} was not synced; synced: {sorted(c['name'] for c in commands)}")


def build_command_data(
    world: World, command: Payload, path: list[str], options: Mapping[str, Any], guild_id: int | None
) -> Payload:
    """``data`` for ``/name sub group ...`` with ``options``, typed and resolved as the synced definition says."""
    resolved: dict[str, dict[str, Payload]] = {}
    definition_options = command.get("options") or []
    nested: list[Payload] = []
    top: list[Payload] = nested
    for word in path:
        sub = next(
            (
                o
                for o in definition_options
                if o["name"] == word and o["type"] in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP)
            ),
            None,
        )
        if sub is None:
            names = [o["name"] for o in definition_options if o["type"] in (1, 2)]
            raise CommandError(f"/{command['name']} has no subcommand {word!r} here; it has {names}")
        entry: Payload = {"name": word, "type": sub["type"], "options": []}
        nested.append(entry)
        nested = entry["options"]
        definition_options = sub.get("options") or []
    if any(o["type"] in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP) for o in definition_options):
        names = [o["name"] for o in definition_options]
        raise CommandError(f"/{command['name']} {' '.join(path)} needs a subcommand: {names}")
    known = {o["name"]: o for o in definition_options}
    for name in options:
        if name not in known:
            raise CommandError(f"option {name!r} is not defined; options are {sorted(known)}")
    for definition in definition_options:
        if definition.get("required") and definition["name"] not in options:
            raise CommandError(f"required option {definition['name']!r} is missing")
    for name, value in options.items():
        nested.append(_option_value(world, known[name], value, resolved, guild_id))
    data: Payload = {"id": str(command["id"]), "name": command["name"], "type": 1, "options": top}
    if resolved:
        data["resolved"] = resolved
    if command.get("guild_id"):
        data["guild_id"] = command["guild_id"]
    return data


def _option_value(
    world: World,
    definition: Payload,
    value: Any,
    resolved: dict[str, dict[str, Payload]],
    guild_id: int | None,
) -> Payload:
    kind = definition["type"]
    name = definition["name"]
    if kind == OptionType.STRING:
        value = str(value)
    elif kind == OptionType.INTEGER:
        value = int(value)
    elif kind == OptionType.NUMBER:
        value = float(value)
    elif kind == OptionType.BOOLEAN:
        value = bool(value)
    elif kind in (OptionType.USER, OptionType.CHANNEL, OptionType.ROLE, OptionType.MENTIONABLE):
        value = _resolve_entity(world, kind, name, value, resolved, guild_id)
    elif kind == OptionType.ATTACHMENT:
        attachment = value if isinstance(value, Attachment) else world.add_attachment(*value, None, None)
        resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.payload()
        value = str(attachment.id)
    choices = definition.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise CommandError(f"{value!r} is not a choice of {name!r}: {[c['value'] for c in choices]}")
    return {"name": name, "type": kind, "value": value}


def _resolve_entity(
    world: World,
    kind: int,
    name: str,
    value: Any,
    resolved: dict[str, dict[str, Payload]],
    guild_id: int | None,
) -> str:
    if isinstance(value, int):
        value = world.users.get(value) or world.channels.get(value) or _find_role(world, value)
    guild = world.guilds.get(guild_id) if guild_id else None
    if isinstance(value, User) and kind in (OptionType.USER, OptionType.MENTIONABLE):
        resolved.setdefault("users", {})[str(value.id)] = value.payload()
        if guild is not None and value.id in guild.members:
            member = guild.members[value.id].payload(with_user=False)
            member["permissions"] = str(guild.permissions_of(value.id))
            resolved.setdefault("members", {})[str(value.id)] = member
        return str(value.id)
    if isinstance(value, Channel) and kind == OptionType.CHANNEL:
        channel = value.payload()
        channel["permissions"] = str(guild.permissions_of(world.cast.bot.id) if guild else 0)
        resolved.setdefault("channels", {})[str(value.id)] = channel
        return str(value.id)
    if isinstance(value, Role) and kind in (OptionType.ROLE, OptionType.MENTIONABLE):
        resolved.setdefault("roles", {})[str(value.id)] = value.payload()
        return str(value.id)
    raise CommandError(f"option {name!r} (type {kind}) cannot take {value!r}")


def _find_role(world: World, role_id: int) -> Role | None:
    for guild in world.guilds.values():
        if role_id in guild.roles:
            return guild.roles[role_id]
    return None


# -- components and modals -------------------------------------------------------------------------------


def build_component_data(message: Message, custom_id: str, values: list[str] | None) -> Payload:
    component = message.find_component(custom_id)
    if component is None:
        raise CommandError(
            f"message {message.id} has no component {custom_id!r}; it has {message.custom_ids()}"
        )
    if component.get("disabled"):
        raise CommandError(f"component {custom_id!r} is disabled; a member cannot click it")
    data: Payload = {"custom_id": custom_id, "component_type": component["type"]}
    if values is not None:
        data["values"] = list(values)
    return data


def build_modal_data(modal: Payload, values: Mapping[str, str]) -> Payload:
    """Answer a modal the bot opened, mirroring its layout (action rows or labels) with the typed values."""
    known: list[str] = []

    def answer(component: Payload) -> Payload:
        known.append(component["custom_id"])
        return {
            "type": component["type"],
            "custom_id": component["custom_id"],
            "value": values.get(component["custom_id"], ""),
        }

    rows: list[Payload] = []
    for item in modal.get("components") or []:
        if item.get("type") == 1:  # action row
            rows.append({"type": 1, "components": [answer(c) for c in item.get("components") or []]})
        elif item.get("type") == 18 and "component" in item:  # label wrapping one input
            rows.append({"type": 18, "component": answer(item["component"])})
    unknown = set(values) - set(known)
    if unknown:
        raise CommandError(
            f"modal {modal.get('custom_id')!r} has no inputs {sorted(unknown)}; it has {known}"
        )
    return {"custom_id": modal["custom_id"], "components": rows}

"""The server's state: users, a guild with roles, members, channels and a thread, and every message by id."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable
from typing import Any

from tests.discord_server.snowflakes import SnowflakeFactory, iso_timestamp, now_iso

log = logging.getLogger(__name__)

Payload = dict[str, Any]


class Perm:
    """Discord permission bits the test guild uses."""

    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ADMINISTRATOR = 1 << 3
    ALL = (1 << 50) - 1


EVERYONE_PERMISSIONS = (
    Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.ADD_REACTIONS
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.USE_APPLICATION_COMMANDS
    | Perm.CREATE_PUBLIC_THREADS
    | Perm.SEND_MESSAGES_IN_THREADS
)
MODERATOR_PERMISSIONS = Perm.MANAGE_GUILD | Perm.MANAGE_MESSAGES | Perm.MANAGE_THREADS | Perm.MENTION_EVERYONE


class ChannelType:
    GUILD_TEXT = 0
    DM = 1
    PUBLIC_THREAD = 11


class MessageType:
    DEFAULT = 0
    REPLY = 19
    CHAT_INPUT_COMMAND = 20


class MessageFlag:
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7


@dataclasses.dataclass(eq=False)
class User:
    id: int
    name: str
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> Payload:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": None if self.bot else self.name.title(),
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
            "flags": 0,
        }


@dataclasses.dataclass(eq=False)
class Role:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def payload(self) -> Payload:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": True,
            "flags": 0,
        }


@dataclasses.dataclass(eq=False)
class Member:
    user: User
    role_ids: list[int]
    joined_at: str = dataclasses.field(default_factory=now_iso)

    def payload(self, *, with_user: bool = True) -> Payload:
        data: Payload = {
            "roles": [str(r) for r in self.role_ids],
            "joined_at": self.joined_at,
            "nick": None,
            "avatar": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        return data


@dataclasses.dataclass(eq=False)
class Channel:
    id: int
    name: str
    type: int
    guild_id: int | None = None
    parent_id: int | None = None
    position: int = 0
    recipient: User | None = None  # DM channels
    owner_id: int | None = None  # threads
    last_message_id: int | None = None

    @property
    def is_dm(self) -> bool:
        return self.type == ChannelType.DM

    @property
    def is_thread(self) -> bool:
        return self.type == ChannelType.PUBLIC_THREAD

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def payload(self) -> Payload:
        data: Payload = {
            "id": str(self.id),
            "type": self.type,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "flags": 0,
        }
        if self.is_dm:
            assert self.recipient is not None
            data["recipients"] = [self.recipient.payload()]
            return data
        data.update(
            guild_id=str(self.guild_id),
            name=self.name,
            parent_id=str(self.parent_id) if self.parent_id else None,
            rate_limit_per_user=0,
        )
        if self.is_thread:
            data.update(
                owner_id=str(self.owner_id),
                message_count=0,
                member_count=1,
                total_message_sent=0,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso_timestamp(self.id),
                    "locked": False,
                    "create_timestamp": iso_timestamp(self.id),
                },
            )
        else:
            data.update(position=self.position, permission_overwrites=[], nsfw=False, topic=None)
        return data


@dataclasses.dataclass(eq=False)
class Attachment:
    id: int
    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None
    url: str = ""

    def payload(self) -> Payload:
        return {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
            "description": self.description,
        }


@dataclasses.dataclass(eq=False)
class Message:
    """A message as the server keeps it; ``history`` holds earlier versions' content after edits."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str = ""
    embeds: list[Payload] = dataclasses.field(default_factory=list)
    components: list[Payload] = dataclasses.field(default_factory=list)
    attachments: list[Attachment] = dataclasses.field(default_factory=list)
    flags: int = 0
    type: int = MessageType.DEFAULT
    reference_id: int | None = None  # the message this one replies to
    allowed_mentions: Payload | None = None  # exactly as the sender asked
    edited_timestamp: str | None = None
    deleted: bool = False
    interaction_id: int | None = None
    webhook_id: int | None = None
    thread_id: int | None = None  # a thread started from this message
    history: list[str] = dataclasses.field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def jump_url_path(self) -> str:
        return f"/channels/{self.guild_id or '@me'}/{self.channel_id}/{self.id}"

    @property
    def text(self) -> str:
        """Everything a person reads: content, then each embed's title, description, fields and footer."""
        parts = [self.content]
        for embed in self.embeds:
            parts += [embed.get("title") or "", embed.get("description") or ""]
            for field in embed.get("fields") or []:
                parts += [field.get("name") or "", field.get("value") or ""]
            parts.append((embed.get("footer") or {}).get("text") or "")
        return "\n".join(p for p in parts if p)

    def buttons(self) -> list[Payload]:
        """Every button (and other leaf component) in the message, in order."""
        found: list[Payload] = []

        def walk(items: list[Payload]) -> None:
            for item in items:
                if "components" in item:
                    walk(item["components"])
                elif "accessory" in item:
                    walk([item["accessory"]])
                else:
                    found.append(item)

        walk(self.components)
        return found

    def custom_ids(self) -> list[str]:
        return [b["custom_id"] for b in self.buttons() if "custom_id" in b]

    def find_component(self, custom_id: str) -> Payload | None:
        return next((b for b in self.buttons() if b.get("custom_id") == custom_id), None)


_USER_MENTION = re.compile(r"<@!?([0-9]+)>")
_ROLE_MENTION = re.compile(r"<@&([0-9]+)>")


@dataclasses.dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = dataclasses.field(default_factory=dict)
    members: dict[int, Member] = dataclasses.field(default_factory=dict)
    channels: dict[int, Channel] = dataclasses.field(default_factory=dict)  # threads included
    bot_removed: bool = False

    def channel_named(self, name: str) -> Channel:
        return next(c for c in self.channels.values() if c.name == name)

    def permissions_of(self, user_id: int) -> int:
        if user_id == self.owner_id:
            return Perm.ALL
        member = self.members.get(user_id)
        value = self.roles[self.id].permissions
        for role_id in member.role_ids if member else []:
            value |= self.roles[role_id].permissions
        return Perm.ALL if value & Perm.ADMINISTRATOR else value

    def payload(self) -> Payload:
        """The full GUILD_CREATE object. ``member_count`` equals the members sent, so nothing is chunked."""
        channels = [c for c in self.channels.values() if not c.is_thread]
        threads = [c for c in self.channels.values() if c.is_thread]
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "region": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "features": [],
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "soundboard_sounds": [],
            "unavailable": False,
            "large": False,
            "lazy": True,
            "joined_at": iso_timestamp(self.id),
            "member_count": len(self.members),
            "members": [m.payload() for m in self.members.values()],
            "channels": [c.payload() for c in channels],
            "threads": [t.payload() for t in threads],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "application_id": None,
        }


@dataclasses.dataclass
class Cast:
    """The people and places every e2e test starts with."""

    guild: Guild
    bot: User  # PeerCare itself
    owner: User  # owns the guild; also a moderator
    moderator: User  # Manage Server through the Moderator role
    alice: User
    bob: User
    carol: User
    other_bot: User  # another bot posting in the guild
    moderator_role: Role
    everyone_role: Role
    bot_role: Role
    support: Channel
    general: Channel
    mod_alerts: Channel
    support_thread: Channel  # a public thread in #support, started from ``thread_starter``
    thread_starter: Message

    @property
    def members(self) -> list[User]:
        return [self.alice, self.bob, self.carol]


class World:
    """All state, addressable by id. Payload builders live here so REST and gateway agree exactly."""

    def __init__(self, base_url: str = "") -> None:
        self.ids = SnowflakeFactory()
        self.base_url = base_url
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.dm_channels: dict[int, Channel] = {}  # by recipient id
        self.attachments: dict[int, Attachment] = {}
        self.cast = self._build_cast()

    # -- building --------------------------------------------------------------------------------------

    def add_user(self, name: str, *, bot: bool = False) -> User:
        user = User(self.ids.next(), name, bot=bot)
        self.users[user.id] = user
        return user

    def add_channel(self, guild: Guild, name: str, *, position: int = 0) -> Channel:
        channel = Channel(self.ids.next(), name, ChannelType.GUILD_TEXT, guild_id=guild.id, position=position)
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        return channel

    def add_thread(self, starter: Message, name: str) -> Channel:
        parent = self.channels[starter.channel_id]
        # A thread started from a message shares that message's id, as on Discord.
        thread = Channel(
            starter.id,
            name,
            ChannelType.PUBLIC_THREAD,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=starter.author.id,
        )
        starter.thread_id = thread.id
        self.guilds[parent.guild_id].channels[thread.id] = thread  # type: ignore[index]
        self.channels[thread.id] = thread
        return thread

    def add_guild(
        self,
        name: str,
        *,
        shard: tuple[int, int] | None = None,
        members: Iterable[User] = (),
    ) -> Guild:
        """Another guild the bot is in: owned by the cast's owner, with #support, #general and #mod-alerts.

        ``shard=(shard_id, shard_count)`` picks an id whose events go to that shard. Members: the bot, the
        owner (Moderator role) and ``members``. Send it to a connected bot with ``server.add_guild``.
        """
        guild_id = self.ids.next_on_shard(*shard) if shard is not None else self.ids.next()
        owner = self.cast.owner
        guild = Guild(guild_id, name, owner.id)
        self.guilds[guild.id] = guild
        moderator_role = Role(self.ids.next(), "Moderator", MODERATOR_PERMISSIONS, position=2)
        bot_role = Role(self.ids.next(), "PeerCare", EVERYONE_PERMISSIONS, position=1, managed=True)
        for role in (Role(guild.id, "@everyone", EVERYONE_PERMISSIONS, position=0), moderator_role, bot_role):
            guild.roles[role.id] = role
        guild.members[self.cast.bot.id] = Member(self.cast.bot, [bot_role.id])
        guild.members[owner.id] = Member(owner, [moderator_role.id])
        for user in members:
            guild.members[user.id] = Member(user, [])
        for position, channel_name in enumerate(("support", "general", "mod-alerts")):
            self.add_channel(guild, channel_name, position=position)
        return guild

    def _build_cast(self) -> Cast:
        bot = self.add_user("PeerCare", bot=True)
        owner = self.add_user("olivia")
        moderator = self.add_user("morgan")
        alice, bob, carol = self.add_user("alice"), self.add_user("bob"), self.add_user("carol")
        other_bot = self.add_user("helperbot", bot=True)
        guild = Guild(self.ids.next(), "Peer Support Test Server", owner.id)
        self.guilds[guild.id] = guild
        everyone = Role(guild.id, "@everyone", EVERYONE_PERMISSIONS, position=0)
        moderator_role = Role(self.ids.next(), "Moderator", MODERATOR_PERMISSIONS, position=2)
        bot_role = Role(self.ids.next(), "PeerCare", EVERYONE_PERMISSIONS, position=1, managed=True)
        for role in (everyone, moderator_role, bot_role):
            guild.roles[role.id] = role
        for user, roles in (
            (bot, [bot_role.id]),
            (owner, [moderator_role.id]),
            (moderator, [moderator_role.id]),
            (alice, []),
            (bob, []),
            (carol, []),
            (other_bot, []),
        ):
            guild.members[user.id] = Member(user, roles)
        support = self.add_channel(guild, "support", position=0)
        general = self.add_channel(guild, "general", position=1)
        mod_alerts = self.add_channel(guild, "mod-alerts", position=2)
        starter = self.create_message(support, alice, "Starting a thread about a rough week")
        thread = self.add_thread(starter, "rough week")
        return Cast(
            guild=guild,
            bot=bot,
            owner=owner,
            moderator=moderator,
            alice=alice,
            bob=bob,
            carol=carol,
            other_bot=other_bot,
            moderator_role=moderator_role,
            everyone_role=everyone,
            bot_role=bot_role,
            support=support,
            general=general,
            mod_alerts=mod_alerts,
            support_thread=thread,
            thread_starter=starter,
        )

    # -- messages --------------------------------------------------------------------------------------

    def create_message(self, channel: Channel, author: User, content: str = "", **fields: Any) -> Message:
        message = Message(
            id=self.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
        )
        for name, value in fields.items():
            setattr(message, name, value)
        if message.reference_id is not None and message.type == MessageType.DEFAULT:
            message.type = MessageType.REPLY
        self.messages[message.id] = message
        channel.last_message_id = message.id
        return message

    def add_attachment(
        self, filename: str, data: bytes, content_type: str | None, description: str | None
    ) -> Attachment:
        attachment = Attachment(self.ids.next(), filename, data, content_type, description)
        attachment.url = f"{self.base_url}/attachments/{attachment.id}/{filename}"
        self.attachments[attachment.id] = attachment
        return attachment

    def dm_channel_for(self, user: User) -> Channel:
        channel = self.dm_channels.get(user.id)
        if channel is None:
            channel = Channel(self.ids.next(), "", ChannelType.DM, recipient=user)
            self.dm_channels[user.id] = channel
            self.channels[channel.id] = channel
        return channel

    def message_payload(self, message: Message, *, with_reference: bool = True) -> Payload:
        data: Payload = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "author": message.author.payload(),
            "content": message.content,
            "timestamp": iso_timestamp(message.id),
            "edited_timestamp": message.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": self._mentioned_users(message),
            "mention_roles": _ROLE_MENTION.findall(message.content),
            "mention_channels": [],
            "attachments": [a.payload() for a in message.attachments],
            "embeds": message.embeds,
            "components": message.components,
            "reactions": [],
            "pinned": False,
            "type": message.type,
            "flags": message.flags,
        }
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            member = self.guilds[message.guild_id].members.get(message.author.id)
            if member is not None and message.webhook_id is None:
                data["member"] = member.payload(with_user=False)
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(message.webhook_id)
        if message.thread_id is not None and message.thread_id in self.channels:
            data["thread"] = self.channels[message.thread_id].payload()
        if message.interaction_id is not None:
            data["interaction_metadata"] = {
                "id": str(message.interaction_id),
                "type": 2,
                "user": message.author.payload(),
                "authorizing_integration_owners": {},
            }
        if message.reference_id is not None:
            parent = self.messages.get(message.reference_id)
            data["message_reference"] = {
                "type": 0,
                "message_id": str(message.reference_id),
                "channel_id": str(parent.channel_id if parent else message.channel_id),
                **({"guild_id": str(message.guild_id)} if message.guild_id else {}),
            }
            if with_reference:
                alive = parent is not None and not parent.deleted
                data["referenced_message"] = (
                    self.message_payload(parent, with_reference=False) if alive else None  # type: ignore[arg-type]
                )
        return data

    def _mentioned_users(self, message: Message) -> list[Payload]:
        found = []
        for raw in dict.fromkeys(_USER_MENTION.findall(message.content)):
            user = self.users.get(int(raw))
            if user is not None:
                found.append(user.payload())
        return found

"""REST API v10: the routes discord.py calls, each request recorded and checked against the fault plan first."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from tests.discord_server import errors
from tests.discord_server.errors import ApiError
from tests.discord_server.interactions import CallbackType, Interaction
from tests.discord_server.messages import apply_body, validate_body
from tests.discord_server.recorder import RecordedRequest, UploadedFile
from tests.discord_server.snowflakes import now_iso
from tests.discord_server.world import Channel, Guild, Message, MessageFlag, MessageType

if TYPE_CHECKING:
    from tests.discord_server.server import DiscordServer

log = logging.getLogger(__name__)

API_PREFIX = re.compile(r"^/api/v[0-9]+")
NO_CONTENT = object()


@dataclasses.dataclass
class Call:
    """A parsed request handed to a route handler."""

    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    files: list[UploadedFile]
    record: RecordedRequest


Handler = Callable[[Call], Awaitable[Any]]


def _compile(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")


class RestApi:
    """Route table plus handlers. Handlers return a JSON-able body, ``NO_CONTENT`` (204), or raise ApiError."""

    def __init__(self, server: DiscordServer) -> None:
        self.server = server
        self.world = server.world
        table: list[tuple[str, str, Handler, bool]] = [
            # (method, route, handler, needs bot token)
            ("GET", "/users/@me", self.get_me, True),
            ("GET", "/users/{user_id}", self.get_user, True),
            ("GET", "/oauth2/applications/@me", self.get_application, True),
            ("GET", "/applications/@me", self.get_application, True),
            ("GET", "/gateway", self.get_gateway, False),
            ("GET", "/gateway/bot", self.get_gateway_bot, True),
            ("POST", "/users/@me/channels", self.create_dm, True),
            ("GET", "/channels/{channel_id}", self.get_channel, True),
            ("POST", "/channels/{channel_id}/typing", self.no_content, True),
            ("GET", "/channels/{channel_id}/messages", self.list_messages, True),
            ("POST", "/channels/{channel_id}/messages", self.create_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message, True),
            ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self.react, True),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self.react,
                True,
            ),
            ("GET", "/guilds/{guild_id}", self.get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", self.get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/roles", self.get_roles, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member, True),
            ("GET", "/applications/{application_id}/commands", self.get_commands, True),
            ("PUT", "/applications/{application_id}/commands", self.put_commands, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self.get_commands, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self.put_commands, True),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.interaction_callback, False),
            ("POST", "/webhooks/{application_id}/{token}", self.create_followup, False),
            (
                "GET",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self.get_webhook_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self.edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self.delete_webhook_message,
                False,
            ),
        ]
        self.routes = [
            (method, template, _compile(template), handler, auth) for method, template, handler, auth in table
        ]

    # -- plumbing --------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        path = API_PREFIX.sub("", request.path)
        body, files = await self._read_body(request)
        route, params, handler, needs_auth = "<unhandled>", {}, None, False
        for method, template, pattern, candidate, auth in self.routes:
            match = pattern.match(path)
            if match and method == request.method:
                route, params, handler, needs_auth = template, match.groupdict(), candidate, auth
                break
        record = RecordedRequest(
            method=request.method,
            path=path,
            route=route,
            params=params,
            query=dict(request.query),
            json=body,
            files=files,
            headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        )
        self.server.requests.add(record)
        try:
            if handler is None:
                log.warning("loopback Discord has no route for %s %s", request.method, path)
                raise ApiError(404, 0, "404: Not Found")
            if needs_auth and not self.server.is_valid_token(_bot_token(request)):
                raise ApiError(401, 0, "401: Unauthorized")
            fault = self.server.faults.take(record)
            if fault is not None:
                record.fault = fault.name
                return self._respond(record, fault.status, fault.body, fault.headers)
            result = await handler(Call(params, dict(request.query), body or {}, files, record))
        except ApiError as exc:
            return self._respond(record, exc.status, exc.body())
        if result is NO_CONTENT:
            return self._respond(record, 204, None)
        return self._respond(record, 200, result)

    def _respond(
        self, record: RecordedRequest, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> web.Response:
        record.status, record.response = status, body
        self.server.notify()
        if body is None:
            return web.Response(status=status, headers=headers)
        # discord.py parses JSON only when Content-Type is exactly "application/json" (no charset).
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            headers={**(headers or {}), "Content-Type": "application/json"},
        )

    @staticmethod
    async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
        if not request.can_read_body:
            return None, []
        if request.content_type.startswith("multipart/"):
            body: Any = {}
            files: list[UploadedFile] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue  # discord.py never nests multipart bodies
                data = await part.read()
                if part.name == "payload_json":
                    body = json.loads(data)
                elif part.filename:
                    files.append(
                        UploadedFile(
                            part.name or "", part.filename, part.headers.get("Content-Type"), bytes(data)
                        )
                    )
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    # -- helpers ---------------------------------------------------------------------------------------

    def _channel(self, channel_id: str) -> Channel:
        channel = self.world.channels.get(int(channel_id))
        if channel is None or (channel.guild_id and self.world.guilds[channel.guild_id].bot_removed):
            raise errors.unknown_channel()
        return channel

    def _message(self, channel: Channel, message_id: str) -> Message:
        message = self.world.messages.get(int(message_id)) if message_id.isdigit() else None
        if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
            raise errors.unknown_message()
        return message

    async def _publish(self, event: str, message: Message) -> None:
        """Discord tells every client about every message, the bot's own included."""
        if message.ephemeral:
            return
        channel = self.world.channels[message.channel_id]
        await self.server.dispatch_message(event, message, channel)

    def _create(self, channel: Channel, call: Call, **fields: Any) -> Message:
        validate_body(call.body, call.files, creating=True)
        reference = call.body.get("message_reference") or {}
        reference_id = reference.get("message_id")
        if reference_id is not None:
            parent = self.world.messages.get(int(reference_id))
            if (parent is None or parent.deleted) and reference.get("fail_if_not_exists", True):
                raise ApiError(
                    400, 50035, "Invalid Form Body", errors={"message_reference": "Unknown message"}
                )
            fields["reference_id"] = int(reference_id)
        message = self.world.create_message(channel, self.world.cast.bot, **fields)
        apply_body(self.world, message, call.body, call.files)
        return message

    # -- users, application, gateway -------------------------------------------------------------------

    async def get_me(self, call: Call) -> Any:
        return {**self.world.cast.bot.payload(), "verified": True, "mfa_enabled": False, "email": None}

    async def get_user(self, call: Call) -> Any:
        user = self.world.users.get(int(call.params["user_id"])) if call.params["user_id"].isdigit() else None
        if user is None:
            raise errors.unknown_user()
        return user.payload()

    async def get_application(self, call: Call) -> Any:
        owner = self.world.cast.owner
        return {
            "id": str(self.server.application_id),
            "name": "PeerCare",
            "description": "PeerCare on the loopback Discord server",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": owner.payload(),
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
            "summary": "",
            "rpc_origins": [],
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": 1,
            "bot": self.world.cast.bot.payload(),
        }

    async def get_gateway(self, call: Call) -> Any:
        return {"url": self.server.gateway.url}

    async def get_gateway_bot(self, call: Call) -> Any:
        return {
            "url": self.server.gateway.url,
            "shards": self.server.shard_count,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    async def no_content(self, call: Call) -> Any:
        self._channel(call.params["channel_id"])
        return NO_CONTENT

    # -- channels and messages -------------------------------------------------------------------------

    async def create_dm(self, call: Call) -> Any:
        user = self.world.users.get(int(call.body.get("recipient_id", 0)))
        if user is None:
            raise errors.unknown_user()
        return self.world.dm_channel_for(user).payload()

    async def get_channel(self, call: Call) -> Any:
        return self._channel(call.params["channel_id"]).payload()

    async def list_messages(self, call: Call) -> Any:
        channel = self._channel(call.params["channel_id"])
        limit = max(1, min(int(call.query.get("limit", 50)), 100))
        before, after = call.query.get("before"), call.query.get("after")
        found = [
            m
            for m in self.world.messages.values()
            if m.channel_id == channel.id
            and not m.deleted
            and not m.ephemeral
            and (before is None or m.id < int(before))
            and (after is None or m.id > int(after))
        ]
        found.sort(key=lambda m: m.id)
        # As on Discord: always newest first; with only `after`, the page is the messages right after it
        # (discord.py pages `oldest_first` reads on the first, i.e. newest, id of each page).
        page = found[:limit] if after is not None and before is None else found[-limit:]
        return [self.world.message_payload(m) for m in reversed(page)]

    async def create_message(self, call: Call) -> Any:
        channel = self._channel(call.params["channel_id"])
        if channel.is_dm:
            self._check_can_dm(channel)
        message = self._create(channel, call)
        await self._publish("MESSAGE_CREATE", message)
        return self.world.message_payload(message)

    def _check_can_dm(self, channel: Channel) -> None:
        recipient = channel.recipient
        assert recipient is not None
        shares_guild = any(recipient.id in g.members for g in self.world.guilds.values() if not g.bot_removed)
        # Discord refuses DMs to members who closed them, to bots, and to users sharing no server with the bot.
        if recipient.id in self.server.faults.blocked_dm_recipients or recipient.bot or not shares_guild:
            raise errors.cannot_dm()

    async def get_message(self, call: Call) -> Any:
        channel = self._channel(call.params["channel_id"])
        return self.world.message_payload(self._message(channel, call.params["message_id"]))

    async def edit_message(self, call: Call) -> Any:
        channel = self._channel(call.params["channel_id"])
        message = self._message(channel, call.params["message_id"])
        if message.author.id != self.world.cast.bot.id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        validate_body(call.body, call.files, creating=False)
        apply_body(self.world, message, call.body, call.files)
        message.edited_timestamp = now_iso()
        await self._publish("MESSAGE_UPDATE", message)
        return self.world.message_payload(message)

    async def delete_message(self, call: Call) -> Any:
        channel = self._channel(call.params["channel_id"])
        message = self._message(channel, call.params["message_id"])
        await self.server.remove_message(message)
        return NO_CONTENT

    async def react(self, call: Call) -> Any:
        self._message(self._channel(call.params["channel_id"]), call.params["message_id"])
        return NO_CONTENT

    # -- guilds ----------------------------------------------------------------------------------------

    def _guild(self, guild_id: str) -> Guild:
        guild = self.world.guilds.get(int(guild_id)) if guild_id.isdigit() else None
        if guild is None or guild.bot_removed:
            raise errors.unknown_guild()
        return guild

    async def get_guild(self, call: Call) -> Any:
        data = self._guild(call.params["guild_id"]).payload()
        for key in ("members", "channels", "threads", "presences", "voice_states"):
            data.pop(key, None)
        return data

    async def get_guild_channels(self, call: Call) -> Any:
        guild = self._guild(call.params["guild_id"])
        return [c.payload() for c in guild.channels.values() if not c.is_thread]

    async def get_roles(self, call: Call) -> Any:
        return [r.payload() for r in self._guild(call.params["guild_id"]).roles.values()]

    async def get_member(self, call: Call) -> Any:
        guild = self._guild(call.params["guild_id"])
        member = guild.members.get(int(call.params["user_id"])) if call.params["user_id"].isdigit() else None
        if member is None:
            raise errors.unknown_member()
        return member.payload()

    # -- application commands --------------------------------------------------------------------------

    def _command_scope(self, call: Call) -> str:
        if call.params["application_id"] != str(self.server.application_id):
            raise ApiError(403, 50001, "Missing Access")
        guild_id = call.params.get("guild_id")
        if guild_id is not None:
            self._guild(guild_id)
        return guild_id or "global"

    async def get_commands(self, call: Call) -> Any:
        return self.server.commands.get(self._command_scope(call), [])

    async def put_commands(self, call: Call) -> Any:
        scope = self._command_scope(call)
        previous = {(c["name"], c.get("type", 1)): c["id"] for c in self.server.commands.get(scope, [])}
        stored = []
        for item in call.body if isinstance(call.body, list) else []:
            kind = item.get("type", 1)
            command = {
                "default_member_permissions": None,
                "dm_permission": True,
                "nsfw": False,
                "description": "",
                "options": [],
                "contexts": None,
                "integration_types": [0],
                **item,
                "id": previous.get((item["name"], kind)) or str(self.world.ids.next()),
                "application_id": str(self.server.application_id),
                "type": kind,
                "version": str(self.world.ids.next()),
            }
            if scope != "global":
                command["guild_id"] = scope
            stored.append(command)
        self.server.commands[scope] = stored
        return stored

    # -- interactions ----------------------------------------------------------------------------------

    def _interaction(self, token: str) -> Interaction:
        interaction = self.server.interactions_by_token.get(token)
        if interaction is None:
            raise errors.unknown_interaction()
        return interaction

    async def interaction_callback(self, call: Call) -> Any:
        interaction = self._interaction(call.params["token"])
        if str(interaction.id) != call.params["interaction_id"]:
            raise errors.unknown_interaction()
        if self.server.interaction_age(interaction) > self.server.interaction_deadline_s:
            # Discord's 3 s rule: the member already saw "The application did not respond".
            raise errors.unknown_interaction()
        if interaction.callbacks:
            raise errors.already_acknowledged()
        kind = int(call.body.get("type", 0))
        data = call.body.get("data") or {}
        resource: dict[str, Any] | None = {"type": kind}
        if kind in (CallbackType.CHANNEL_MESSAGE, CallbackType.DEFERRED_CHANNEL_MESSAGE):
            sub = Call(call.params, call.query, data, call.files, call.record)
            fields: dict[str, Any] = {
                "interaction_id": interaction.id,
                "webhook_id": self.server.application_id,
            }
            if kind == CallbackType.DEFERRED_CHANNEL_MESSAGE:
                fields["flags"] = MessageFlag.LOADING | (int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
                message = self.world.create_message(interaction.channel, self.world.cast.bot, **fields)
            else:
                message = self._create(interaction.channel, sub, **fields)
            message.type = MessageType.CHAT_INPUT_COMMAND if interaction.type == 2 else MessageType.DEFAULT
            interaction.original = message
            resource["message"] = self.world.message_payload(message)
            await self._publish("MESSAGE_CREATE", message)
        elif kind == CallbackType.UPDATE_MESSAGE:
            target = interaction.source_message
            if target is None:
                raise ApiError(400, 40004, "Interaction has no message to update")
            validate_body(data, call.files, creating=False)
            apply_body(self.world, target, data, call.files)
            target.edited_timestamp = now_iso()
            interaction.original = target
            resource["message"] = self.world.message_payload(target)
            await self._publish("MESSAGE_UPDATE", target)
        elif kind == CallbackType.DEFERRED_UPDATE_MESSAGE:
            interaction.original = interaction.source_message
        elif kind == CallbackType.MODAL:
            interaction.modal = data
        elif kind != CallbackType.AUTOCOMPLETE_RESULT:
            raise ApiError(400, 50035, "Invalid Form Body", errors={"type": f"unknown callback type {kind}"})
        interaction.callbacks.append({"type": kind, "data": data})
        original = interaction.original
        return {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_id": str(original.id) if original else None,
                "response_message_loading": kind == CallbackType.DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(original and original.ephemeral),
            },
            "resource": resource if kind != CallbackType.AUTOCOMPLETE_RESULT else None,
        }

    def _webhook_interaction(self, token: str) -> Interaction:
        interaction = self._interaction(token)
        if self.server.interaction_age(interaction) > self.server.interaction_token_lifetime_s:
            raise errors.invalid_webhook_token()
        return interaction

    async def create_followup(self, call: Call) -> Any:
        interaction = self._webhook_interaction(call.params["token"])
        if not interaction.callbacks:
            raise errors.unknown_webhook()  # Discord refuses follow-ups before the interaction is acknowledged
        loading = interaction.original
        if loading is not None and not loading.deleted and loading.flags & MessageFlag.LOADING:
            # Discord: the first follow-up after a "thinking…" defer edits that message instead of posting a
            # new one, and keeps the defer's visibility (the follow-up's ephemeral flag is ignored).
            validate_body(call.body, call.files, creating=True)
            body = {key: value for key, value in call.body.items() if key != "flags"}
            apply_body(self.world, loading, body, call.files)
            loading.flags &= ~MessageFlag.LOADING
            await self._publish("MESSAGE_UPDATE", loading)
            return (
                self.world.message_payload(loading)
                if call.query.get("wait") in ("true", "1", "True")
                else NO_CONTENT
            )
        message = self._create(
            interaction.channel, call, interaction_id=interaction.id, webhook_id=self.server.application_id
        )
        interaction.followups.append(message)
        await self._publish("MESSAGE_CREATE", message)
        return (
            self.world.message_payload(message)
            if call.query.get("wait") in ("true", "1", "True")
            else NO_CONTENT
        )

    def _webhook_message(self, call: Call) -> tuple[Interaction, Message]:
        interaction = self._webhook_interaction(call.params["token"])
        message_id = call.params["message_id"]
        if message_id == "@original":
            if interaction.original is None or interaction.original.deleted:
                raise errors.unknown_message()
            return interaction, interaction.original
        for message in [interaction.original, *interaction.followups]:
            if message is not None and str(message.id) == message_id and not message.deleted:
                return interaction, message
        raise errors.unknown_message()

    async def get_webhook_message(self, call: Call) -> Any:
        return self.world.message_payload(self._webhook_message(call)[1])

    async def edit_webhook_message(self, call: Call) -> Any:
        _, message = self._webhook_message(call)
        was_loading = bool(message.flags & MessageFlag.LOADING)
        validate_body(call.body, call.files, creating=False)
        apply_body(self.world, message, call.body, call.files)
        message.flags &= ~MessageFlag.LOADING
        if not was_loading:
            message.edited_timestamp = now_iso()
        await self._publish("MESSAGE_UPDATE", message)
        return self.world.message_payload(message)

    async def delete_webhook_message(self, call: Call) -> Any:
        _, message = self._webhook_message(call)
        await self.server.remove_message(message)
        return NO_CONTENT


def _bot_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[4:] if header.startswith("Bot ") else ""

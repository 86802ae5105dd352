"""Turn a message body as the bot sends it (JSON or multipart) into stored state, with Discord's own checks."""

from __future__ import annotations

import logging
from typing import Any

from tests.discord_server.errors import ApiError
from tests.discord_server.recorder import UploadedFile
from tests.discord_server.world import Message, World

log = logging.getLogger(__name__)

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_EMBED_DESCRIPTION = 4096
MAX_ROWS = 5
# Flags a sender may set on a message: SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS, IS_COMPONENTS_V2.
SETTABLE_FLAGS = (1 << 2) | (1 << 6) | (1 << 12) | (1 << 15)


def _embed_length(embed: dict[str, Any]) -> int:
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "") + len(
        (embed.get("author") or {}).get("name") or ""
    )
    for field in embed.get("fields") or []:
        total += len(field.get("name") or "") + len(field.get("value") or "")
    return total


def validate_body(body: dict[str, Any], files: list[UploadedFile], *, creating: bool) -> None:
    """Reject what Discord rejects (400 50035 / 50006), so a bot bug fails here as it would in production."""
    errors: dict[str, str] = {}
    content = body.get("content")
    if content is not None and len(str(content)) > MAX_CONTENT:
        errors["content"] = f"Must be {MAX_CONTENT} or fewer in length."
    embeds = body.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        errors["embeds"] = f"Must be {MAX_EMBEDS} or fewer in length."
    if sum(_embed_length(e) for e in embeds) > MAX_EMBED_TOTAL:
        errors["embeds"] = f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}"
    for index, embed in enumerate(embeds):
        if len(embed.get("description") or "") > MAX_EMBED_DESCRIPTION:
            errors[f"embeds.{index}.description"] = f"Must be {MAX_EMBED_DESCRIPTION} or fewer in length."
    if len(body.get("components") or []) > MAX_ROWS and not int(body.get("flags") or 0) & (1 << 15):
        errors["components"] = f"Must be {MAX_ROWS} or fewer in length."
    if errors:
        raise ApiError(400, 50035, "Invalid Form Body", errors=errors)
    if creating and not (content or embeds or files or body.get("components") or body.get("sticker_ids")):
        raise ApiError(400, 50006, "Cannot send an empty message")


def apply_body(world: World, message: Message, body: dict[str, Any], files: list[UploadedFile]) -> None:
    """Set the fields present in ``body`` (a PATCH leaves absent fields alone, as Discord does)."""
    if "content" in body:
        if message.content and body["content"] != message.content:
            message.history.append(message.content)
        message.content = body["content"] or ""
    if "embeds" in body:
        message.embeds = list(body["embeds"] or [])
    elif "embed" in body:
        message.embeds = [body["embed"]] if body["embed"] else []
    if "components" in body:
        message.components = list(body["components"] or [])
    if "allowed_mentions" in body:
        message.allowed_mentions = body["allowed_mentions"]
    if "flags" in body and body["flags"] is not None:
        keep = message.flags & ~SETTABLE_FLAGS
        message.flags = keep | (int(body["flags"]) & SETTABLE_FLAGS)
    _apply_attachments(world, message, body, files)


def _apply_attachments(
    world: World, message: Message, body: dict[str, Any], files: list[UploadedFile]
) -> None:
    declared = body.get("attachments")
    uploads = {_file_index(f.field): f for f in files}
    if declared is None and not uploads:
        return
    kept = []
    if declared is not None:
        existing = {a.id: a for a in message.attachments}
        for item in declared:
            item_id = int(item["id"])
            if item_id in existing:
                kept.append(existing[item_id])
            elif item_id in uploads:
                upload = uploads.pop(item_id)
                kept.append(
                    world.add_attachment(
                        item.get("filename") or upload.filename,
                        upload.data,
                        upload.content_type,
                        item.get("description"),
                    )
                )
    else:
        kept = list(message.attachments)
    for upload in uploads.values():  # uploads with no metadata entry
        kept.append(world.add_attachment(upload.filename, upload.data, upload.content_type, None))
    message.attachments = kept


def _file_index(field: str) -> int:
    # discord.py names upload fields "files[0]", "files[1]", ...
    digits = "".join(ch for ch in field if ch.isdigit())
    return int(digits) if digits else 0

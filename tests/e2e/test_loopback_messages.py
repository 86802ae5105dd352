"""DMs through the real bot: one arrives, closed DMs (50007) are answered not crashed on, a 429 is retried."""

from __future__ import annotations

import logging

import pytest

from tests.discord_server import faults

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

MESSAGES_ROUTE = "/channels/{channel_id}/messages"


@pytest.fixture
def e2e_extra_extensions() -> list[str]:
    return ["tests.e2e.probe_cog"]


async def test_dm_arrives(e2e):
    command = await e2e.slash("peercare probe dm", {"text": "hi alice"}, user=e2e.cast.alice)
    dm = await e2e.wait_for_dm(e2e.cast.alice)
    assert dm.content == "hi alice"
    assert dm.allowed_mentions == {"parse": []}  # pings no one
    reply = await command.reply(lambda m: "Sent you a DM" in m.content)
    assert reply.ephemeral


async def test_closed_dms_get_a_private_answer_and_the_bot_keeps_working(e2e):
    e2e.faults.block_dms(e2e.cast.bob.id)
    command = await e2e.slash("peercare probe dm", user=e2e.cast.bob)
    answer = await command.reply()
    assert "DMs are closed" in answer.content and answer.ephemeral
    (refused,) = e2e.requests.find(method="POST", route=MESSAGES_ROUTE)
    assert (refused.status, refused.response["code"]) == (403, 50007)
    assert e2e.dms_to(e2e.cast.bob) == []
    # Still alive: the next member gets their DM.
    await e2e.slash("peercare probe dm", user=e2e.cast.carol)
    await e2e.wait_for_dm(e2e.cast.carol)


async def test_rate_limited_dm_is_retried_after_retry_after(e2e):
    e2e.faults.next_request(faults.rate_limited(retry_after=0.2), method="POST", route=MESSAGES_ROUTE)
    await e2e.slash("peercare probe dm", user=e2e.cast.alice)
    dm = await e2e.wait_for_dm(e2e.cast.alice)
    limited, sent = e2e.requests.find(method="POST", route=MESSAGES_ROUTE)
    assert (limited.status, limited.fault) == (429, "rate_limited")
    assert sent.status == 200 and sent.response["id"] == str(dm.id)
    assert sent.at - limited.at >= 0.2
    assert len(e2e.dms_to(e2e.cast.alice)) == 1  # retried, not duplicated


async def test_server_error_500_is_retried(e2e):
    e2e.faults.next_request(faults.server_error(500), method="POST", route=MESSAGES_ROUTE)
    await e2e.slash("peercare probe dm", user=e2e.cast.alice)
    await e2e.wait_for_dm(e2e.cast.alice, timeout=5)
    statuses = [r.status for r in e2e.requests.find(method="POST", route=MESSAGES_ROUTE)]
    assert statuses == [500, 200]


async def test_chart_upload_arrives_as_multipart_with_its_png(e2e):
    command = await e2e.slash("peercare probe file", user=e2e.cast.moderator)
    answer = await command.reply(lambda m: m.attachments)
    (attachment,) = answer.attachments
    assert attachment.filename == "chart.png" and attachment.data.startswith(b"\x89PNG")
    assert answer.embeds[0]["image"]["url"] == "attachment://chart.png"
    (upload,) = [r for r in e2e.requests.find(method="POST") if r.files]
    assert upload.files[0].field == "files[0]" and upload.json["attachments"][0]["filename"] == "chart.png"

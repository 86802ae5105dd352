"""Two bot processes, two shards each, on one PostgreSQL database: each does its own guilds' work once.

Covers what is owner-filtered (docs/architecture.md, "Several processes"): check-in schedules, retention with
guild-leave deletion, inbox recovery, start-up catch-up, the coaching flush, the escalation sweep and re-pings,
answers given in DMs (which reach shard 0's process whatever their guild), and a process killed mid-run whose
guilds wait for it. The two "processes" are two bot instances in this test's event loop, each with its own
gateway sessions (one per shard), token, database pool and inference client; a crash kills one instance's tasks
only. Needs PEERCARE_TEST_POSTGRES_URL (.ci/run sets it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.app import ShardedPeerCareBot
from bot.db.migrate import downgrade_database, upgrade_database
from bot.db.models import (
    Escalation,
    EscalationState,
    GuildSettings,
    InboxMessage,
    InboxOutcome,
    RiskAssessment,
    ScoredReply,
    utcnow,
)
from bot.services import checkins, retention
from bot.services.escalation_delivery import ALERT_FOOTER_PREFIX
from bot.services.reply_scoring import CoachingStatus
from tests.discord_server import DiscordServer, Guild, Message, User
from tests.discord_server.faults import missing_permissions
from tests.discord_server.snowflakes import shard_of
from tests.e2e._features import Hold, eventually, settings_for
from tests.e2e.conftest import BotRunner, tasks_kept_alive, tasks_tagged_by_runner

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("PEERCARE_TEST_POSTGRES_URL"),
        reason="PEERCARE_TEST_POSTGRES_URL is not set (CI starts a PostgreSQL server and sets it)",
    ),
]

SHARDS = 4
PROCESSES = 2


def process_of(shard: int) -> int:
    """The test's split: process p runs shards p, p + 2 (SHARD_IDS "0,2" and "1,3")."""
    return shard % PROCESSES


@pytest.fixture(autouse=True)
def _no_identify_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py waits 5 s before each IDENTIFY after the first (Discord's rate limit); loopback has none."""

    async def at_once(self: object, shard_id: int | None, *, initial: bool = False) -> None:
        return None

    monkeypatch.setattr(ShardedPeerCareBot, "before_identify_hook", at_once)


@pytest.fixture
def postgres_url() -> str:
    url = os.environ["PEERCARE_TEST_POSTGRES_URL"]
    downgrade_database(url, "base")  # start from empty whatever an earlier run left
    upgrade_database(url)
    return url


@pytest.fixture
async def fleet(
    discord_server: DiscordServer, postgres_url: str, e2e_inference_config, loaded_engines
) -> AsyncIterator[tuple[dict[int, BotRunner], dict[int, Guild]]]:
    """process number -> a started bot running its two shards; shard id -> a guild on that shard.

    ``runners[0]`` owns ``guilds[0]`` (and ``guilds[2]``), ``runners[1]`` owns ``guilds[1]`` (and ``guilds[3]``).
    """
    cast = discord_server.cast
    guilds = {shard_of(cast.guild.id, SHARDS): cast.guild}
    for shard in range(SHARDS):
        if shard not in guilds:
            guilds[shard] = discord_server.world.add_guild(
                f"Server on shard {shard}", shard=(shard, SHARDS), members=[cast.alice, cast.bob]
            )
    runners = {
        process: BotRunner(
            discord_server,
            postgres_url,
            e2e_inference_config,
            {
                "shard_count": SHARDS,
                "shard_ids": ",".join(str(s) for s in range(SHARDS) if process_of(s) == process),
                **settings_for(e2e_inference_config),
            },
            [],
            loaded_engines,
        )
        for process in range(PROCESSES)
    }
    with tasks_kept_alive(), tasks_tagged_by_runner():
        try:
            for runner in runners.values():
                await runner.start()
            yield runners, guilds
        finally:
            for runner in runners.values():
                with contextlib.suppress(Exception):
                    await runner.stop()


def _owned(guilds: dict[int, Guild], process: int) -> list[Guild]:
    return [guild for shard, guild in sorted(guilds.items()) if process_of(shard) == process]


def _checkin_guilds(runner: BotRunner) -> list[str]:
    assert runner.bot is not None
    return [job.id for job in runner.bot.scheduler.get_jobs() if job.id.startswith(checkins.JOB_PREFIX)]


async def test_two_processes_share_the_fleet_work(discord_server: DiscordServer, fleet):
    runners, guilds = fleet
    alice = discord_server.cast.alice
    for process, runner in runners.items():  # each process: its two shards' guilds only
        assert sorted(g.id for g in runner.bot.guilds) == sorted(g.id for g in _owned(guilds, process))

    # Check-ins: each guild's command reaches the process that owns it, which schedules it.
    for guild in guilds.values():
        await _checkins_on(discord_server, guild, alice)
    async with runners[0].bot.database.session() as session:
        schedules = {s.guild_id: s.id for s in await checkins.active_schedules(session)}
    assert set(schedules) == {g.id for g in guilds.values()}

    def jobs_of(process: int) -> list[str]:
        return sorted(checkins.job_id(schedules[g.id]) for g in _owned(guilds, process))

    for process, runner in runners.items():
        assert sorted(_checkin_guilds(runner)) == jobs_of(process)

    # After a restart each process restores only its own guilds' schedules: every check-in fires once.
    for process, runner in runners.items():
        await runner.restart()
        assert sorted(_checkin_guilds(runner)) == jobs_of(process)

    # Guild-leave deletion: every guild left long ago; each process deletes only those its shards own.
    async with runners[0].bot.database.session() as session:
        for guild in guilds.values():
            await retention.mark_guild_left(session, guild.id, utcnow() - timedelta(days=30))

    async def remaining() -> set[int]:
        async with runners[0].bot.database.session() as session:
            return set(await session.scalars(select(GuildSettings.guild_id)))

    await runners[0].bot.get_cog("Privacy").run_retention()
    assert await remaining() == {g.id for g in _owned(guilds, 1)}
    assert sorted(_checkin_guilds(runners[1])) == jobs_of(1)  # untouched
    await runners[1].bot.get_cog("Privacy").run_retention()
    assert await remaining() == set()


# -- inbox recovery, catch-up and the coaching flush: the guild's own process only ---------------------------

SEEKER_TEXT = "My exams are next week and I can't sleep."
REPLY_TEXT = "That sounds exhausting. What has the last week been like for you?"


async def _checkins_on(server: DiscordServer, guild: Guild, member: User) -> None:
    """``member`` turns daily check-ins on in ``guild`` (answered by the process that owns it)."""
    command = await server.slash(
        "peercare checkin on",
        {"cadence": "daily", "time": "09:30", "timezone": "UTC"},
        user=member,
        channel=guild.channel_named("general"),
    )
    await command.reply(timeout=15)


async def _go_live(server: DiscordServer, guild: Guild, *, bob_opts_in: bool = True) -> None:
    """A support channel, shadow mode off, and (``bob_opts_in``) bob wanting coaching notes in ``guild``."""
    moderator, support = server.cast.owner, guild.channel_named("support")
    commands = [
        ("peercare channel add", {"channel": support}, moderator, guild.channel_named("general")),
        ("peercare setup", {"shadow_mode": False}, moderator, guild.channel_named("general")),
    ]
    if bob_opts_in:
        commands.append(("peercare coaching on", {}, server.cast.bob, support))
    for path, options, user, channel in commands:
        command = await server.slash(path, options, user=user, channel=channel)
        await command.reply(timeout=15)


async def _inbox_row(runner: BotRunner, message_id: int) -> InboxMessage | None:
    assert runner.bot is not None
    async with runner.bot.database.session() as session:
        return await session.get(InboxMessage, message_id, populate_existing=True)


async def _scored(runner: BotRunner, message_id: int) -> InboxMessage:
    async def finished() -> InboxMessage | None:
        row = await _inbox_row(runner, message_id)
        return row if row is not None and row.outcome is not InboxOutcome.PENDING else None

    row = await eventually(finished, what=f"message {message_id} to get its outcome")
    assert row.outcome is InboxOutcome.SCORED
    return row


async def _count(runner: BotRunner, model: type, *conditions: object) -> int:
    assert runner.bot is not None
    async with runner.bot.database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0)


def _fetched_again(server: DiscordServer, message: Message) -> bool:
    """Someone fetched ``message`` from Discord by id: recovery does, the live path never does."""
    return bool(
        server.requests.find(method="GET", path=f"/channels/{message.channel_id}/messages/{message.id}")
    )


def _history_reads(server: DiscordServer, guild: Guild) -> int:
    support = guild.channel_named("support")
    return len(server.requests.find(method="GET", path=f"/channels/{support.id}/messages"))


async def _scored_post(server: DiscordServer, runner: BotRunner, guild: Guild, author: User) -> Message:
    post = await server.say(guild.channel_named("support"), author, SEEKER_TEXT)
    await _scored(runner, post.id)
    return post


def _inference(runner: BotRunner):  # type: ignore[no-untyped-def]
    assert runner.bot is not None
    return runner.bot.get_cog("Replies").pipeline.inference


async def test_pending_message_is_recovered_by_its_guilds_process_only(discord_server: DiscordServer, fleet):
    runners, guilds = fleet
    await _go_live(discord_server, guilds[0])
    held = Hold(_inference(runners[0]), "score_risk")  # process 0 is slow with its guild's post
    post = await discord_server.say(
        guilds[0].channel_named("support"), discord_server.cast.alice, SEEKER_TEXT
    )
    await held.wait_reached()

    assert await runners[1].bot.get_cog("Replies").recover_pending(received_before=utcnow()) == 0
    row = await _inbox_row(runners[1], post.id)
    assert row is not None and (row.outcome, row.attempts) == (InboxOutcome.PENDING, 1)
    assert not _fetched_again(discord_server, post)  # process 1 never touched guild 0's message

    held.release()
    assert (await _scored(runners[0], post.id)).attempts == 1
    assert await _count(runners[0], RiskAssessment, RiskAssessment.message_id == post.id) == 1


async def test_reply_left_uncoached_is_flushed_by_its_guilds_process_only(
    discord_server: DiscordServer, fleet
):
    runners, guilds = fleet
    bob = discord_server.cast.bob
    await _go_live(discord_server, guilds[0])
    post = await _scored_post(discord_server, runners[0], guilds[0], discord_server.cast.alice)
    held = Hold(runners[0].bot.get_cog("Coaching"), "coach_new_reply")  # scored, its note not planned yet
    reply = await discord_server.say(guilds[0].channel_named("support"), bob, REPLY_TEXT, reply_to=post)
    await held.wait_reached()
    await _scored(runners[0], reply.id)
    assert (
        await _count(runners[0], ScoredReply, ScoredReply.coaching_status == CoachingStatus.PENDING.value)
        == 1
    )

    assert await runners[1].bot.get_cog("Coaching").flush_due() == 0
    await discord_server.settle()
    assert discord_server.dms_to(bob) == []

    held.release()
    await discord_server.wait_for_dm(bob, timeout=15)
    await discord_server.settle()
    assert len(discord_server.dms_to(bob)) == 1


async def test_invitation_answered_in_dms_is_delivered_by_the_guilds_process(
    discord_server: DiscordServer, fleet
):
    runners, guilds = fleet
    bob = discord_server.cast.bob
    await _go_live(discord_server, guilds[1], bob_opts_in=False)
    post = await _scored_post(discord_server, runners[1], guilds[1], discord_server.cast.alice)
    reply = await discord_server.say(guilds[1].channel_named("support"), bob, REPLY_TEXT, reply_to=post)
    invitation = await discord_server.wait_for_dm(bob, timeout=15)
    # A button in a DM reaches shard 0's process, which does not own guild 1: it records the answer only.
    click = await discord_server.click(invitation, f"peercare:coaching:yes:{guilds[1].id}", user=bob)
    await click.response()
    await discord_server.settle()
    assert discord_server.dms_to(bob) == [invitation] and "Thanks!" in invitation.content

    assert await runners[1].bot.get_cog("Coaching").flush_due() == 1  # the guild's own process sends it
    note = await discord_server.wait_for_dm(bob, timeout=15)
    assert reply.jump_url_path in note.content
    await discord_server.settle()
    assert len(discord_server.dms_to(bob)) == 2


async def test_killed_shard_process_resumes_its_guilds(discord_server: DiscordServer, fleet):
    runners, guilds = fleet
    cast = discord_server.cast
    for shard in (0, 1):  # one guild of each process
        await _go_live(discord_server, guilds[shard])
    posts = {
        shard: await _scored_post(discord_server, runners[shard], guilds[shard], cast.alice)
        for shard in (0, 1)
    }
    # Process 0 dies while scoring bob's reply in its guild: received and recorded, never finished.
    frozen = Hold(_inference(runners[0]), "score_reply")
    reply_0 = await discord_server.say(
        guilds[0].channel_named("support"), cast.bob, REPLY_TEXT, reply_to=posts[0]
    )
    await frozen.wait_reached()
    await runners[0].crash()
    history_reads_before = _history_reads(discord_server, guilds[1])

    # Process 1 goes on with its own guild, and its sweeps leave guild 0's unfinished work alone.
    reply_1 = await discord_server.say(
        guilds[1].channel_named("support"), cast.bob, REPLY_TEXT, reply_to=posts[1]
    )
    await _scored(runners[1], reply_1.id)
    await discord_server.wait_for_dm(cast.bob, timeout=15)  # its note for the reply in its guild
    replies = runners[1].bot.get_cog("Replies")
    assert await replies.recover_pending(received_before=utcnow()) == 0
    assert await runners[1].bot.get_cog("Coaching").flush_due() == 0
    row = await _inbox_row(runners[1], reply_0.id)
    assert row is not None and (row.outcome, row.attempts) == (InboxOutcome.PENDING, 1)
    assert not _fetched_again(discord_server, reply_0)

    # Process 0 comes back: its start-up recovery finishes the reply once, and coaches it once.
    frozen.release()
    await runners[0].start()
    assert (await _scored(runners[0], reply_0.id)).attempts == 2
    await discord_server.wait_for_dm(cast.bob, timeout=15)
    await discord_server.settle()
    assert len(discord_server.dms_to(cast.bob)) == 2  # one note per guild's reply, none twice
    assert await _count(runners[0], ScoredReply) == 2
    for post in posts.values():
        assert await _count(runners[0], RiskAssessment, RiskAssessment.message_id == post.id) == 1
    async with runners[0].bot.database.session() as session:
        pending = await session.scalar(
            select(func.count()).select_from(InboxMessage).where(InboxMessage.outcome == InboxOutcome.PENDING)
        )
    assert pending == 0
    # Its start-up catch-up read only its own guild's history.
    assert _history_reads(discord_server, guilds[1]) == history_reads_before


# -- escalations: the sweep, re-pings and DM answers, by the guild's own process -----------------------------

CRISIS_POST = "I just want to die, nothing helps anymore"  # high tier from the crisis-phrase layer
REPING_DUE = timedelta(minutes=31)  # past the default 30 minutes before an unacknowledged alert is re-pinged


async def _alerts_live(server: DiscordServer, guild: Guild) -> None:
    """``guild`` live, alerting its Moderator role in #mod-alerts for members who have not chosen otherwise."""
    await _go_live(server, guild, bob_opts_in=False)
    moderator_role = next(role for role in guild.roles.values() if role.name == "Moderator")
    command = await server.slash(
        "peercare setup",
        {
            "alert_channel": guild.channel_named("mod-alerts"),
            "moderator_role": moderator_role,
            "escalation_default": "yes",
        },
        user=server.cast.owner,
        channel=guild.channel_named("general"),
    )
    await command.reply(timeout=15)


def _alerts(server: DiscordServer, guild: Guild) -> list[Message]:
    """The bot's escalation alerts in ``guild``'s #mod-alerts (re-ping reminders left out)."""
    return [
        m
        for m in server.sent_to(guild.channel_named("mod-alerts"))
        if any(ALERT_FOOTER_PREFIX in ((e.get("footer") or {}).get("text") or "") for e in m.embeds)
    ]


def _reminders(server: DiscordServer, guild: Guild, alert: Message) -> list[Message]:
    return [m for m in server.sent_to(guild.channel_named("mod-alerts")) if m.reference_id == alert.id]


async def _cases(runner: BotRunner, guild: Guild) -> list[Escalation]:
    assert runner.bot is not None
    async with runner.bot.database.session() as session:
        return list(
            await session.scalars(
                select(Escalation).where(Escalation.guild_id == guild.id).order_by(Escalation.id)
            )
        )


async def _alerted(server: DiscordServer, runner: BotRunner, guild: Guild) -> Message:
    alert = await server.wait_until(lambda: next(iter(_alerts(server, guild)), None), 15, "an alert")

    async def case_alerted() -> bool:
        return [c.state for c in await _cases(runner, guild)] == [EscalationState.ALERTED]

    await eventually(case_alerted, what="the case to be marked alerted")
    return alert


async def _sweep_everywhere(runners: dict[int, BotRunner]) -> None:
    for runner in runners.values():
        assert runner.bot is not None
        await runner.bot.get_cog("Escalations").sweep()


async def test_waiting_alert_is_delivered_once_by_its_guilds_process(discord_server: DiscordServer, fleet):
    runners, guilds = fleet
    guild = guilds[1]
    await _alerts_live(discord_server, guild)
    discord_server.faults.next_request(
        missing_permissions(),
        method="POST",
        path=f"/channels/{guild.channel_named('mod-alerts').id}/messages",
    )
    await discord_server.say(guild.channel_named("support"), discord_server.cast.alice, CRISIS_POST)

    async def waiting() -> bool:
        return any(c.last_error for c in await _cases(runners[0], guild))

    await eventually(waiting, what="the alert to wait after the 403")
    # Its process dies with the alert waiting; the other process's sweep leaves it alone.
    await runners[1].crash()
    await runners[0].bot.get_cog("Escalations").sweep()
    await discord_server.settle()
    assert _alerts(discord_server, guild) == []
    assert [c.state for c in await _cases(runners[0], guild)] == [EscalationState.PENDING]

    await runners[1].start()  # its start-up sweep delivers it, once
    alert = await _alerted(discord_server, runners[1], guild)
    await _sweep_everywhere(runners)
    await discord_server.settle()
    assert _alerts(discord_server, guild) == [alert]
    assert [c.alert_message_id for c in await _cases(runners[1], guild)] == [alert.id]


async def test_unacknowledged_alert_is_repinged_once_by_its_guilds_process(
    discord_server: DiscordServer, fleet
):
    runners, guilds = fleet
    guild = guilds[1]
    await _alerts_live(discord_server, guild)
    await discord_server.say(guild.channel_named("support"), discord_server.cast.alice, CRISIS_POST)
    alert = await _alerted(discord_server, runners[1], guild)
    later = utcnow() + REPING_DUE

    assert await runners[0].bot.get_cog("Escalations").reping_due(later) == 0
    assert await runners[1].bot.get_cog("Escalations").reping_due(later) == 1
    for runner in runners.values():
        assert await runner.bot.get_cog("Escalations").reping_due(later) == 0
    await discord_server.settle()
    assert len(_reminders(discord_server, guild, alert)) == 1


async def test_checkin_answer_in_dms_is_alerted_by_its_guilds_process(discord_server: DiscordServer, fleet):
    runners, guilds = fleet
    alice, guild = discord_server.cast.alice, guilds[1]
    await _alerts_live(discord_server, guild)
    await _checkins_on(discord_server, guild, alice)
    async with runners[1].bot.database.session() as session:
        schedule = await checkins.find_schedule(session, guild.id, alice.id)
    assert schedule is not None
    assert await runners[1].bot.get_cog("Checkins").send_checkin(schedule.id)
    checkin_dm = await discord_server.wait_for_dm(alice, timeout=15)
    (talk,) = [i for i in checkin_dm.custom_ids() if i.startswith("peercare:checkin:talk:")]

    # The button is in a DM: it reaches shard 0's process, which answers the member and sends nothing else.
    click = await discord_server.click(checkin_dm, talk, user=alice)
    await click.reply(timeout=15)
    await discord_server.settle()
    assert _alerts(discord_server, guild) == []
    assert [c.state for c in await _cases(runners[0], guild)] == [EscalationState.PENDING]

    await runners[1].bot.get_cog("Escalations").sweep()  # the guild's own process alerts its moderators
    alert = await _alerted(discord_server, runners[1], guild)
    await _sweep_everywhere(runners)
    await discord_server.settle()
    assert _alerts(discord_server, guild) == [alert]


async def test_every_guilds_messages_are_scored_once_and_alerted_once(discord_server: DiscordServer, fleet):
    runners, guilds = fleet
    for guild in guilds.values():
        await _alerts_live(discord_server, guild)
    posts = {
        shard: await discord_server.say(
            guild.channel_named("support"), discord_server.cast.alice, CRISIS_POST
        )
        for shard, guild in guilds.items()
    }
    alerts = {}
    for shard, post in posts.items():
        owner = runners[process_of(shard)]
        assert (await _scored(owner, post.id)).attempts == 1
        alerts[shard] = await _alerted(discord_server, owner, guilds[shard])

    # Every process sweeps, recovers and re-pings as often as it likes: nothing more is sent.
    later = utcnow() + REPING_DUE
    await _sweep_everywhere(runners)
    for runner in runners.values():
        await runner.bot.get_cog("Replies").recover_pending(received_before=utcnow())
    reminders = [await runner.bot.get_cog("Escalations").reping_due(later) for runner in runners.values()]
    await discord_server.settle()
    assert reminders == [len(_owned(guilds, p)) for p in runners]  # each process its own two guilds
    for shard, guild in guilds.items():
        assert _alerts(discord_server, guild) == [alerts[shard]]
        assert len(_reminders(discord_server, guild, alerts[shard])) == 1
        assert await _count(runners[0], RiskAssessment, RiskAssessment.message_id == posts[shard].id) == 1
    assert await _count(runners[0], Escalation) == len(guilds)

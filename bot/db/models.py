"""The database schema: typed SQLAlchemy 2 models for everything PeerCare stores.

Discord ids are snowflakes (64-bit), so every id column is a BigInteger. Message text is stored only in
columns named ``*_text`` / ``excerpt`` with a matching ``text_expires_at``; the retention job nulls them.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored as strings (no native PostgreSQL enum types) so adding a state is a plain migration.
    return Enum(cls, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class CoachingDefault(str, enum.Enum):
    """Whether members of a guild get coaching unless they say otherwise."""

    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"


class EscalationConsent(str, enum.Enum):
    """A member's own answer to: alert moderators if I may be at risk?"""

    YES = "yes"
    NO = "no"
    ASK_FIRST = "ask_first"


class CoachingChoice(str, enum.Enum):
    UNSET = "unset"
    ON = "on"
    OFF = "off"


class EscalationState(str, enum.Enum):
    PENDING = "pending"  # written before anything is sent
    AWAITING_MEMBER = "awaiting_member"  # consent "ask me first": the member was asked privately
    ALERTED = "alerted"  # moderator alert posted
    ACKNOWLEDGED = "acknowledged"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    FALSE_ALARM = "false_alarm"
    MEMBER_SUPPORTED = "member_supported"  # no consent: crisis resources sent privately, no moderator told
    DECLINED = "declined"  # member said no when asked


class InboxOutcome(str, enum.Enum):
    """Where a support-channel message stands: every one ends scored, or skipped with a reason."""

    PENDING = "pending"  # received, no outcome yet (in flight, or waiting for the recovery sweep)
    SCORED = "scored"
    SKIPPED = "skipped"


class CheckinCadence(str, enum.Enum):
    DAILY = "daily"
    WEEKLY = "weekly"


class GuildSettings(Base):
    """Per-guild configuration, created with defaults the first time a guild is seen."""

    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    alert_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    moderator_role_id: Mapped[int | None] = mapped_column(BigInteger)
    # {"elevated": {label: p}, "high": {label: p}}; None means the risk model card's calibrated defaults.
    risk_thresholds: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    crisis_resources: Mapped[str | None] = mapped_column(Text)
    coaching_default: Mapped[CoachingDefault] = mapped_column(
        _enum(CoachingDefault), default=CoachingDefault.OPT_IN
    )
    default_escalation_consent: Mapped[EscalationConsent] = mapped_column(
        _enum(EscalationConsent), default=EscalationConsent.ASK_FIRST
    )
    shadow_mode: Mapped[bool] = mapped_column(Boolean, default=True)
    coaching_interval_minutes: Mapped[int] = mapped_column(Integer, default=60)
    coaching_daily_cap: Mapped[int] = mapped_column(Integer, default=5)
    realert_after_minutes: Mapped[int] = mapped_column(Integer, default=30)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class SupportChannel(Base):
    """A channel a moderator opted in; only these (and their threads) are ever read."""

    __tablename__ = "support_channels"

    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    added_by: Mapped[int] = mapped_column(BigInteger)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MemberConsent(Base):
    """What a member agreed to in one guild. Absent row = the guild's defaults."""

    __tablename__ = "member_consent"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    coaching: Mapped[CoachingChoice] = mapped_column(_enum(CoachingChoice), default=CoachingChoice.UNSET)
    coaching_invited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalation: Mapped[EscalationConsent | None] = mapped_column(_enum(EscalationConsent))
    # Set when Discord answered 50007 (DMs closed); we stop trying until the member acts again.
    dms_closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ScoredReply(Base):
    """The empathy scores of one reply to a seeker post."""

    __tablename__ = "scored_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    reply_message_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    parent_message_id: Mapped[int] = mapped_column(BigInteger, index=True)
    responder_id: Mapped[int] = mapped_column(BigInteger, index=True)
    seeker_id: Mapped[int] = mapped_column(BigInteger, index=True)
    er_level: Mapped[int] = mapped_column(Integer)
    ip_level: Mapped[int] = mapped_column(Integer)
    ex_level: Mapped[int] = mapped_column(Integer)
    # {"ER": [p0, p1, p2], ...}
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    # [{"mechanism": "ER", "start": 0, "end": 12}] — character offsets into the reply.
    rationale_spans: Mapped[list[Any]] = mapped_column(JSON, default=list)
    parent_risk: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    parent_risk_tier: Mapped[str | None] = mapped_column(String(16))
    # Hash of the scored text: an edit re-scores only on a material change.
    content_hash: Mapped[str] = mapped_column(String(64))
    reply_text: Mapped[str | None] = mapped_column(Text)
    text_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    coaching_status: Mapped[str] = mapped_column(String(32), default="pending")
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class RiskAssessment(Base):
    """The risk score of a seeker post or check-in answer (probabilities only, no text)."""

    __tablename__ = "risk_assessments"
    __table_args__ = (UniqueConstraint("source", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    author_id: Mapped[int] = mapped_column(BigInteger, index=True)
    source: Mapped[str] = mapped_column(String(16), default="post")  # post | checkin
    tier: Mapped[str] = mapped_column(String(16))
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    triggered_labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    phrase_matches: Mapped[list[Any]] = mapped_column(JSON, default=list)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Escalation(Base):
    """A high-risk post on its way to a human: written before anything is sent, delivered at least once."""

    __tablename__ = "escalations"
    __table_args__ = (
        UniqueConstraint("guild_id", "kind", "message_id"),
        Index("ix_escalations_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(16), default="post")  # post | checkin | talk_request
    tier: Mapped[str] = mapped_column(String(16))
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    excerpt: Mapped[str | None] = mapped_column(Text)
    text_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    state: Mapped[EscalationState] = mapped_column(_enum(EscalationState), default=EscalationState.PENDING)
    consent_used: Mapped[str | None] = mapped_column(String(16))
    alert_channel_id: Mapped[int | None] = mapped_column(BigInteger)
    alert_message_id: Mapped[int | None] = mapped_column(BigInteger)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    ping_count: Mapped[int] = mapped_column(Integer, default=0)
    last_pinged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[int | None] = mapped_column(BigInteger)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[int | None] = mapped_column(BigInteger)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # One case per member at a time: later high-risk messages join it as [channel_id, message_id] pairs.
    more_messages: Mapped[list[Any] | None] = mapped_column(JSON)
    # When a message last joined (or opened) the case: the quiet period counts from here.
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when a message joined an already posted alert: the alert is edited (no new ping), then cleared.
    alert_outdated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CoachingDelivery(Base):
    """One coaching DM (or invitation, or digest) sent or attempted: the basis of the rate limits."""

    __tablename__ = "coaching_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    responder_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # invitation | coaching | digest
    status: Mapped[str] = mapped_column(String(32))  # sent | dms_closed | failed
    reply_message_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    dm_message_id: Mapped[int | None] = mapped_column(BigInteger)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class CheckinSchedule(Base):
    """A member's opt-in check-in: rebuilt into APScheduler jobs at every start."""

    __tablename__ = "checkin_schedules"
    __table_args__ = (UniqueConstraint("guild_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    cadence: Mapped[CheckinCadence] = mapped_column(_enum(CheckinCadence))
    time_of_day: Mapped[str] = mapped_column(String(5))  # HH:MM in the member's time zone
    timezone: Mapped[str] = mapped_column(String(64))
    weekday: Mapped[int | None] = mapped_column(Integer)  # 0 = Monday, weekly only
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    missed_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    checkins: Mapped[list[Checkin]] = relationship(back_populates="schedule", cascade="all, delete-orphan")


class Checkin(Base):
    """One check-in DM and the member's answer."""

    __tablename__ = "checkins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("checkin_schedules.id", ondelete="CASCADE"))
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    user_id: Mapped[int] = mapped_column(BigInteger, index=True)
    dm_message_id: Mapped[int | None] = mapped_column(BigInteger)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mood: Mapped[str | None] = mapped_column(String(16))  # okay | so_so | struggling | talk
    answer_text: Mapped[str | None] = mapped_column(Text)
    text_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    risk_tier: Mapped[str | None] = mapped_column(String(16))

    schedule: Mapped[CheckinSchedule] = relationship(back_populates="checkins")


class AuditLogEntry(Base):
    """Who did what, when — ids and states only, never message text."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    guild_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    actor_id: Mapped[int | None] = mapped_column(BigInteger)  # None = PeerCare itself
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[int | None] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class InboxMessage(Base):
    """One message received in a support location and its single outcome — ids only, never text.

    Written before any slow work, so a message the bot received but never finished is found again after a
    crash (its text is fetched from Discord anew).
    """

    __tablename__ = "message_inbox"
    __table_args__ = (
        Index("ix_message_inbox_outcome_received_at", "outcome", "received_at"),
        # Catch-up asks, per channel or thread, for the newest message the inbox has seen.
        Index("ix_message_inbox_channel_message", "channel_id", "message_id"),
    )

    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    guild_id: Mapped[int] = mapped_column(BigInteger, index=True)
    channel_id: Mapped[int] = mapped_column(BigInteger)  # the thread's id for a message in a thread
    author_id: Mapped[int] = mapped_column(BigInteger, index=True)
    kind: Mapped[str] = mapped_column(String(16), default="unknown")  # post | reply | unknown
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    outcome: Mapped[InboxOutcome] = mapped_column(_enum(InboxOutcome), default=InboxOutcome.PENDING)
    skip_reason: Mapped[str | None] = mapped_column(String(32))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)

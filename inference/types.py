"""Plain data exchanged between the bot and the inference backends: requests in, scores out.

These types cross process boundaries (the worker backend pickles them, Ray serialises them),
so they hold only builtins: no tensors, no Discord objects, no database rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Mechanism(str, Enum):
    """The three empathy communication mechanisms of Sharma et al. (EMNLP 2020)."""

    EMOTIONAL_REACTIONS = "ER"
    INTERPRETATIONS = "IP"
    EXPLORATIONS = "EX"

    @property
    def display_name(self) -> str:
        """The paper's name for it, as people read it ("Emotional Reactions"): every note, chart, card and CLI
        line takes it from here, so the names cannot drift apart."""
        return self.name.replace("_", " ").title()


class EmpathyLevel(int, Enum):
    NONE = 0
    WEAK = 1
    STRONG = 2


class RiskTier(str, Enum):
    """Ordered risk tiers; only ``HIGH`` can lead to a moderator alert."""

    NONE = "none"
    ELEVATED = "elevated"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _TIER_RANK[self]

    def at_least(self, other: RiskTier) -> bool:
        return self.rank >= other.rank

    @classmethod
    def max(cls, *tiers: RiskTier) -> RiskTier:
        return max(tiers, key=lambda tier: tier.rank)


_TIER_RANK = {RiskTier.NONE: 0, RiskTier.ELEVATED: 1, RiskTier.HIGH: 2}


class Priority(str, Enum):
    """Risk work is never shed under load; coaching work may wait or be shed."""

    RISK = "risk"
    COACHING = "coaching"


@dataclass(frozen=True, slots=True)
class RationaleSpan:
    """A stretch of the reply (character offsets into the original text) that justifies a level."""

    start: int
    end: int
    text: str

    @classmethod
    def of(cls, reply: str, start: int, end: int) -> RationaleSpan:
        """The span of ``reply`` from ``start`` to ``end``: its text is always the reply's own characters there."""
        return cls(start, end, reply[start:end])


@dataclass(frozen=True, slots=True)
class MechanismScore:
    mechanism: Mechanism
    level: EmpathyLevel
    probabilities: tuple[float, float, float]
    rationales: tuple[RationaleSpan, ...] = ()
    # The chat recogniser's probability for this mechanism (None: no recogniser). At or above its cut-off
    # the level is at least 1 even where ``probabilities`` (the bi-encoder's) say none.
    recogniser_probability: float | None = None


@dataclass(frozen=True, slots=True)
class EmpathyResult:
    """ER, IP and EX for one (seeker post, reply) pair."""

    emotional_reactions: MechanismScore
    interpretations: MechanismScore
    explorations: MechanismScore

    def by_mechanism(self) -> dict[Mechanism, MechanismScore]:
        return {
            Mechanism.EMOTIONAL_REACTIONS: self.emotional_reactions,
            Mechanism.INTERPRETATIONS: self.interpretations,
            Mechanism.EXPLORATIONS: self.explorations,
        }


@dataclass(frozen=True, slots=True)
class RiskThresholds:
    """Probability cut-offs per label; a label at or above ``high`` makes the post high-tier.

    Labels missing from a mapping never raise the tier on their own (e.g. ``neutral``).
    """

    elevated: dict[str, float]
    high: dict[str, float]


@dataclass(frozen=True, slots=True)
class RiskResult:
    probabilities: dict[str, float]
    tier: RiskTier
    # Labels whose probability crossed the tier's threshold, strongest first.
    triggered_labels: tuple[str, ...] = ()
    # Names of crisis phrases (from the moderator-readable phrase file) that raised the tier.
    phrase_matches: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplyScoreRequest:
    """A reply together with its parent (seeker) message. Ids make the request idempotent."""

    parent_id: int
    parent_text: str
    reply_id: int
    reply_text: str
    score_reply_risk: bool = False
    priority: Priority = Priority.COACHING


@dataclass(frozen=True, slots=True)
class RiskScoreRequest:
    """Risk only: a post that is not a reply, or a check-in answer."""

    message_id: int
    text: str


@dataclass(frozen=True, slots=True)
class ReplyScore:
    reply_id: int
    parent_id: int
    empathy: EmpathyResult
    parent_risk: RiskResult
    reply_risk: RiskResult | None = None
    model_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RiskScore:
    message_id: int
    risk: RiskResult

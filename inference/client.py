"""The one async interface the bot uses for scoring, whatever backend runs the models."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from inference.types import ReplyScore, ReplyScoreRequest, RiskScore, RiskScoreRequest


@runtime_checkable
class InferenceClient(Protocol):
    """Backends (in-process, worker process, Ray Serve) implement this contract.

    ``start`` returns quickly; models load in the background and ``ready`` turns true when
    they have. Calls made before that wait for readiness instead of failing.
    """

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def score_reply(self, request: ReplyScoreRequest) -> ReplyScore: ...

    async def score_risk(self, request: RiskScoreRequest) -> RiskScore: ...

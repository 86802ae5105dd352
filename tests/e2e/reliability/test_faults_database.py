"""The database is locked by another process while the bot works: work waits, is retried, or is parked — never lost.

Another connection takes SQLite's write lock (``BEGIN EXCLUSIVE``, as a backup tool or a second process
would) for a while. Three lengths of lock, three layers:

- shorter than SQLite's own busy wait (5 s): statements wait inside SQLite; the log says the database was busy;
- longer than that wait (made 100 ms here): ``Database.run`` re-runs the escalation step with backoff;
- longer than every retry: the step gives up, the case stays pending, and the sweep delivers it once.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import event

from bot.db import session as db_session
from bot.db.models import EscalationConsent, EscalationState, RiskAssessment
from tests.e2e._features import count_rows
from tests.e2e.safety_support import CRISIS_POST, alerts, go_live, post_crisis, wait_for_alert, wait_for_case
from tests.support.sqlite_write_lock import WriteLock

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e


@pytest.fixture
def short_sqlite_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite gives up on a lock after 100 ms instead of 5 s, so the retry layer is what is tested."""
    monkeypatch.setattr(db_session, "SQLITE_BUSY_TIMEOUT_MS", 100)


def _lock_when_the_alert_is_sent(e2e, lock: WriteLock, hold_s: float | None) -> None:
    """Take the lock the moment the alert reaches Discord: the step after it (recording it) meets the lock."""

    def take(request) -> bool:  # type: ignore[no-untyped-def]
        lock.take(hold_s)
        return False  # not a fault: the alert goes through

    e2e.faults.next_request(
        None, method="POST", path=f"/channels/{e2e.cast.mod_alerts.id}/messages", when=take
    )


def _lock_at_the_post_s_first_write(e2e, lock: WriteLock, hold_s: float) -> None:
    """Take the lock just before the bot records the post in its inbox (its first write for it): however long a
    loaded machine takes to get there, the post arrives while the lock is held, and the bot's write meets it."""

    def take(_connection: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO MESSAGE_INBOX"):
            lock.take(hold_s)

    event.listen(e2e.database.engine.sync_engine, "before_cursor_execute", take)


async def test_a_post_arriving_during_a_short_lock_is_scored_and_escalated_after_it(e2e, write_lock, caplog):
    await go_live(e2e, EscalationConsent.YES)
    _lock_at_the_post_s_first_write(e2e, write_lock, hold_s=1.5)
    with caplog.at_level(logging.WARNING, logger="bot.db.session"):
        post = await post_crisis(e2e)
        alert = await wait_for_alert(e2e, timeout=20)
    (sent,) = e2e.requests.find(method="POST", path=f"/channels/{e2e.cast.mod_alerts.id}/messages")
    assert write_lock.released_at is not None and sent.at >= write_lock.released_at
    await wait_for_case(e2e, EscalationState.ALERTED)
    await e2e.settle()
    assert CRISIS_POST in alert.text and len(alerts(e2e)) == 1
    assert await count_rows(e2e, RiskAssessment, RiskAssessment.message_id == post.id) == 1
    busy = [r.getMessage() for r in caplog.records if r.getMessage().startswith("database busy:")]
    assert busy, "the wait for the lock was not logged"
    assert CRISIS_POST not in caplog.text


class TestLocksLongerThanSqlitesOwnWait:
    """SQLite's busy wait is cut to 100 ms before the bot opens its first connection."""

    @pytest.fixture
    def e2e_settings(self, short_sqlite_wait: None) -> dict:
        return {}

    async def test_the_step_is_retried_and_the_alert_recorded_once(self, e2e, write_lock, caplog):
        await go_live(e2e, EscalationConsent.YES)
        _lock_when_the_alert_is_sent(e2e, write_lock, hold_s=0.8)
        with caplog.at_level(logging.WARNING, logger="bot.db.session"):
            await post_crisis(e2e)
            case = await wait_for_case(e2e, EscalationState.ALERTED, timeout=20)
        await e2e.settle()
        assert len(alerts(e2e)) == 1 and case.alert_message_id == alerts(e2e)[0].id
        retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
        assert retries and retries[0].startswith(
            f"database unavailable (database is locked) during mark escalation {case.id} alerted: attempt 1 of 4 failed"
        )

    async def test_outlasting_every_retry_parks_the_case_and_the_sweep_posts_it_once(
        self, e2e, write_lock, caplog
    ):
        await go_live(e2e, EscalationConsent.YES)
        _lock_when_the_alert_is_sent(e2e, write_lock, hold_s=None)
        e2e.expect_errors()  # the listener logs that it gave up; checked below
        with caplog.at_level(logging.WARNING, logger="bot.db.session"):
            await post_crisis(e2e)
            await e2e.wait_until(
                lambda: "giving up after 4 attempts" in caplog.text, 20, "the retries to end"
            )
        write_lock.release()
        case = await wait_for_case(e2e, EscalationState.PENDING)
        assert case.delivery_attempts == 1 and case.alert_message_id is None  # parked: sent, not recorded
        assert len(alerts(e2e)) == 1

        await e2e.bot.get_cog("Escalations").sweep()
        case = await wait_for_case(e2e, EscalationState.ALERTED)
        await e2e.settle()
        assert len(alerts(e2e)) == 1 and case.alert_message_id == alerts(e2e)[0].id  # found, not re-posted
        assert [r.name for r in e2e.logged_errors()] == ["bot.app"]  # where the case is handed to delivery
        assert CRISIS_POST not in caplog.text

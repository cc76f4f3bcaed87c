"""Payouts: handing an approved withdrawal's payout request to the crypto gateway, once, and
retrying the ones left ``requested``.

The payout request (``PAYOUT#<withdrawal id>``) is written with the approval, ``requested`` and in
the "still to send" index (GSI2 ``PAYOUTS#requested``). Handing it over:

1. claim it: a conditional write ``status = requested`` and no live claim -> ``claimed_until =
   now + CLAIM_SECONDS``. Of two senders (the approval and the retry, two retries) one wins; the
   other does nothing, so the gateway is asked once;
2. ask the gateway (its idempotency key is the withdrawal id);
3. mark it ``sent`` and drop it from the index (condition ``status = requested``: the gateway's
   webhook may have settled it meanwhile). If the gateway failed, release the claim instead: the
   request stays ``requested`` for the next retry, moved to the back of the queue (one the
   gateway keeps refusing cannot hold up the rest) with ``failed_attempts`` counted.

A sender that dies between 2 and 3 leaves a claim that expires after ``CLAIM_SECONDS``; the next
retry then asks the gateway again, which answers with the payout it already has (same id), so
one payout still goes out. A payout is only handed over while its withdrawal is ``processing``:
a request whose withdrawal is anything else (settled, or never approved) leaves the index
unsent. Settled payouts (``completed`` / ``failed`` by the webhook) leave it in the same write.

``retry_requested`` is what the scheduled function (``chalicelib/api/jobs.py``) and the local
stack's ``python -m infra.local.retry_payouts`` run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger
from pynamodb.exceptions import UpdateError

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.crypto_gateway import CryptoGateway, Payout
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import PayoutItem, WithdrawalItem
from chalicelib.adapters.dynamo.transact import condition_failed

logger = Logger(child=True)

REQUESTED, SENT = "requested", "sent"
PROCESSING = "processing"  # the withdrawal's status while its payout is owed
CLAIM_SECONDS = 60  # longer than any gateway call (HttpCryptoGateway: 5 s timeout)
RETRY_BATCH = 100

# What one hand-off did.
HANDED_OVER = "sent"  # the gateway has it now
ALREADY_SENT = "already_sent"  # sent (or settled) before
IN_FLIGHT = "in_flight"  # another sender holds the claim
GATEWAY_FAILED = "gateway_failed"  # the gateway failed: still requested, retried later
NOT_OWED = "not_owed"  # no request, or its withdrawal is not processing: nothing sent
GIVEN_UP = "given_up"  # refused too many times: the withdrawal failed, its hold released


def requested_index_keys(requested_at: str, withdrawal_id: str) -> dict[str, str]:
    """The GSI2 keys that put a new payout request in the "still to send" index."""
    return {
        "GSI2PK": keys.PAYOUTS_REQUESTED_GSI_PK,
        "GSI2SK": keys.payouts_requested_gsi_sk(requested_at, withdrawal_id),
    }


def leave_index_actions() -> list:
    """Update actions that take a payout request out of the "still to send" index."""
    return [
        PayoutItem.GSI2PK.remove(),
        PayoutItem.GSI2SK.remove(),
        PayoutItem.claimed_until.remove(),
    ]


def hand_off(gateway: CryptoGateway, withdrawal_id: str, now: float | None = None) -> str:
    """Hand one payout request to the gateway if it is still owed; returns what happened."""
    try:
        item = PayoutItem.get(keys.payout_pk(withdrawal_id), keys.PAYOUT_SK, consistent_read=True)
    except PayoutItem.DoesNotExist:
        return NOT_OWED
    if item.status != REQUESTED:
        return ALREADY_SENT
    if _withdrawal_status(withdrawal_id) != PROCESSING:
        # Never approved or already settled: nothing is owed, and the index forgets it.
        logger.warning("payout request not owed", extra={"withdrawal_id": withdrawal_id})
        _conditional_update(item, leave_index_actions())
        return NOT_OWED
    now = time.time() if now is None else now
    if not _claim(item, now):
        return IN_FLIGHT
    payout = Payout(
        withdrawal_id=item.withdrawal_id,
        currency=item.currency,
        amount=int(item.amount),
        destination=item.destination,
    )
    try:
        gateway.request_payout(payout)
    except Exception:
        # Whatever went wrong, the approval stands and the request says what is owed.
        logger.exception("payout hand-off failed", extra={"withdrawal_id": withdrawal_id})
        # To the back of the queue: a payout the gateway keeps refusing must not hold up the
        # ones behind it (the retry takes the oldest RETRY_BATCH first).
        _conditional_update(
            item,
            [
                PayoutItem.claimed_until.remove(),
                PayoutItem.failed_attempts.add(1),
                PayoutItem.GSI2SK.set(keys.payouts_requested_gsi_sk(now_iso(), withdrawal_id)),
            ],
        )
        return GATEWAY_FAILED
    sent = [PayoutItem.status.set(SENT), PayoutItem.sent_at.set(now_iso())]
    _conditional_update(item, [*sent, *leave_index_actions()])
    return HANDED_OVER


def _failed_attempts(withdrawal_id: str) -> int:
    try:
        item = PayoutItem.get(keys.payout_pk(withdrawal_id), keys.PAYOUT_SK, consistent_read=True)
    except PayoutItem.DoesNotExist:
        return 0
    return int(item.failed_attempts or 0)


def _withdrawal_status(withdrawal_id: str) -> str | None:
    try:
        found = WithdrawalItem.get(
            keys.withdrawal_pk(withdrawal_id), keys.WITHDRAWAL_SK, consistent_read=True
        )
    except WithdrawalItem.DoesNotExist:
        return None
    return found.status


def _claim(item: PayoutItem, now: float) -> bool:
    free = PayoutItem.claimed_until.does_not_exist() | (PayoutItem.claimed_until < int(now))
    try:
        item.update(
            actions=[PayoutItem.claimed_until.set(int(now) + CLAIM_SECONDS)],
            condition=(PayoutItem.status == REQUESTED) & free,
        )
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def _conditional_update(item: PayoutItem, actions: list) -> None:
    """Apply ``actions`` while the request is still ``requested`` (a webhook may have settled it
    meanwhile, which also took it out of the index)."""
    try:
        item.update(actions=actions, condition=PayoutItem.status == REQUESTED)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise


@dataclass
class RetryReport:
    """What one retry run did, by outcome (see the constants above), and the ids it sent."""

    outcomes: dict[str, int] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return self.outcomes.get(outcome, 0)


def requested(limit: int = RETRY_BATCH) -> list[str]:
    """Withdrawal ids of payout requests still to send, oldest first (from the index: eventually
    consistent, so ``hand_off`` reads each one again before acting)."""
    results = PayoutItem.requested_index.query(
        keys.PAYOUTS_REQUESTED_GSI_PK, scan_index_forward=True, limit=limit, page_size=limit
    )
    return [item.withdrawal_id for item in results]


def retry_requested(
    gateway: CryptoGateway,
    limit: int = RETRY_BATCH,
    now: float | None = None,
    *,
    max_attempts: int | None = None,
    give_up: Callable[[str, int], bool] | None = None,
) -> RetryReport:
    """Hand every payout still ``requested`` to the gateway (up to ``limit``, oldest first).

    A payout the gateway has refused ``max_attempts`` times is given up: ``give_up(withdrawal
    id, attempts)`` fails the withdrawal and releases its hold (``withdrawals.
    fail_undeliverable``), and the report names it in ``given_up`` so that operators are told.
    Safe to run at any time, twice, or concurrently with itself and with approvals.
    """
    report = RetryReport()
    for withdrawal_id in requested(limit):
        outcome = hand_off(gateway, withdrawal_id, now)
        if outcome == GATEWAY_FAILED and max_attempts is not None and give_up is not None:
            attempts = _failed_attempts(withdrawal_id)
            if attempts >= max_attempts and give_up(withdrawal_id, attempts):
                outcome = GIVEN_UP
                report.given_up.append(withdrawal_id)
        report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
        if outcome == HANDED_OVER:
            report.sent.append(withdrawal_id)
    logger.info("payout retry", extra={"outcomes": report.outcomes, "sent": report.sent})
    return report

"""Payouts: handing an approved withdrawal's payout request to the crypto gateway, once, and
retrying the ones left ``requested``.

The payout request (``chalicelib/domain/payouts.py``) is written with the approval, ``requested``
and in the "still to send" queue (kept by a ``PayoutRepository``:
``adapters/dynamo/payout_repository.py``). Handing it over:

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
from typing import Protocol

from aws_lambda_powertools import Logger

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.crypto_gateway import CryptoGateway, Payout
from chalicelib.domain.payouts import PayoutRequest, PayoutStatus
from chalicelib.domain.withdrawals import Withdrawal, WithdrawalStatus
from chalicelib.services.ledger import SideWrite

logger = Logger(child=True)

CLAIM_SECONDS = 60  # longer than any gateway call (HttpCryptoGateway: 5 s timeout)
RETRY_BATCH = 100

# What one hand-off did.
HANDED_OVER = "sent"  # the gateway has it now
ALREADY_SENT = "already_sent"  # sent (or settled) before
IN_FLIGHT = "in_flight"  # another sender holds the claim
GATEWAY_FAILED = "gateway_failed"  # the gateway failed: still requested, retried later
NOT_OWED = "not_owed"  # no request, or its withdrawal is not processing: nothing sent
GIVEN_UP = "given_up"  # refused too many times: the withdrawal failed, its hold released


class PayoutRepository(Protocol):
    """Payout requests (``adapters.dynamo.payout_repository.DynamoPayoutRepository``). The
    methods that return bool answer False, writing nothing, when the request is no longer
    ``requested`` (or, for ``claim``, another sender's claim is live)."""

    def get(self, withdrawal_id: str) -> PayoutRequest | None: ...

    def requested_write(self, payout: PayoutRequest) -> SideWrite:
        """The new request, in the "still to send" queue; fails InvalidState if one exists."""
        ...

    def settled_write(self, withdrawal_id: str, status: PayoutStatus) -> SideWrite:
        """The request settled and out of the queue; fails InvalidState if there is none."""
        ...

    def claim(self, withdrawal_id: str, now: int, until: int) -> bool: ...

    def mark_sent(self, withdrawal_id: str, at: str) -> bool: ...

    def hand_off_failed(self, withdrawal_id: str, at: str) -> bool: ...

    def forget(self, withdrawal_id: str) -> bool: ...

    def requested(self, limit: int) -> list[str]: ...


class WithdrawalReader(Protocol):
    def get(self, withdrawal_id: str) -> Withdrawal | None: ...


def hand_off(
    gateway: CryptoGateway,
    payouts: PayoutRepository,
    withdrawals: WithdrawalReader,
    withdrawal_id: str,
    now: float | None = None,
) -> str:
    """Hand one payout request to the gateway if it is still owed; returns what happened."""
    payout = payouts.get(withdrawal_id)
    if payout is None:
        return NOT_OWED
    if not payout.still_to_send:
        return ALREADY_SENT
    withdrawal = withdrawals.get(withdrawal_id)
    if withdrawal is None or withdrawal.status is not WithdrawalStatus.PROCESSING:
        # Never approved or already settled: nothing is owed, and the queue forgets it.
        logger.warning("payout request not owed", extra={"withdrawal_id": withdrawal_id})
        payouts.forget(withdrawal_id)
        return NOT_OWED
    moment = int(time.time() if now is None else now)
    if not payouts.claim(withdrawal_id, moment, moment + CLAIM_SECONDS):
        return IN_FLIGHT
    try:
        gateway.request_payout(
            Payout(
                withdrawal_id=payout.withdrawal_id,
                currency=payout.currency,
                amount=payout.amount,
                destination=payout.destination,
            )
        )
    except Exception:
        # Whatever went wrong, the approval stands and the request says what is owed.
        logger.exception("payout hand-off failed", extra={"withdrawal_id": withdrawal_id})
        # To the back of the queue: a payout the gateway keeps refusing must not hold up the
        # ones behind it (the retry takes the oldest RETRY_BATCH first).
        payouts.hand_off_failed(withdrawal_id, now_iso())
        return GATEWAY_FAILED
    payouts.mark_sent(withdrawal_id, now_iso())
    return HANDED_OVER


@dataclass
class RetryReport:
    """What one retry run did, by outcome (see the constants above), and the ids it sent."""

    outcomes: dict[str, int] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return self.outcomes.get(outcome, 0)


def retry_requested(
    gateway: CryptoGateway,
    payouts: PayoutRepository,
    withdrawals: WithdrawalReader,
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
    for withdrawal_id in payouts.requested(limit):
        outcome = hand_off(gateway, payouts, withdrawals, withdrawal_id, now)
        if outcome == GATEWAY_FAILED and max_attempts is not None and give_up is not None:
            found = payouts.get(withdrawal_id)
            attempts = found.failed_attempts if found is not None else 0
            if attempts >= max_attempts and give_up(withdrawal_id, attempts):
                outcome = GIVEN_UP
                report.given_up.append(withdrawal_id)
        report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
        if outcome == HANDED_OVER:
            report.sent.append(withdrawal_id)
    logger.info("payout retry", extra={"outcomes": report.outcomes, "sent": report.sent})
    return report

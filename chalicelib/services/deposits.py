"""Card deposits through Stripe: a pending deposit and its PaymentIntent, and Stripe's
``payment_intent.*`` events (``services/stripe_events.py`` routes them here).

The deposit's lifecycle and its rules (one credit per PaymentIntent, refund at most what was
credited) are the domain's (``chalicelib/domain/deposits.py``); its item, key and conditions are
the repository's (``adapters/dynamo/deposit_repository.py``), which this module sees through
``DepositRepository``.

Events, exactly once and in any order (DESIGN.md, "Flows: Card deposit"):

* Every event id is written once to the inbox, in the same ``TransactWriteItems`` as its effect,
  so a redelivered event changes nothing.
* ``payment_intent.succeeded`` never trusts the event body: the PaymentIntent is re-fetched
  from Stripe and the wallet is credited with the amount Stripe reports, only if Stripe says
  ``succeeded``. The ledger transaction id is derived from the PaymentIntent id, so a second,
  distinct event about the same payment cannot credit it again.
* Order does not matter: a ``payment_failed`` only fails a *pending* deposit (a failure that
  arrives after the success does not un-credit), and a success after a failure still credits,
  because the money did arrive; the deposit then shows ``succeeded``.
* An unexpected error while processing propagates (answered 5xx), so Stripe retries; since the
  inbox item and the effect are one atomic write, nothing is half-written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.stripe_gateway import PaymentGateway, WebhookEvent
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.deposits import (
    Deposit,
    card_deposit_id,
    check_card_currency,
)
from chalicelib.domain.errors import (
    DepositNotFound,
    InvalidState,
    TransactionAlreadyExists,
    WebhookEventSeen,
)
from chalicelib.domain.money import currency, parse_amount
from chalicelib.domain.risk import Check, Operation
from chalicelib.domain.transactions import Transaction, TransactionType
from chalicelib.domain.users import User
from chalicelib.services.inbox import DUPLICATE, Inbox
from chalicelib.services.ledger import LedgerService, PostingRequest, SideWrite
from chalicelib.services.risk import Risk, count_alone

PROVIDER = "stripe"  # the inbox's name for Stripe's events
STRIPE_SUCCEEDED = "succeeded"

# Outcomes recorded in the inbox (and returned to the webhook route for its log line).
CREDITED, MARKED_FAILED, UNMATCHED, IGNORED = "credited", "failed", "unmatched", "ignored"


class DepositRepository(Protocol):
    def get(self, deposit_id: str) -> Deposit | None:
        """The deposit (strongly consistent), or None."""
        ...

    def add(self, deposit: Deposit) -> Deposit:
        """Store a new pending deposit; a concurrent retry's copy, if it was stored first."""
        ...

    def set_payment_intent(self, deposit_id: str, payment_intent_id: str) -> None:
        """Record the deposit's PaymentIntent (fails if it has another)."""
        ...

    def write(self, writes: Sequence[SideWrite]) -> None:
        """Side writes alone, atomically; a failed condition raises its write's error."""
        ...

    def credit(self, deposit: Deposit) -> SideWrite:
        """The credited deposit, to write with its credit (DepositNotFound if it is gone)."""
        ...

    def fail(self, deposit: Deposit) -> SideWrite:
        """The failed deposit (InvalidState unless it is still pending)."""
        ...

    def roll_back(self, deposit_id: str, reversal_id: str, at: str) -> SideWrite:
        """The deposit marked rolled back (NotReversible with refunds or a dispute)."""
        ...


def get_own(deposits: DepositRepository, user: User, deposit_id: str) -> Deposit:
    """Raises DepositNotFound for another user's deposit, exactly as for a missing one."""
    found = deposits.get(deposit_id)
    if found is None or found.user_id != user.id:
        raise DepositNotFound(f"deposit {deposit_id} not found")
    return found


def create_card_deposit(
    gateway: PaymentGateway,
    *,
    deposits: DepositRepository,
    risk: Risk,
    user: User,
    amount: str,
    currency_code: str,
    idempotency_key: str,
) -> Deposit:
    """A pending deposit and its Stripe PaymentIntent.

    The deposit id is derived from the user and the Idempotency-Key, and is Stripe's idempotency
    key: a retry (even after the API's replay record expired, or after a crash between the two
    writes) finds the same deposit and gets the same PaymentIntent back.

    A new deposit is assessed and counted by the risk rules first (``services.risk.count_alone``):
    no money moves yet, so there is nothing to hold, and a rule whose action is ``review``
    declines it like ``block`` does, before any PaymentIntent exists (docs/risk.md).

    Raises (in order): UnsupportedCurrency (anything but USD), InvalidAmount, RiskDeclined.
    """
    code = currency(currency_code).code
    check_card_currency(code)
    minor = parse_amount(amount, code)
    deposit_id = card_deposit_id(user.id, idempotency_key)
    deposit = deposits.get(deposit_id)
    if deposit is None:
        at = now_iso()
        check = Check(user.id, Operation.CARD_DEPOSIT, minor, code, at, None, user.created_at)
        count_alone(risk, check)
        deposit = deposits.add(Deposit.pending(deposit_id, user.id, minor, code, at))
    if deposit.payment_intent_id is not None:
        intent = gateway.retrieve_payment_intent(deposit.payment_intent_id)
    else:
        intent = gateway.create_payment_intent(
            amount=deposit.amount, currency=code, deposit_id=deposit_id, user_id=user.id
        )
        deposits.set_payment_intent(deposit_id, intent.id)
    return replace(deposit, payment_intent_id=intent.id, client_secret=intent.client_secret)


# -- Stripe's events ------------------------------------------------------------------------------
def on_succeeded(
    ledger: LedgerService,
    gateway: PaymentGateway,
    event: WebhookEvent,
    *,
    deposits: DepositRepository,
    inbox: Inbox,
) -> str:
    """``payment_intent.succeeded``: credit the amount Stripe reports, once per PaymentIntent."""
    intent = gateway.retrieve_payment_intent(str(event.object_id))
    deposit = deposits.get(intent.metadata.get("deposit_id", ""))
    if (
        intent.status != STRIPE_SUCCEEDED
        or deposit is None
        or deposit.user_id != intent.metadata.get("user_id")
        or deposit.currency != intent.currency
        or not deposit.pays_with(intent.id)
        or intent.amount <= 0
    ):
        return inbox.record(PROVIDER, event, UNMATCHED, intent.id)
    try:
        credited = deposit.credited(intent.id, intent.amount, now_iso())
    except TransactionAlreadyExists:
        # Another event about the same payment credited it already.
        return inbox.record(PROVIDER, event, DUPLICATE, deposit.transaction_id)
    txn_id, code = str(credited.transaction_id), credited.currency
    try:
        recorded = ledger.record(
            transaction_id=txn_id,
            type=TransactionType.DEPOSIT,
            postings=[
                PostingRequest(
                    PlatformAccount(PlatformKind.STRIPE_CLEARING, code), code, -intent.amount
                ),
                PostingRequest(
                    wallet_id(OwnerType.USER, deposit.user_id, code), code, intent.amount
                ),
            ],
            memo="card deposit",
            metadata={"deposit_id": deposit.id, "payment_intent_id": intent.id},
            extra=[inbox.entry(PROVIDER, event, CREDITED, txn_id), deposits.credit(credited)],
        )
    except WebhookEventSeen:
        return DUPLICATE
    if not recorded.created:
        # A racing event about the same payment credited it first (the domain's check read
        # the deposit before that; the transaction's condition caught it).
        return inbox.record(PROVIDER, event, DUPLICATE, txn_id)
    return CREDITED


def on_failed(
    gateway: PaymentGateway, event: WebhookEvent, *, deposits: DepositRepository, inbox: Inbox
) -> str:
    """``payment_intent.payment_failed``: fail a pending deposit; anything else is ignored."""
    intent = gateway.retrieve_payment_intent(str(event.object_id))
    deposit = deposits.get(intent.metadata.get("deposit_id", ""))
    if deposit is None or not deposit.pays_with(intent.id):
        return inbox.record(PROVIDER, event, UNMATCHED, intent.id)
    if intent.status == STRIPE_SUCCEEDED:
        return inbox.record(PROVIDER, event, IGNORED, deposit.id)  # a later attempt succeeded
    try:
        failed = deposit.failed(now_iso())
        deposits.write(
            [inbox.entry(PROVIDER, event, MARKED_FAILED, deposit.id), deposits.fail(failed)]
        )
    except WebhookEventSeen:
        return DUPLICATE
    except InvalidState:
        # Already succeeded (or failed): a late failure changes nothing.
        return inbox.record(PROVIDER, event, IGNORED, deposit.id)
    return MARKED_FAILED


# -- rollbacks ------------------------------------------------------------------------------------
def rollback_guard(
    deposits: DepositRepository, transaction: Transaction, reversal_id: str
) -> SideWrite | None:
    """For the rollback of a card deposit's transaction: marks the deposit rolled back in the
    same write, and refuses (NotReversible) when a refund is reserved or made or the payment was
    disputed, so the money cannot leave the wallet twice (once by the rollback, once by a refund
    or a dispute)."""
    deposit_id = transaction.metadata.get("deposit_id")
    if transaction.type is not TransactionType.DEPOSIT or not deposit_id:
        return None
    return deposits.roll_back(deposit_id, reversal_id, now_iso())

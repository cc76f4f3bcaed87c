"""Card deposits through Stripe: a pending deposit and its PaymentIntent, and Stripe's webhooks.

Life of a card deposit: ``pending`` (created with its PaymentIntent) -> ``succeeded`` (Stripe's
``payment_intent.succeeded``: the wallet is credited) or ``failed``
(``payment_intent.payment_failed``).

Webhooks, exactly once and in any order (DESIGN.md, "Flows: Card deposit"):

* The signature is checked over the raw body before anything is read or written.
* Every event id is written once to the inbox (``EVT#stripe#<event id>``), in the same
  ``TransactWriteItems`` as its effect, so a redelivered event changes nothing.
* ``payment_intent.succeeded`` never trusts the event body: the PaymentIntent is re-fetched
  from Stripe and the wallet is credited with the amount Stripe reports, only if Stripe says
  ``succeeded``. The ledger transaction id is derived from the PaymentIntent id, so a second,
  distinct event about the same payment cannot credit it again.
* Order does not matter: a ``payment_failed`` only fails a *pending* deposit (a failure that
  arrives after the success does not un-credit), and a success after a failure still credits,
  because the money did arrive (a PaymentIntent can fail an attempt and then succeed with
  another card); the deposit then shows ``succeeded``.
* An unexpected error while processing propagates (answered 5xx), so Stripe retries; since the
  inbox item and the effect are one atomic write, nothing is half-written.

Refund events (``refund.*``, ``charge.refunded``) go to services/refunds.py, dispute events
(``charge.dispute.created`` / ``.closed``) to services/disputes.py. Unknown event types are
acknowledged and recorded in the inbox.

A deposit's stored status stays ``succeeded`` once credited; ``refunded`` and
``partially_refunded`` are derived from ``refunded_amount`` (``status_of``), which refunds raise
with an atomic ADD, so two refunds finishing at once cannot leave a stale status.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import PutError

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite
from chalicelib.adapters.dynamo.models import DepositItem
from chalicelib.adapters.dynamo.transact import AtomicWrite, condition_failed
from chalicelib.adapters.stripe_gateway import PaymentGateway, WebhookEvent
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.errors import (
    AlreadyReversed,
    DepositNotFound,
    InvalidState,
    NotReversible,
    UnsupportedCurrency,
    WebhookEventSeen,
)
from chalicelib.domain.money import currency, parse_amount
from chalicelib.domain.transactions import Transaction, TransactionType, derive_transaction_id
from chalicelib.domain.users import User
from chalicelib.services import inbox
from chalicelib.services.ledger import LedgerService, PostingRequest

PROVIDER = "stripe"
CARD_CURRENCY = "USD"
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
REFUNDED, PARTIALLY_REFUNDED = "refunded", "partially_refunded"
REFUND_EVENTS = {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
CHARGE_REFUNDED_EVENT = "charge.refunded"
DISPUTE_EVENTS = {"charge.dispute.created", "charge.dispute.closed"}
SUCCEEDED_EVENT = "payment_intent.succeeded"
FAILED_EVENT = "payment_intent.payment_failed"

# Outcomes recorded in the inbox (and returned to the webhook route for its log line).
CREDITED, MARKED_FAILED, UNMATCHED, IGNORED = "credited", "failed", "unmatched", "ignored"
DUPLICATE = inbox.DUPLICATE


@dataclass(frozen=True)
class Deposit:
    id: str
    user_id: str
    amount: int
    currency: str
    status: str
    payment_intent_id: str | None
    created_at: str
    transaction_id: str | None = None
    credited_amount: int | None = None
    client_secret: str | None = None  # only when just created (never stored)
    refund_reserved: int = 0  # refunds succeeded or in flight
    refunded_amount: int = 0  # refunds succeeded
    rolled_back_by: str | None = None  # the reversal, when an admin rolled the deposit back

    @property
    def public_status(self) -> str:
        """``pending``, ``succeeded``, ``failed``, ``refunded`` or ``partially_refunded``."""
        if self.status != SUCCEEDED or self.refunded_amount <= 0:
            return self.status
        if self.refunded_amount >= (self.credited_amount or 0):
            return REFUNDED
        return PARTIALLY_REFUNDED


def _from_item(item: DepositItem) -> Deposit:
    return Deposit(
        id=item.deposit_id,
        user_id=item.user_id,
        amount=int(item.amount),
        currency=item.currency,
        status=item.status,
        payment_intent_id=item.payment_intent_id,
        created_at=item.created_at,
        transaction_id=item.transaction_id,
        credited_amount=None if item.credited_amount is None else int(item.credited_amount),
        refund_reserved=int(item.refund_reserved or 0),
        refunded_amount=int(item.refunded_amount or 0),
        rolled_back_by=item.rolled_back_by,
    )


def _key(deposit_id: str) -> DepositItem:
    return DepositItem(keys.deposit_pk(deposit_id), keys.DEPOSIT_SK)


def get(deposit_id: str) -> Deposit | None:
    try:
        item = DepositItem.get(keys.deposit_pk(deposit_id), keys.DEPOSIT_SK, consistent_read=True)
    except DepositItem.DoesNotExist:
        return None
    return _from_item(item)


def get_own(user: User, deposit_id: str) -> Deposit:
    """Raises DepositNotFound for another user's deposit, exactly as for a missing one."""
    found = get(deposit_id)
    if found is None or found.user_id != user.id:
        raise DepositNotFound(f"deposit {deposit_id} not found")
    return found


def create_card_deposit(
    gateway: PaymentGateway, *, user: User, amount: str, currency_code: str, idempotency_key: str
) -> Deposit:
    """A pending deposit and its Stripe PaymentIntent.

    The deposit id is derived from the user and the Idempotency-Key, and is Stripe's idempotency
    key: a retry (even after the API's replay record expired, or after a crash between the two
    writes) finds the same deposit and gets the same PaymentIntent back.

    Raises (in order): UnsupportedCurrency (anything but USD), InvalidAmount.
    """
    code = currency(currency_code).code
    if code != CARD_CURRENCY:
        raise UnsupportedCurrency(f"card deposits are in {CARD_CURRENCY} only, not {code}")
    minor = parse_amount(amount, code)
    deposit_id = "dep_" + derive_transaction_id("card-deposit", user.id, idempotency_key)[4:]
    deposit = get(deposit_id) or _create_pending(deposit_id, user.id, minor, code)
    if deposit.payment_intent_id is not None:
        intent = gateway.retrieve_payment_intent(deposit.payment_intent_id)
    else:
        intent = gateway.create_payment_intent(
            amount=deposit.amount, currency=code, deposit_id=deposit_id, user_id=user.id
        )
        _key(deposit_id).update(
            actions=[DepositItem.payment_intent_id.set(intent.id)],
            condition=DepositItem.payment_intent_id.does_not_exist()
            | (DepositItem.payment_intent_id == intent.id),
        )
    return Deposit(
        id=deposit.id,
        user_id=deposit.user_id,
        amount=deposit.amount,
        currency=deposit.currency,
        status=deposit.status,
        payment_intent_id=intent.id,
        created_at=deposit.created_at,
        transaction_id=deposit.transaction_id,
        credited_amount=deposit.credited_amount,
        client_secret=intent.client_secret,
        refund_reserved=deposit.refund_reserved,
        refunded_amount=deposit.refunded_amount,
        rolled_back_by=deposit.rolled_back_by,
    )


def _create_pending(deposit_id: str, user_id: str, amount: int, code: str) -> Deposit:
    item = DepositItem(
        keys.deposit_pk(deposit_id),
        keys.DEPOSIT_SK,
        item_type=DepositItem.ITEM_TYPE,
        deposit_id=deposit_id,
        user_id=user_id,
        amount=amount,
        currency=code,
        status=PENDING,
        created_at=now_iso(),
    )
    try:
        item.save(condition=DepositItem.PK.does_not_exist())
    except PutError as exc:
        if not condition_failed(exc):
            raise
        raced = get(deposit_id)  # a concurrent retry of the same request wrote it first
        if raced is None:
            raise
        return raced
    return _from_item(item)


# -- webhooks -------------------------------------------------------------------------------------
def handle_stripe_event(
    ledger: LedgerService, gateway: PaymentGateway, payload: bytes, signature: str | None
) -> str:
    """Verify and apply one Stripe webhook delivery; returns the outcome.

    Raises:
        InvalidWebhook: the signature or the body is bad (nothing is read or written).
        Anything else: an unexpected failure; nothing was written, Stripe should retry.
    """
    event = gateway.verify_event(payload, signature)
    if inbox.seen(PROVIDER, event.id):
        return DUPLICATE
    if event.type == SUCCEEDED_EVENT and event.object_id:
        return _succeeded(ledger, gateway, event)
    if event.type == FAILED_EVENT and event.object_id:
        return _failed(gateway, event)
    if event.type in REFUND_EVENTS and event.object_id:
        from chalicelib.services import refunds

        return refunds.on_refund_event(ledger, gateway, event)
    if event.type == CHARGE_REFUNDED_EVENT:
        from chalicelib.services import refunds

        return refunds.on_charge_refunded(ledger, gateway, event)
    if event.type in DISPUTE_EVENTS:
        from chalicelib.services import disputes

        return disputes.handle(ledger, gateway, event)
    return inbox.record(PROVIDER, event, IGNORED, event.object_id)


def _succeeded(ledger: LedgerService, gateway: PaymentGateway, event: WebhookEvent) -> str:
    intent = gateway.retrieve_payment_intent(str(event.object_id))
    deposit = get(intent.metadata.get("deposit_id", ""))
    if (
        intent.status != SUCCEEDED
        or deposit is None
        or deposit.user_id != intent.metadata.get("user_id")
        or deposit.currency != intent.currency
        or deposit.payment_intent_id not in (None, intent.id)
        or intent.amount <= 0
    ):
        return inbox.record(PROVIDER, event, UNMATCHED, intent.id)
    txn_id = derive_transaction_id("deposit", intent.id)
    code = deposit.currency
    credited = ExtraWrite(
        model=_key(deposit.id),
        condition=DepositItem.PK.exists(),
        error=DepositNotFound(f"deposit {deposit.id} disappeared"),
        actions=[
            DepositItem.status.set(SUCCEEDED),
            DepositItem.payment_intent_id.set(intent.id),
            DepositItem.transaction_id.set(txn_id),
            DepositItem.credited_amount.set(intent.amount),
            DepositItem.updated_at.set(now_iso()),
        ],
    )
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
            extra=[inbox.entry(PROVIDER, event, CREDITED, txn_id), credited],
        )
    except WebhookEventSeen:
        return DUPLICATE
    if not recorded.created:
        # Another event about the same payment credited it already.
        return inbox.record(PROVIDER, event, DUPLICATE, txn_id)
    return CREDITED


def rollback_guard(transaction: Transaction, reversal_id: str) -> ExtraWrite | None:
    """For the rollback of a card deposit's transaction: marks the deposit rolled back in the
    same write, and refuses (NotReversible) when a refund is reserved or made or the payment was
    disputed, so the money cannot leave the wallet twice (once by the rollback, once by a refund
    or a dispute)."""
    deposit_id = transaction.metadata.get("deposit_id")
    if transaction.type is not TransactionType.DEPOSIT or not deposit_id:
        return None
    return ExtraWrite(
        model=_key(deposit_id),
        condition=(
            DepositItem.refund_reserved.does_not_exist() | (DepositItem.refund_reserved == 0)
        )
        & DepositItem.rolled_back_by.does_not_exist()
        & DepositItem.disputed_by.does_not_exist(),
        error=NotReversible(
            f"deposit {deposit_id} has refunds or a dispute: refund the rest, or let the dispute"
            " settle it, instead of rolling it back"
        ),
        actions=[
            DepositItem.rolled_back_by.set(reversal_id),
            DepositItem.updated_at.set(now_iso()),
        ],
    )


def dispute_mark(deposit_id: str, dispute_id: str, *, rolled_back: bool) -> ExtraWrite:
    """For a dispute's opening write: marks the deposit disputed (so no rollback can follow) and,
    unless it is known to be rolled back already, requires that it still is not (AlreadyReversed:
    an admin rolled it back meanwhile, so the dispute must hold nothing)."""
    return ExtraWrite(
        model=_key(deposit_id),
        condition=None if rolled_back else DepositItem.rolled_back_by.does_not_exist(),
        error=AlreadyReversed(f"deposit {deposit_id} was rolled back"),
        actions=[
            DepositItem.disputed_by.set(dispute_id),
            DepositItem.updated_at.set(now_iso()),
        ],
    )


def _failed(gateway: PaymentGateway, event: WebhookEvent) -> str:
    intent = gateway.retrieve_payment_intent(str(event.object_id))
    deposit = get(intent.metadata.get("deposit_id", ""))
    if deposit is None or deposit.payment_intent_id not in (None, intent.id):
        return inbox.record(PROVIDER, event, UNMATCHED, intent.id)
    if intent.status == SUCCEEDED:
        return inbox.record(PROVIDER, event, IGNORED, deposit.id)  # a later attempt succeeded
    marker = inbox.entry(PROVIDER, event, MARKED_FAILED, deposit.id)
    write = AtomicWrite()
    write.put(marker.model, marker.condition, marker.error)
    write.update(
        _key(deposit.id),
        [DepositItem.status.set(FAILED), DepositItem.updated_at.set(now_iso())],
        DepositItem.status == PENDING,
        InvalidState(f"deposit {deposit.id} is not pending"),
    )
    try:
        write.send_or_raise_tag()
    except WebhookEventSeen:
        return DUPLICATE
    except InvalidState:
        # Already succeeded (or failed): a late failure changes nothing.
        return inbox.record(PROVIDER, event, IGNORED, deposit.id)
    return MARKED_FAILED

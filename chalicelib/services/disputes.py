"""Disputes (chargebacks) of card deposits, from Stripe's ``charge.dispute.*`` events.

* ``charge.dispute.created``: the disputed amount is held on the user's wallet (a pending
  ``adjustment``: wallet -> Stripe clearing), so it cannot be spent while the bank decides. If the
  user has already spent part of it, only what is ``available`` is held (a user account never goes
  below zero except by an admin's forced rollback, DESIGN.md guarantee 3); the dispute item
  records the shortfall, which is the platform's exposure, and the audit event names it.
* ``charge.dispute.closed``: ``lost`` posts the hold (the money has left Stripe); ``won`` and
  every other closing status (``warning_closed``: an inquiry that never withdrew funds;
  ``charge_refunded``) release it.

Which deposit: the dispute's PaymentIntent is re-fetched from Stripe and its metadata names the
deposit (and the user), exactly as for a payment. The dispute's own fields (amount, status) are
taken from the signed event: a closed dispute's status is final, and localstripe has no disputes
to fetch. Exactly once: the hold's transaction id is derived from the dispute id, the dispute item
is written with ``attribute_not_exists``, closing is conditional on ``open``, and each event's inbox
item is in the same write as its effect. Out of order: a ``closed`` that arrives first opens the
dispute itself, then closes it; the late ``created`` then finds it and changes nothing.
"""

from __future__ import annotations

from chalicelib.adapters.clock import now_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.ledger_repository import ExtraWrite, audit_entry
from chalicelib.adapters.dynamo.models import DisputeItem
from chalicelib.adapters.dynamo.transact import AtomicWrite
from chalicelib.adapters.stripe_gateway import PaymentGateway, WebhookEvent
from chalicelib.domain.accounts import OwnerType, PlatformAccount, PlatformKind, wallet_id
from chalicelib.domain.errors import (
    AlreadyReversed,
    HoldNotPending,
    InsufficientFunds,
    InvalidState,
    TransactionAlreadyExists,
    TransactionExistsWithDifferentFields,
    VersionConflict,
    WebhookEventSeen,
)
from chalicelib.domain.transactions import TransactionType, derive_transaction_id
from chalicelib.domain.users import AuditEvent
from chalicelib.services import deposits, inbox
from chalicelib.services.ledger import LedgerService, PostingRequest

CREATED_EVENT = "charge.dispute.created"
CLOSED_EVENT = "charge.dispute.closed"
OPEN, LOST = "open", "lost"
MAX_ATTEMPTS = 5


def get(dispute_id: str) -> DisputeItem | None:
    try:
        return DisputeItem.get(keys.dispute_pk(dispute_id), keys.DISPUTE_SK, consistent_read=True)
    except DisputeItem.DoesNotExist:
        return None


def _audit(action: str, item: DisputeItem, **details: str) -> ExtraWrite:
    event = AuditEvent.new(
        action,
        at=now_iso(),
        actor_id=deposits.PROVIDER,  # the audit actor of what Stripe reports
        target=item.dispute_id,
        ip=None,
        deposit_id=item.deposit_id,
        user_id=item.user_id,
        amount=str(int(item.amount)),
        held_amount=str(int(item.held_amount)),
        currency=item.currency,
        **details,
    )
    return audit_entry(event)


def handle(ledger: LedgerService, gateway: PaymentGateway, event: WebhookEvent) -> str:
    """Apply a ``charge.dispute.created`` / ``.closed`` event; returns the outcome."""
    obj = event.object
    dispute_id, intent_id = event.object_id, obj.get("payment_intent")
    if not dispute_id or not isinstance(intent_id, str):
        return inbox.record(deposits.PROVIDER, event, deposits.UNMATCHED, dispute_id)
    if event.type == CREATED_EVENT:
        if get(dispute_id) is not None:
            return inbox.record(deposits.PROVIDER, event, inbox.DUPLICATE, dispute_id)
        return _open(ledger, gateway, event, marker=True) or inbox.DUPLICATE
    status = str(obj.get("status") or "closed")
    if (
        get(dispute_id) is None
        and _open(ledger, gateway, event, marker=False) is None
        and get(dispute_id) is None  # a concurrent `created` may have opened it meanwhile
    ):
        return inbox.record(deposits.PROVIDER, event, deposits.UNMATCHED, dispute_id)
    return _close(ledger, event, status)


def _open(
    ledger: LedgerService, gateway: PaymentGateway, event: WebhookEvent, *, marker: bool
) -> str | None:
    """Hold what the wallet can cover of the disputed amount; None if no deposit matches."""
    obj = event.object
    dispute_id = str(event.object_id)
    intent = gateway.retrieve_payment_intent(str(obj["payment_intent"]))
    deposit = deposits.get(intent.metadata.get("deposit_id", ""))
    if (
        deposit is None
        or deposit.status != deposits.SUCCEEDED
        or deposit.payment_intent_id != intent.id
        or deposit.user_id != intent.metadata.get("user_id")
    ):
        if marker:
            inbox.record(deposits.PROVIDER, event, deposits.UNMATCHED, dispute_id)
            return deposits.UNMATCHED
        return None
    code = deposit.currency
    amount = int(obj.get("amount") or deposit.credited_amount or 0)
    wallet = wallet_id(OwnerType.USER, deposit.user_id, code)
    clearing = PlatformAccount(PlatformKind.STRIPE_CLEARING, code)
    txn_id = derive_transaction_id("dispute", dispute_id)
    rolled_back = bool(deposit.rolled_back_by)
    for _ in range(MAX_ATTEMPTS):
        account = ledger.repository.read([wallet]).accounts.get(wallet)
        held = max(0, min(amount, account.available if account else 0))
        if rolled_back:
            held = 0  # an admin already took the deposit back from the wallet
        item = DisputeItem(
            keys.dispute_pk(dispute_id),
            keys.DISPUTE_SK,
            item_type=DisputeItem.ITEM_TYPE,
            dispute_id=dispute_id,
            deposit_id=deposit.id,
            user_id=deposit.user_id,
            payment_intent_id=intent.id,
            amount=amount,
            held_amount=held,
            currency=code,
            status=OPEN,
            transaction_id=txn_id if held else None,
            created_at=now_iso(),
        )
        extra = [
            ExtraWrite(item, DisputeItem.PK.does_not_exist(), InvalidState("dispute exists")),
            _audit("dispute.opened", item, shortfall=str(amount - held)),
            deposits.dispute_mark(deposit.id, dispute_id, rolled_back=rolled_back),
        ]
        if marker:
            extra.append(inbox.entry(deposits.PROVIDER, event, "dispute_opened", dispute_id))
        try:
            if held:
                recorded = ledger.record(
                    transaction_id=txn_id,
                    type=TransactionType.ADJUSTMENT,
                    postings=[
                        PostingRequest(wallet, code, -held),
                        PostingRequest(clearing, code, held),
                    ],
                    memo="card dispute hold",
                    metadata={
                        "dispute_id": dispute_id,
                        "deposit_id": deposit.id,
                        "payment_intent_id": intent.id,
                    },
                    pending=True,
                    extra=extra,
                )
                if not recorded.created:
                    # A racing event for this dispute held it first; this write was a replay and
                    # wrote none of the extras (no inbox item, no audit event of its own).
                    if marker:
                        return inbox.record(deposits.PROVIDER, event, inbox.DUPLICATE, dispute_id)
                    return None
            else:
                _write(extra)
        except InsufficientFunds:
            continue  # the user spent between our read and the write: hold what is left
        except AlreadyReversed:
            rolled_back = True  # an admin rolled the deposit back between our read and the write
            continue
        except (WebhookEventSeen, InvalidState, TransactionAlreadyExists):
            return None if not marker else inbox.DUPLICATE
        except TransactionExistsWithDifferentFields:
            # A racing event held a different amount first (the wallet changed between reads).
            if marker:
                return inbox.record(deposits.PROVIDER, event, inbox.DUPLICATE, dispute_id)
            return None
        return "dispute_opened"
    raise VersionConflict(f"could not hold the disputed amount of {dispute_id}")


def _close(ledger: LedgerService, event: WebhookEvent, status: str) -> str:
    """``lost`` posts the hold (the money left Stripe); every other closing status (``won``,
    ``warning_closed`` for an inquiry that never withdrew funds, ``charge_refunded``...) voids it,
    so the user is never charged for a dispute the platform did not lose."""
    item = get(str(event.object_id))
    if item is None:
        return inbox.record(deposits.PROVIDER, event, deposits.UNMATCHED, event.object_id)
    won = status != LOST
    update = ExtraWrite(
        DisputeItem(keys.dispute_pk(item.dispute_id), keys.DISPUTE_SK),
        DisputeItem.status == OPEN,
        InvalidState(f"dispute {item.dispute_id} is closed"),
        [DisputeItem.status.set(status), DisputeItem.closed_at.set(now_iso())],
    )
    shortfall = 0 if won else int(item.amount) - int(item.held_amount)
    extra = [
        update,
        _audit(f"dispute.{status}", item, shortfall=str(shortfall)),
        inbox.entry(deposits.PROVIDER, event, f"dispute_{status}", item.dispute_id),
    ]
    try:
        if item.transaction_id:
            resolve = ledger.void_pending if won else ledger.post_pending
            resolve(item.transaction_id, extra=extra)
        else:
            _write(extra)
    except WebhookEventSeen:
        return inbox.DUPLICATE
    except (HoldNotPending, InvalidState):
        return inbox.record(deposits.PROVIDER, event, inbox.DUPLICATE, item.dispute_id)
    return f"dispute_{status}"


def _write(extra: list[ExtraWrite]) -> None:
    write = AtomicWrite()
    for part in extra:
        if part.actions is None:
            write.put(part.model, part.condition, part.error)
        else:
            write.update(part.model, part.actions, part.condition, part.error)
    write.send_or_raise_tag()

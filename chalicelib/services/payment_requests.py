"""Payment requests (``chalicelib/domain/payment_requests.py``): a facility asks a user to pay it;
the user pays or declines; the facility may cancel; unanswered requests expire.

- create (the facility's API key): the payer is named by email and must be a user with a verified
  email, exactly as for a transfer (API.md, "Email verification"); nothing is reserved. With an
  Idempotency-Key the request's id is derived from the facility and the key, and the request is
  written only if that id is free, so a retried creation never makes a second request.
- pay (the payer): assessed by the risk rules first (``services.risk.record_assessed``); one
  ``payment`` transaction from the payer's wallet of the request's currency to the facility's
  account, with the id ``payment_transaction_id(request id, attempt)``; the request turns
  ``paid``, and the ``payment_request.paid`` webhook event is written, in the same
  ``TransactWriteItems`` as the money (the request's update is conditioned on it being open, not
  held and not expired). However many pays run, with whatever keys, the money moves once, and a
  pay racing a cancel or a decline either moves the money and marks the request paid, or does
  neither. A ``review`` rule holds the money instead: the request stays open, held by the
  pending payment and its review, until the review's decision (``decision_writes``) turns it
  ``paid`` or releases it for another attempt.
- decline (the payer) and cancel (the facility): the request's conditional update, with the
  ``payment_request.declined`` webhook event or the facility's audit event, in one write.
- expire (a scheduled job, every 15 minutes): open requests past ``expires_at`` are stored
  ``expired`` and leave the expiry queue; until then every reader already shows them expired.

A ``PaymentRequestRepository`` (``adapters/dynamo/payment_request_repository.py``) keeps them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from chalicelib.adapters.clock import now_iso, parse_iso, to_iso
from chalicelib.domain.accounts import OwnerType, wallet_id
from chalicelib.domain.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    PaymentRequestNotFound,
    PaymentRequestNotOpen,
    RecipientNotFound,
    ReviewNotOpen,
    VersionConflict,
)
from chalicelib.domain.money import currency, parse_amount
from chalicelib.domain.payment_requests import (
    STATUSES,
    PaymentRequest,
    PaymentRequestStatus,
    checked_expires_in,
    checked_memo,
    creation_hash,
    is_payment_request_id,
)
from chalicelib.domain.risk import Check, Operation, Review, ReviewStatus
from chalicelib.domain.transactions import Transaction, TransactionType
from chalicelib.domain.users import AuditEvent, User
from chalicelib.domain.webhooks import WebhookEvent, WebhookEventType
from chalicelib.services.ledger import LedgerService, PostingRequest, SideWrite
from chalicelib.services.risk import Risk, record_assessed
from chalicelib.services.webhook_events import WebhookEvents

MAX_PAGE = 100


class Payers(Protocol):
    """Who an email names (``adapters.dynamo.auth_repository``)."""

    def verified_user_id_for_email(self, email: str) -> str | None:
        """The user whose verified address it is; None for no one or an unverified claim."""
        ...


class PaymentRequestRepository(Protocol):
    def get(self, request_id: str) -> PaymentRequest | None: ...

    def create(self, pr: PaymentRequest, event: AuditEvent) -> None:
        """The request (with its list copies) and the audit event in one write; raises
        VersionConflict (nothing written) if its id is taken."""
        ...

    def paid_writes(self, paid: PaymentRequest, now: str) -> list[SideWrite]:
        """``paid`` stored, for the write of its money; fails PaymentRequestNotOpen unless the
        request is still open, holds no payment and is not expired at ``now``."""
        ...

    def held_writes(self, held: PaymentRequest, now: str) -> list[SideWrite]:
        """``held`` (its payment held for review) stored, for the write of the hold; fails
        PaymentRequestNotOpen unless the request is still open, holds no payment and is not
        expired at ``now``."""
        ...

    def approved_writes(self, paid: PaymentRequest) -> list[SideWrite]:
        """``paid`` (its held payment approved) stored, for the write that posts the hold;
        fails ReviewNotOpen unless the request is still held by that payment."""
        ...

    def released_writes(self, held: PaymentRequest, released: PaymentRequest) -> list[SideWrite]:
        """``released`` stored, for the write that voids the hold; fails ReviewNotOpen unless
        the request is still ``held``, by that payment."""
        ...

    def decide(
        self,
        decided: PaymentRequest,
        now: str,
        event: AuditEvent | None,
        extra: Sequence[SideWrite] = (),
    ) -> None:
        """Store a decline, cancel or expiry with ``event`` and ``extra`` in one write; raises
        PaymentRequestNotOpen (nothing written) if the request left open meanwhile."""
        ...

    def due(self, now: str) -> Iterable[PaymentRequest]:
        """Open requests whose ``expires_at`` is at or before ``now`` (may include some that
        left open meanwhile)."""
        ...

    def of_payer(
        self,
        user_id: str,
        status: PaymentRequestStatus | None,
        now: str,
        limit: int,
        cursor: str | None,
        since: str | None = None,
        until: str | None = None,
    ) -> tuple[list[PaymentRequest], str | None]:
        """Newest first, created from ``since`` to ``until`` (inclusive, canonical ISO; None:
        unbounded); raises ValueError for a cursor it did not return."""
        ...

    def of_facility(
        self,
        facility_id: str,
        status: PaymentRequestStatus | None,
        now: str,
        limit: int,
        cursor: str | None,
        since: str | None = None,
        until: str | None = None,
    ) -> tuple[list[PaymentRequest], str | None]:
        """Newest first, created from ``since`` to ``until`` (inclusive, canonical ISO; None:
        unbounded); raises ValueError for a cursor it did not return."""
        ...


@dataclass(frozen=True)
class NewPaymentRequest:
    amount: object
    currency: object
    payer_email: str
    memo: str
    expires_in: int | None


@dataclass(frozen=True)
class PaymentRequestPage:
    requests: list[PaymentRequest]
    next_cursor: str | None
    now: str


def _find(requests: PaymentRequestRepository, request_id: str) -> PaymentRequest | None:
    return requests.get(request_id) if is_payment_request_id(request_id) else None


def of_facility(
    requests: PaymentRequestRepository, facility_id: str, request_id: str
) -> PaymentRequest:
    """Raises PaymentRequestNotFound for another facility's request, exactly as for none."""
    found = _find(requests, request_id)
    if found is None or found.facility_id != facility_id:
        raise PaymentRequestNotFound(f"payment request {request_id} not found")
    return found


def of_payer(requests: PaymentRequestRepository, user_id: str, request_id: str) -> PaymentRequest:
    """Raises PaymentRequestNotFound for another user's request, exactly as for none."""
    found = _find(requests, request_id)
    if found is None or found.payer_id != user_id:
        raise PaymentRequestNotFound(f"payment request {request_id} not found")
    return found


def create(
    requests: PaymentRequestRepository,
    payers: Payers,
    *,
    facility_id: str,
    key_id: str,
    request: NewPaymentRequest,
    idempotency_key: str | None,
    ip: str | None,
) -> PaymentRequest:
    """An open request to ``payer_email``, audited (actor: the facility's API key).

    With ``idempotency_key``, the same key and the same request answer the request made the
    first time (as it is now); the same key with another request is refused.

    Raises (in order): UnsupportedCurrency, InvalidAmount, InvalidRequest (memo, expires_in),
    IdempotencyKeyReused, RecipientNotFound, VersionConflict (raced and vanished: retry).
    """
    code = currency(request.currency).code
    amount = parse_amount(request.amount, code)
    memo = checked_memo(request.memo)
    expires_in = checked_expires_in(request.expires_in)
    email = request.payer_email.strip()
    now = now_iso()
    expires_at = to_iso(parse_iso(now) + timedelta(seconds=expires_in))
    asked = creation_hash(email, code, amount, memo, expires_in)
    if idempotency_key is not None:
        probe = PaymentRequest.new(
            facility_id=facility_id,
            payer_id="",
            payer_email=email,
            currency=code,
            amount=amount,
            memo=memo,
            expires_in=expires_in,
            at=now,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
        )
        existing = requests.get(probe.id)
        if existing is not None:
            return _same_creation(existing, asked)
    payer_id = payers.verified_user_id_for_email(email) if email else None
    if payer_id is None:
        raise RecipientNotFound("no user has this email")
    pr = PaymentRequest.new(
        facility_id=facility_id,
        payer_id=payer_id,
        payer_email=email,
        currency=code,
        amount=amount,
        memo=memo,
        expires_in=expires_in,
        at=now,
        expires_at=expires_at,
        idempotency_key=idempotency_key,
    )
    event = AuditEvent.new(
        "payment_request.created",
        at=now,
        actor_id=key_id,
        target=pr.id,
        ip=ip,
        facility_id=facility_id,
        amount=str(amount),
        currency=code,
    )
    try:
        requests.create(pr, event)
    except VersionConflict:
        existing = requests.get(pr.id) if idempotency_key is not None else None
        if existing is None:
            raise
        return _same_creation(existing, asked)  # the same key, raced: one request
    return pr


def _same_creation(existing: PaymentRequest, asked: str) -> PaymentRequest:
    if existing.creation != asked:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    return existing


@dataclass(frozen=True)
class Payment:
    """A pay's outcome: the request (``paid``, or still open and held), its payment (posted, or
    pending while ``review`` holds it) and the open review, if a risk rule held it."""

    request: PaymentRequest
    transaction: Transaction
    review: Review | None = None


AnswerWrites = Callable[
    [PaymentRequest, Review | None], Callable[[Transaction], Sequence[SideWrite]]
]


def pay(
    ledger: LedgerService,
    requests: PaymentRequestRepository,
    events: WebhookEvents,
    risk: Risk,
    *,
    payer: User,
    request_id: str,
    answer_writes: AnswerWrites | None = None,
) -> Payment:
    """Pay the request, as the risk rules allow (``services.risk.record_assessed``):

    * allowed: the money, the request ``paid`` and the ``payment_request.paid`` event in one
      write, at most once per request;
    * held for review: the money held (a ``pending`` payment), its open review and the request
      held by them (still open, with ``transaction_id`` and ``review_id``) in one write, and no
      event; the review's decision settles the request (``decision_writes``).

    ``answer_writes(request, review)`` (the route's replay record, for the transaction about to
    be written) is written with them.

    Raises:
        PaymentRequestNotFound: not the caller's request.
        PaymentRequestNotOpen: not open, expired, paid (by this or another request) already, or
            its payment held for review.
        RiskDeclined: a ``block`` rule fired; nothing written, the request stays open.
        InsufficientFunds: the payer's available balance does not cover it; nothing written.
    """
    pr = of_payer(requests, payer.id, request_id)
    now = now_iso()
    paid = pr.paid(now)  # PaymentRequestNotOpen before anything is assessed
    code = pr.currency
    transaction_id = pr.next_transaction_id
    outcome: dict[str, PaymentRequest] = {}

    def writes_for(
        candidate: Transaction, _verdict: object, review: Review | None
    ) -> list[SideWrite]:
        # Each attempt of the ledger's read-and-write loop holds the request to its own time
        # (the candidate's), not to ``now``: a request that expires while the payment is retried
        # is not paid.
        at = max(now, candidate.created_at)
        if review is None:
            state = pr.paid(at)
            event = WebhookEvent.about(
                WebhookEventType.PAYMENT_REQUEST_PAID, pr.id, pr.facility_id, at, state.view(at)
            )
            writes = [*requests.paid_writes(state, at), events.event(event)]
        else:
            state = pr.held_by(review.id, at)
            writes = list(requests.held_writes(state, at))
        outcome["request"] = state
        if answer_writes is not None:
            writes.extend(answer_writes(state, review)(candidate))
        return writes

    guarded = record_assessed(
        ledger,
        risk,
        Check(
            user_id=payer.id,
            operation=Operation.PAYMENT_REQUEST,
            amount=pr.amount,
            currency=code,
            at=now,
            recipient=f"facility:{pr.facility_id}",
            user_created_at=payer.created_at,
        ),
        transaction_id=transaction_id,
        type=TransactionType.PAYMENT,
        postings=[
            PostingRequest(wallet_id(OwnerType.USER, payer.id, code), code, -pr.amount),
            PostingRequest(wallet_id(OwnerType.FACILITY, pr.facility_id, code), code, pr.amount),
        ],
        memo=pr.memo,
        metadata={"payment_request_id": pr.id, "initiated_by": payer.id},
        extra_for=writes_for,
    )
    if not guarded.recorded.created:  # another pay of this request wrote the money first
        raise PaymentRequestNotOpen(f"payment request {pr.id} is paid already")
    return Payment(outcome.get("request", paid), guarded.recorded.transaction, guarded.review)


def decision_writes(
    requests: PaymentRequestRepository,
    transactions: Callable[[str], Transaction],
    events: WebhookEvents,
    clock: Callable[[], str],
) -> Callable[[Review], Sequence[SideWrite]]:
    """``Risk.on_decision[Operation.PAYMENT_REQUEST]``: the writes a risk review's decision adds
    for a held payment-request payment, in the write that posts or voids the hold.

    * approved: the request ``paid`` by that payment, and the ``payment_request.paid`` event;
    * rejected or expired: the request released (hold cleared, ``attempt`` + 1): open again for
      another payment with the next transaction id (or expired, if past ``expires_at``).

    The request is the one named by the payment's metadata (``payment_request_id``); the writes
    are conditioned on it still being held by that payment. Raises ReviewNotOpen when it no
    longer is (the review was decided meanwhile).
    """

    def writes(review: Review) -> Sequence[SideWrite]:
        txn = transactions(review.transaction_id)
        request_id = txn.metadata.get("payment_request_id", "")
        pr = requests.get(request_id) if request_id else None
        if pr is None or not pr.held or pr.transaction_id != review.transaction_id:
            raise ReviewNotOpen(f"review {review.id} was decided already")
        if review.status is not ReviewStatus.APPROVED:
            return requests.released_writes(pr, pr.released())
        at = clock()
        paid = pr.approved(at)
        event = WebhookEvent.about(
            WebhookEventType.PAYMENT_REQUEST_PAID, pr.id, pr.facility_id, at, paid.view(at)
        )
        return [*requests.approved_writes(paid), events.event(event)]

    return writes


def decline(
    requests: PaymentRequestRepository,
    events: WebhookEvents,
    *,
    payer_id: str,
    request_id: str,
    request: str | None = None,
) -> PaymentRequest:
    """The payer refuses it: ``declined`` and the ``payment_request.declined`` event in one write.

    ``request`` (``api.idempotency.request_mark``, when the call had an Idempotency-Key) is
    stored with the decision: the same call sent again after a lost answer gets the declined
    request instead of ``invalid_state``.

    Raises PaymentRequestNotFound, PaymentRequestNotOpen.
    """
    pr = of_payer(requests, payer_id, request_id)
    if pr.decided_by_request(PaymentRequestStatus.DECLINED, request):
        return pr
    now = now_iso()
    declined = pr.declined(now, request)
    event = WebhookEvent.about(
        WebhookEventType.PAYMENT_REQUEST_DECLINED,
        pr.id,
        pr.facility_id,
        now,
        declined.view(now),
    )
    return _decide(requests, declined, now, None, [events.event(event)], request)


def cancel(
    requests: PaymentRequestRepository,
    *,
    facility_id: str,
    key_id: str,
    request_id: str,
    ip: str | None,
    request: str | None = None,
) -> PaymentRequest:
    """The facility takes it back: ``cancelled`` and its audit event (actor: the API key) in
    one write. ``request``: as for ``decline``.

    Raises PaymentRequestNotFound, PaymentRequestNotOpen.
    """
    pr = of_facility(requests, facility_id, request_id)
    if pr.decided_by_request(PaymentRequestStatus.CANCELLED, request):
        return pr
    now = now_iso()
    cancelled = pr.cancelled(now, request)
    event = AuditEvent.new(
        "payment_request.cancelled",
        at=now,
        actor_id=key_id,
        target=pr.id,
        ip=ip,
        facility_id=facility_id,
    )
    return _decide(requests, cancelled, now, event, [], request)


def _decide(
    requests: PaymentRequestRepository,
    decided: PaymentRequest,
    now: str,
    event: AuditEvent | None,
    extra: Sequence[SideWrite],
    request: str | None,
) -> PaymentRequest:
    try:
        requests.decide(decided, now, event, extra)
    except PaymentRequestNotOpen:
        stored = requests.get(decided.id)
        if stored is not None and stored.decided_by_request(decided.status, request):
            return stored  # a twin of this call (same key) got there first
        raise
    return decided


def expire_due(requests: PaymentRequestRepository, now: str | None = None) -> list[str]:
    """Store ``expired`` on every open request past ``expires_at`` (out of the expiry queue).
    Safe to run again and alongside pays, declines and cancels: whichever writes first wins.
    Returns the ids expired by this run."""
    moment = now or now_iso()
    expired = []
    for pr in requests.due(moment):
        try:
            requests.decide(pr.expired(moment), moment, None)
        except PaymentRequestNotOpen:
            continue  # answered (or expired) meanwhile: the index was behind
        expired.append(pr.id)
    return expired


def _checked_status(status: str | None) -> PaymentRequestStatus | None:
    if status is None:
        return None
    if status not in STATUSES:
        raise InvalidRequest(
            f"status must be one of {', '.join(STATUSES)}",
            [{"field": "status", "message": "unknown status"}],
        )
    return PaymentRequestStatus(status)


def list_of_payer(
    requests: PaymentRequestRepository,
    user_id: str,
    status: str | None,
    limit: int,
    cursor: str | None,
    since: str | None = None,
    until: str | None = None,
) -> PaymentRequestPage:
    """The user's requests, newest first, optionally of one status (as of now), created from
    ``since`` to ``until`` (inclusive, canonical ISO).

    Raises InvalidRequest (an unknown status), ValueError (a cursor this query did not return).
    """
    wanted = _checked_status(status)
    now = now_iso()
    found, next_cursor = requests.of_payer(
        user_id, wanted, now, max(1, min(limit, MAX_PAGE)), cursor, since, until
    )
    return PaymentRequestPage(found, next_cursor, now)


def list_of_facility(
    requests: PaymentRequestRepository,
    facility_id: str,
    status: str | None,
    limit: int,
    cursor: str | None,
    since: str | None = None,
    until: str | None = None,
) -> PaymentRequestPage:
    """The facility's requests, newest first, optionally of one status (as of now), created
    from ``since`` to ``until`` (inclusive, canonical ISO).

    Raises InvalidRequest (an unknown status), ValueError (a cursor this query did not return).
    """
    wanted = _checked_status(status)
    now = now_iso()
    found, next_cursor = requests.of_facility(
        facility_id, wanted, now, max(1, min(limit, MAX_PAGE)), cursor, since, until
    )
    return PaymentRequestPage(found, next_cursor, now)

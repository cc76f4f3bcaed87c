"""Domain errors, one per rule, named after the rule that failed.

The HTTP layer maps each class to a status and an error code in exactly one place
(``chalicelib/api/errors.py``); nothing here knows about HTTP.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every rule the ledger refuses to break."""


# -- input --------------------------------------------------------------------------------------
class InvalidAmount(LedgerError):
    """An amount is not a positive decimal string within the currency's precision."""


class UnsupportedCurrency(LedgerError):
    """A currency is not one the ledger supports."""


# -- transaction shape (checked before any I/O) ---------------------------------------------------
class PostingsEmpty(LedgerError):
    """A transaction needs at least two postings."""


class PostingAmountZero(LedgerError):
    """A posting must move a non-zero amount."""


class PostingsUnbalanced(LedgerError):
    """The postings of a transaction do not sum to zero for every currency."""


class DuplicateAccountInPostings(LedgerError):
    """An account appears in more than one posting of the same transaction."""


class TooManyPostings(LedgerError):
    """A transaction has more postings than fit in one atomic write."""


class CurrencyMismatch(LedgerError):
    """A posting's currency differs from its account's currency."""


# -- state ----------------------------------------------------------------------------------------
class AccountNotFound(LedgerError):
    """An account named in a posting does not exist."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id} does not exist")
        self.account_id = account_id


class InsufficientFunds(LedgerError):
    """A debit would take an overdraft-forbidden account's available balance below zero."""

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id} has insufficient available funds")
        self.account_id = account_id


class TransactionNotFound(LedgerError):
    """No transaction has this id."""


class TransactionAlreadyExists(LedgerError):
    """The transaction id is already written (the operation happened before)."""


class TransactionExistsWithDifferentFields(LedgerError):
    """The transaction id is taken by a transaction with other postings or type."""


class HoldNotPending(LedgerError):
    """Only a pending transaction (a hold) can be posted or voided, and only once."""

    def __init__(self, transaction_id: str, status: str) -> None:
        super().__init__(f"transaction {transaction_id} is {status}, not pending")
        self.transaction_id = transaction_id
        self.status = status


class AlreadyReversed(LedgerError):
    """A transaction is reversed at most once."""


class NotReversible(LedgerError):
    """Only a posted transaction that is not itself a reversal can be reversed."""


class VersionConflict(LedgerError):
    """Concurrent writers kept changing the accounts; the bounded retries ran out."""


# -- requests -------------------------------------------------------------------------------------
class InvalidRequest(LedgerError):
    """The request body is malformed, has a wrong type, a missing or an unknown field."""

    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class PayloadTooLarge(LedgerError):
    """The request body is larger than 256 KiB."""


class InvalidState(LedgerError):
    """The resource is not in a state that allows this action."""


# -- identity and access --------------------------------------------------------------------------
class TermsNotAccepted(LedgerError):
    """Signing up requires ``accept_terms: true``."""


class WeakPassword(LedgerError):
    """A password must have at least 12 characters."""


class EmailTaken(LedgerError):
    """Another user already signed up with this email (compared case-insensitively)."""


class InvalidCredentials(LedgerError):
    """The email and password do not match a user."""


class MfaRequired(LedgerError):
    """This user has MFA on: a TOTP code (or a recovery code) is required."""


class InvalidTotp(LedgerError):
    """The TOTP code is wrong, expired, or was already used."""


class TotpSetupCodeWrong(LedgerError):
    """The code does not match the TOTP secret being set up (so MFA stays off)."""


class AccountSuspended(LedgerError):
    """The user is suspended."""


class TooManyAttempts(LedgerError):
    """Too many failed logins; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after} seconds")
        self.retry_after = retry_after


class Unauthenticated(LedgerError):
    """The credentials (access or refresh token) are missing, invalid, expired or revoked."""


class Forbidden(LedgerError):
    """The caller is authenticated but may not do this."""


class EmailUnverified(LedgerError):
    """The caller's email is not verified yet, and this needs it (withdrawing)."""


class SessionNotFound(LedgerError):
    """The caller has no login with this id (another user's login answers the same)."""


class InvalidToken(LedgerError):
    """The password reset token is unknown, used or expired."""


# -- idempotent requests and money routes ---------------------------------------------------------
class IdempotencyKeyRequired(LedgerError):
    """A request that moves or reserves money needs an ``Idempotency-Key`` header (1-255 chars)."""


class IdempotencyKeyReused(LedgerError):
    """This Idempotency-Key was used by this caller with a different request body."""


class IdempotencyInProgress(LedgerError):
    """The first request with this Idempotency-Key is still running; retry shortly."""


class IdempotencyRaced(IdempotencyInProgress):
    """Another request with this Idempotency-Key stored its answer while this one ran; nothing
    of this one was written (its answer is the stored one)."""


class RecipientNotFound(LedgerError):
    """No user with that email, or no facility with that id, can receive the transfer."""


# -- withdrawals ----------------------------------------------------------------------------------
class WithdrawalNotFound(LedgerError):
    """No withdrawal with this id belongs to the caller."""


class AdjustmentNotFound(LedgerError):
    """No adjustment with this id."""


class AmountBelowMinimum(LedgerError):
    """The withdrawal is smaller than the currency's minimum."""


class WithdrawalLimitExceeded(LedgerError):
    """The withdrawal would exceed the user's daily withdrawal limit for the currency."""


class WithdrawalNotPendingReview(InvalidState):
    """Only a withdrawal pending review can be approved, cancelled, rejected or expired."""


class WithdrawalNotProcessing(InvalidState):
    """Only a processing withdrawal (approved, its payout owed) can complete or fail."""


# -- payment requests -----------------------------------------------------------------------------
class PaymentRequestNotFound(LedgerError):
    """No payment request with this id is the caller's (the payer's, or the facility's)."""


class PaymentRequestNotOpen(InvalidState):
    """Only an open payment request, before it expires, can be paid, declined or cancelled."""


# -- currency exchange (fx) -----------------------------------------------------------------------
class RateUnavailable(LedgerError):
    """No exchange rate is available for this currency pair and direction."""


class SameCurrencySwap(InvalidRequest):
    """A swap needs two different currencies."""


class ConvertedAmountOutOfRange(InvalidAmount):
    """The converted amount must be at least one minor unit and have at most 18 integer digits."""


class QuoteNotFound(LedgerError):
    """No quote with this id belongs to the caller."""


class QuoteExpired(LedgerError):
    """The quote is no longer valid; ask for a new one."""


class QuoteUsed(LedgerError):
    """The quote was already executed by a swap; a quote executes at most once."""


# -- provider webhooks ----------------------------------------------------------------------------
class InvalidWebhook(LedgerError):
    """The webhook's signature is missing, wrong or stale, or its body cannot be read."""


class WebhookEventSeen(LedgerError):
    """This provider event was recorded before; a redelivery changes nothing."""


# -- deposits -------------------------------------------------------------------------------------
class DepositNotFound(LedgerError):
    """No deposit with this id belongs to the caller."""


class RefundExceedsDeposit(LedgerError):
    """A refund may not exceed what is left to refund of the deposit (credited, less the
    refunds already made or in flight)."""


class ProviderRefused(LedgerError):
    """The payment provider refused the operation for good (e.g. the charge is disputed)."""


class ProviderUnavailable(LedgerError):
    """The payment provider could not be reached or failed; nothing was lost and the request is
    safe to retry with the same Idempotency-Key."""


# -- reconciliation -------------------------------------------------------------------------------
class ReconciliationNotFound(LedgerError):
    """No reconciliation ran for this date."""


# -- operators ------------------------------------------------------------------------------------
class UserNotFound(LedgerError):
    """No user has this id."""


class CannotSuspendSelf(Forbidden):
    """An admin may not suspend their own account (another admin can), as they may not change
    their own role."""


# -- facilities and their API keys ----------------------------------------------------------------
class FacilityNotFound(LedgerError):
    """No facility has this id."""


class ApiKeyNotFound(LedgerError):
    """The facility has no API key with this id."""


class InvalidWebhookUrl(InvalidRequest):
    """A webhook endpoint's URL that we will not send to (domain/webhook_urls.py)."""


class WebhookEndpointNotFound(LedgerError):
    """The facility has no webhook endpoint with this id."""


class WebhookDeliveryNotFound(LedgerError):
    """The facility has no webhook delivery with this id."""


class RateLimited(LedgerError):
    """This API key made as many requests as it may in the current minute; retry after
    ``retry_after`` seconds."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            f"this API key may make {limit} requests per minute; retry after {retry_after} seconds"
        )
        self.limit = limit
        self.retry_after = retry_after


# -- balance monitors -----------------------------------------------------------------------------
class MonitorNotFound(LedgerError):
    """No balance monitor has this id."""


# -- risk -----------------------------------------------------------------------------------------
class RiskDeclined(LedgerError):
    """A risk rule declined the operation; nothing moved."""

    def __init__(self, rule_id: str) -> None:
        super().__init__("the operation was declined by a risk rule; nothing moved")
        self.rule_id = rule_id


class RiskCounterChanged(VersionConflict):
    """The user's risk counter changed since it was read: the operation is assessed again."""


class RulesVersionConflict(LedgerError):
    """The risk rules changed since the version the change was based on; read them again."""


class ReviewNotFound(LedgerError):
    """No review has this id."""


class ReviewNotOpen(InvalidState):
    """The review was decided already (approved, rejected or expired)."""


# -- payroll payouts ------------------------------------------------------------------------------
class PayrollNotFound(LedgerError):
    """The facility has no payout batch with this id."""


class PayrollChanged(LedgerError):
    """Another run of the same payout batch (its retry, the scheduled finisher) decided this
    first; nothing was written and the request is safe to retry."""

"""``/v1/accounts`` and ``/v1/transactions`` (API.md, "Accounts and history"): the caller's
accounts, their entries and the transactions the caller takes part in. Parse, call
``chalicelib.services.accounts``, answer with the views of ``chalicelib.api.views``."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from chalice import Blueprint
from chalice.app import MultiDict

from chalicelib.adapters.clock import parse_iso, to_iso
from chalicelib.api import responses
from chalicelib.api.access import current_principal, protected
from chalicelib.api.dependencies import get_bound_settings
from chalicelib.api.views import account_view, entry_view, transaction_view
from chalicelib.domain.errors import InvalidRequest
from chalicelib.services import accounts as service

if TYPE_CHECKING:
    from chalicelib.adapters.dynamo.ledger_repository import DynamoLedgerRepository

accounts = Blueprint(__name__)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Cursors this API hands out are ~200 characters; a longer one is not ours.
MAX_CURSOR_LENGTH = 512
# to_iso writes years before 1000 without zero padding, which would break the key order.
EARLIEST_YEAR = 1000
_LIMIT = re.compile(r"[0-9]{1,3}")


def get_ledger_repository() -> DynamoLedgerRepository:
    """The ledger repository, reading the configured table. Built per call: it holds no state,
    and ``get_bound_settings`` (cached, cleared by ``dependencies.reset``) binds the models."""
    from chalicelib.adapters.dynamo.ledger_repository import DynamoLedgerRepository

    get_bound_settings()
    return DynamoLedgerRepository()


@dataclass(frozen=True)
class ListQuery:
    """A list route's query: page size, cursor, and the inclusive time range as canonical ISO."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    since: str | None = None
    until: str | None = None


def query_param(params: MultiDict | None, name: str) -> str | None:
    """One optional query parameter (a list route's filter). Raises InvalidRequest if repeated."""
    if params is None or name not in params:
        return None
    values = params.getlist(name)
    if len(values) != 1:
        raise InvalidRequest(
            "query parameters are not valid",
            [{"field": name, "message": "must be given at most once"}],
        )
    return values[0]


def parse_list_query(params: MultiDict | None) -> ListQuery:
    """``limit`` (1-100, default 20), ``cursor``, ``from`` and ``to`` (ISO-8601 instants with an
    offset or ``Z``); other parameters are ignored.

    Raises:
        InvalidRequest: a value is malformed, empty or given twice, or ``from`` is after ``to``
            (every problem is listed in ``details``).
    """
    problems: list[dict[str, str]] = []

    def single(name: str) -> str | None:
        if params is None or name not in params:
            return None
        values = params.getlist(name)
        if len(values) != 1:
            problems.append({"field": name, "message": "must be given at most once"})
            return None
        return values[0]

    limit = DEFAULT_LIMIT
    raw_limit = single("limit")
    if raw_limit is not None:
        if _LIMIT.fullmatch(raw_limit) and 1 <= int(raw_limit) <= MAX_LIMIT:
            limit = int(raw_limit)
        else:
            problems.append(
                {"field": "limit", "message": f"must be an integer from 1 to {MAX_LIMIT}"}
            )

    cursor = single("cursor")
    if cursor is not None and not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        problems.append({"field": "cursor", "message": "is not a cursor this API returned"})
        cursor = None

    since = _instant("from", single("from"), problems)
    until = _instant("to", single("to"), problems)
    if since is not None and until is not None and since > until:
        problems.append({"field": "from", "message": "must not be after to"})

    if problems:
        raise InvalidRequest("query parameters are not valid", problems)
    return ListQuery(limit=limit, cursor=cursor, since=since, until=until)


def _instant(name: str, raw: str | None, problems: list[dict[str, str]]) -> str | None:
    if raw is None:
        return None
    try:
        moment = parse_iso(raw).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset pushes it past year 1 or 9999
        moment = None
    if moment is None or moment.year < EARLIEST_YEAR:
        problems.append(
            {"field": name, "message": 'must be an ISO-8601 instant, e.g. "2026-11-23T10:00:00Z"'}
        )
        return None
    return to_iso(moment)


def _caller_id() -> str:
    return current_principal().user.id


def _query() -> ListQuery:
    return parse_list_query(accounts.current_request.query_params)


def _wallets_ahead(request: Any, user_id: str) -> None:
    service.read_ahead_wallets(get_ledger_repository(), user_id)


def _account_ahead(request: Any, user_id: str) -> None:
    service.read_ahead_account(get_ledger_repository(), request.uri_params["account_id"])


@accounts.route("/v1/accounts", methods=["GET"])
@protected(accounts, read_ahead=_wallets_ahead)
def list_accounts() -> dict[str, Any]:
    found = service.accounts_of_user(get_ledger_repository(), _caller_id())
    return responses.AccountList(data=[account_view(a) for a in found], next_cursor=None).body()


@accounts.route("/v1/accounts/{account_id}", methods=["GET"])
@protected(accounts, read_ahead=_account_ahead)
def get_account(account_id: str) -> dict[str, Any]:
    account = service.account_of_user(get_ledger_repository(), _caller_id(), account_id)
    return responses.AccountAnswer(account=account_view(account)).body()


@accounts.route("/v1/accounts/{account_id}/entries", methods=["GET"])
@protected(accounts, read_ahead=_account_ahead)
def list_entries(account_id: str) -> dict[str, Any]:
    query = _query()
    history = service.history_of_account(
        get_ledger_repository(), _caller_id(), account_id, **asdict(query)
    )
    currency = history.account.currency
    return responses.EntryPage(
        data=[entry_view(e, currency) for e in history.entries], next_cursor=history.next_cursor
    ).body()


@accounts.route("/v1/transactions", methods=["GET"])
@protected(accounts)
def list_transactions() -> dict[str, Any]:
    query = _query()
    page = service.transactions_of_user(get_ledger_repository(), _caller_id(), **asdict(query))
    return responses.TransactionPage(
        data=[transaction_view(t) for t in page.transactions], next_cursor=page.next_cursor
    ).body()


@accounts.route("/v1/transactions/{transaction_id}", methods=["GET"])
@protected(accounts)
def get_transaction(transaction_id: str) -> dict[str, Any]:
    txn = service.transaction_of_user(get_ledger_repository(), _caller_id(), transaction_id)
    return responses.TransactionAnswer(transaction=transaction_view(txn)).body()

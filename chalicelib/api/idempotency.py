"""``Idempotency-Key`` on every POST that moves or reserves money (API.md, "Conventions").

Two ways to keep the answer. ``replayable`` (most routes, Powertools): claim the key, run, store
the answer. ``replayed_with_money`` (the hot path, ``POST /v1/transfers``): read the key's record
in the request's first batch read, and write the answer in the same ``TransactWriteItems`` as the
money, so a transfer costs three round trips in all (DESIGN.md); see
``adapters/dynamo/replay_store.py``.

A retry with the same key, caller, path and body gets the original status and body back and moves
no money; the same key with another body (or path) answers ``409 idempotency_key_reused``; while
the first request runs, ``409 idempotency_in_progress``. Refusals (a 422, a 404) are replayed like
successes, as Stripe does; a 5xx is not stored, so the retry runs again. Records live 24 hours;
past that, the engine's derived transaction ids still keep money from moving twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.api import errors
from chalicelib.api.access import (
    ACCESS_DEFERRED,
    current_principal,
    current_user_id,
)
from chalicelib.api.dependencies import get_idempotent_runner, get_replay_store
from chalicelib.api.middleware import request_id_of
from chalicelib.domain.errors import (
    IdempotencyInProgress,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    IdempotencyRaced,
    LedgerError,
)

if TYPE_CHECKING:
    from chalicelib.adapters.dynamo.replay_store import StoredAnswer
    from chalicelib.domain.transactions import Transaction

# Answers that say "safe to retry" are never a key's answer (API.md, "Conventions").
RETRY_CODES = frozenset({"conflict", "idempotency_in_progress"})

MAX_KEY_LENGTH = 255
HEADER = "idempotency-key"


def idempotency_key(blueprint: Blueprint) -> str:
    key = blueprint.current_request.headers.get(HEADER, "")
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise IdempotencyKeyRequired(
            f"send an Idempotency-Key header of 1 to {MAX_KEY_LENGTH} characters"
        )
    return key


def request_mark(blueprint: Blueprint, scope: str, caller_id: str) -> str:
    """A mark of this request (scope, caller, Idempotency-Key) to store on what it writes, so
    that its retry, after an answer lost once the write had committed, recognises its own write
    instead of refusing it as done by someone else."""
    material = f"{scope}\x1f{caller_id}\x1f{idempotency_key(blueprint)}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def optional_request_mark(blueprint: Blueprint, scope: str, caller_id: str) -> str | None:
    """``request_mark`` on a route where the Idempotency-Key is optional (a decision that moves
    no money by itself: cancel, approve, reject); None without the header."""
    if not blueprint.current_request.headers.get(HEADER):
        return None
    return request_mark(blueprint, scope, caller_id)


def _fingerprint(raw: bytes | None) -> str:
    """The body as compared between a request and its retry (JSON key order does not matter)."""
    text = (raw or b"").decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return text


def _request_fingerprint(request: Any) -> str:
    # The path's parameters are part of what must match: the same key sent to refund another
    # deposit is a reused key, not a replay of the first refund.
    params = json.dumps(request.uri_params or {}, sort_keys=True)
    return f"{params}\n{_fingerprint(request.raw_body)}"


def _signed_in_user() -> str:
    return current_principal().user.id


def replayable(
    blueprint: Blueprint, scope: str, caller_of: Callable[[], str] = _signed_in_user
) -> Callable[[Callable[..., Any]], Callable]:
    """Decorator for a money route, below ``protected``/``admin_only`` (or ``facility_only``,
    with ``caller_of`` naming the facility: a key is its caller's own)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            request = blueprint.current_request
            key = idempotency_key(blueprint)
            caller = caller_of()

            def execute() -> dict[str, Any]:
                try:
                    response = view(*args, **kwargs)
                except LedgerError as exc:
                    failure = errors.http_error_for(exc)
                    if failure.status >= 500 or failure.code in RETRY_CODES:
                        raise  # "safe to retry": the record is dropped so a retry runs again
                    if isinstance(exc, IdempotencyKeyReused):
                        # The view found the key's earlier request (its record had expired):
                        # that request, not this one, keeps the key.
                        raise
                    response = errors.exception_response(exc, request_id_of(request))
                if not isinstance(response, Response):
                    response = Response(body=response)
                return {"status": response.status_code, "body": response.body}

            run, config = get_idempotent_runner()
            config.register_lambda_context(blueprint.lambda_context)
            fingerprint = _request_fingerprint(request)
            payload = {"key": f"{scope}:{caller}:{key}", "body": fingerprint}
            from aws_lambda_powertools.utilities.idempotency.exceptions import (
                IdempotencyAlreadyInProgressError,
                IdempotencyValidationError,
            )

            try:
                stored = run(request=payload, execute=execute)
            except IdempotencyValidationError as exc:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with a different request"
                ) from exc
            except IdempotencyAlreadyInProgressError as exc:
                raise IdempotencyInProgress(
                    "a request with this Idempotency-Key is still running; retry shortly"
                ) from exc
            return Response(body=stored["body"], status_code=stored["status"])

        return wrapper

    return decorate


# -- answers stored with the money ---------------------------------------------------------------
Answer = tuple[int, Any]  # status, JSON body


@dataclass
class MoneyReplay:
    """The replay record a route writes with its money (``replayed_with_money``)."""

    record: str
    request_hash: str
    now: int
    written: bool = False

    def writes_for(
        self, answer: Callable[[Transaction], Answer]
    ) -> Callable[[Transaction], Sequence]:
        """For ``LedgerService.record(extra_for=...)``: the record holding the answer the route
        will give for the transaction about to be written."""
        from chalicelib.adapters.dynamo.replay_store import StoredAnswer

        def writes(txn: Transaction) -> Sequence:
            stored = StoredAnswer(*answer(txn), self.request_hash)
            return [get_replay_store().write_with_money(self.record, stored, self.now)]

        return writes

    def stored_with_money(self, created: bool) -> None:
        """Tell the decorator whether the money (and with it the record) was written now."""
        self.written = created


_money_replay: ContextVar[MoneyReplay | None] = ContextVar("money_replay", default=None)


def current_money_replay() -> MoneyReplay:
    replay = _money_replay.get()
    if replay is None:  # the view is not decorated with replayed_with_money: a bug
        raise RuntimeError("route is not decorated with replayed_with_money")
    return replay


def replayed_with_money(
    blueprint: Blueprint, scope: str, read_ahead: Callable[[Any], None] | None = None
) -> Callable[[Callable[..., Any]], Callable]:
    """Decorator for a money route whose answer is written with its money, below ``protected``.

    ``read_ahead(request)`` may name items the view will read, for the same batch read as the
    caller and the replay record. The view writes its money with
    ``current_money_replay().writes_for(answer)`` and reports ``stored_with_money(created)``;
    any other answer (a refusal, a transaction that existed already) is stored here afterwards.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            request = blueprint.current_request
            store = get_replay_store()
            key = request.headers.get(HEADER, "")
            valid = 1 <= len(key) <= MAX_KEY_LENGTH
            record = store.record_key(scope, current_user_id(), key)
            if valid:
                store.want(record)
                if read_ahead is not None:
                    read_ahead(request)
            current_principal()  # 401/403 come first; one batch read with the items above
            if not valid:
                idempotency_key(blueprint)  # raises IdempotencyKeyRequired
            fingerprint = store.request_hash(_request_fingerprint(request))
            now = int(time.time())
            found = store.find(record, now)
            if found is not None:
                return _replay(found, fingerprint)
            replay = MoneyReplay(record, fingerprint, now)
            token = _money_replay.set(replay)
            try:
                response = view(*args, **kwargs)
            except IdempotencyRaced:
                return _stored_answer(record, fingerprint, now)
            except LedgerError as exc:
                failure = errors.http_error_for(exc)
                if failure.status >= 500 or failure.code in RETRY_CODES:
                    raise
                response = errors.exception_response(exc, request_id_of(request))
            finally:
                _money_replay.reset(token)
            if not isinstance(response, Response):
                response = Response(body=response)
            if replay.written or response.status_code >= 500:
                return response
            from chalicelib.adapters.dynamo.replay_store import StoredAnswer

            answer = StoredAnswer(response.status_code, response.body, fingerprint)
            if store.save(record, answer, now):
                return response
            return _stored_answer(record, fingerprint, now)

        setattr(wrapper, ACCESS_DEFERRED, True)
        return wrapper

    return decorate


def _replay(found: StoredAnswer, fingerprint: str) -> Response:
    if found.request_hash != fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request")
    return Response(body=found.body, status_code=found.status)


def _stored_answer(record: str, fingerprint: str, now: int) -> Response:
    """Another request with the key stored its answer first: that is the key's answer."""
    found = get_replay_store().find(record, now)
    if found is None:  # stored and expired in between: nothing to replay, nothing written
        raise IdempotencyInProgress("a request with this Idempotency-Key is still running")
    return _replay(found, fingerprint)

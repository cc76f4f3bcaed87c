"""Crypto deposits: the user's deposit address (``/v1/deposits/crypto/address``) and the crypto
gateway's webhook (``/v1/webhooks/crypto``, public: its caller proves itself with
``X-Signature``)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api import responses
from chalicelib.api.access import current_principal, protected
from chalicelib.api.dependencies import (
    get_address_repository,
    get_bound_settings,
    get_crypto_gateway,
    get_inbox,
    get_ledger_service,
    get_payout_repository,
    get_withdrawal_repository,
)
from chalicelib.api.log import logger
from chalicelib.api.requests import parse_body

crypto = Blueprint(__name__)


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import crypto as module

    return module


@crypto.route("/v1/deposits/crypto/address", methods=["POST"])
@protected(crypto)
def deposit_address() -> dict[str, Any]:
    from chalicelib.api.crypto_schemas import AddressRequest

    body = parse_body(crypto.current_request, AddressRequest)
    code, address = service().deposit_address(
        get_crypto_gateway(), get_address_repository(), current_principal().user, body.currency
    )
    return responses.AddressAnswer(address=responses.Address(currency=code, address=address)).body()


@crypto.route("/v1/webhooks/crypto", methods=["POST"])
def crypto_webhook() -> dict[str, Any]:
    request = crypto.current_request
    secret, _ = get_bound_settings().crypto_secrets()
    event = service().verify(request.raw_body or b"", request.headers.get("x-signature"), secret)
    stores = service().CryptoStores(
        inbox=get_inbox(),
        addresses=get_address_repository(),
        withdrawals=get_withdrawal_repository(),
        payouts=get_payout_repository(),
    )
    outcome = service().handle(get_ledger_service(), stores, event)
    logger.info("crypto webhook processed", event_type=event.type, outcome=outcome)
    return responses.CryptoReceived(received=True, outcome=outcome).body()

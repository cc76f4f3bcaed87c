"""Facilities' API access (API.md, "Facilities"): admins issue, list and revoke a facility's API
keys; a facility calls its own routes with one (``facility_only``). Parse, call
``chalicelib.services.api_keys`` (or ``.accounts`` for what a facility reads), answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.access import admin_only, current_facility, current_principal, facility_only
from chalicelib.api.accounts import get_ledger_repository, parse_list_query
from chalicelib.api.dependencies import (
    get_api_key_repository,
    get_bound_settings,
    get_facility_repository,
    get_gateway_keys,
)
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.api.views import account_view, transaction_view
from chalicelib.domain.api_keys import ApiKey
from chalicelib.domain.errors import FacilityNotFound

facility = Blueprint(__name__)


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import facility_schemas

    return facility_schemas


def service():  # type: ignore[no-untyped-def]
    from chalicelib.services import api_keys

    return api_keys


def api_key_view(key: ApiKey) -> responses.ApiKey:
    return responses.ApiKey(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=[str(scope) for scope in key.scopes],
        status=str(key.status),
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
        rate_limit_per_minute=key.limit(get_bound_settings().facility_rate_limit_per_minute),
    )


@facility.route("/v1/admin/facilities/{facility_id}/api-keys", methods=["POST"])
@admin_only(facility)
def create_api_key(facility_id: str) -> Response:
    body = parse_body(facility.current_request, schemas().NewApiKey)
    key, secret = service().issue_key(
        get_api_key_repository(),
        get_facility_repository(),
        facility_id,
        body.name,
        body.scopes,
        rate_limit_per_minute=body.rate_limit_per_minute,
        admin_id=current_principal().user.id,
        ip=source_ip(facility.current_request),
        gateway=get_gateway_keys(),
    )
    answer = responses.NewApiKeyAnswer(api_key=api_key_view(key), secret=secret)
    return Response(answer.body(), status_code=201)


@facility.route("/v1/admin/facilities/{facility_id}/api-keys", methods=["GET"])
@admin_only(facility)
def list_api_keys(facility_id: str) -> dict[str, Any]:
    found = service().keys_of_facility(
        get_api_key_repository(), get_facility_repository(), facility_id
    )
    return responses.ApiKeyPage(data=[api_key_view(k) for k in found], next_cursor=None).body()


@facility.route("/v1/admin/facilities/{facility_id}/api-keys/{key_id}/revoke", methods=["POST"])
@admin_only(facility)
def revoke_api_key(facility_id: str, key_id: str) -> dict[str, Any]:
    parse_body(facility.current_request, schemas().RequestBody)
    key = service().revoke_key(
        get_api_key_repository(),
        get_facility_repository(),
        facility_id,
        key_id,
        admin_id=current_principal().user.id,
        ip=source_ip(facility.current_request),
        gateway=get_gateway_keys(),
    )
    return responses.ApiKeyAnswer(api_key=api_key_view(key)).body()


@facility.route("/v1/facility", methods=["GET"])
@facility_only(facility, scope="read")
def get_own_facility() -> dict[str, Any]:
    from chalicelib.services import accounts, facilities

    facility_id = current_facility().facility_id
    found = facilities.get_facility(get_facility_repository(), facility_id)
    if found is None:  # a key outlived its facility: nothing to show
        raise FacilityNotFound(f"facility {facility_id} does not exist")
    owned = accounts.accounts_of_facility(get_ledger_repository(), facility_id)
    return responses.FacilityOverview(
        facility=responses.Facility(id=found.id, name=found.name),
        accounts=[account_view(a) for a in owned],
    ).body()


@facility.route("/v1/facility/transactions", methods=["GET"])
@facility_only(facility, scope="read")
def list_own_transactions() -> dict[str, Any]:
    from chalicelib.services import accounts

    query = parse_list_query(facility.current_request.query_params)
    page = accounts.transactions_of_facility(
        get_ledger_repository(), current_facility().facility_id, **asdict(query)
    )
    return responses.TransactionPage(
        data=[transaction_view(t) for t in page.transactions], next_cursor=page.next_cursor
    ).body()

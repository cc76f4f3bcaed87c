"""A facility's outbound webhooks (API.md, "Facilities" and "Outbound webhooks"): its endpoints
and the deliveries made to them, with an API key of scope ``webhooks``. Parse, call
``chalicelib.services.webhooks``, answer."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import dependencies, responses
from chalicelib.api.access import current_facility, facility_only
from chalicelib.api.accounts import parse_list_query, query_param
from chalicelib.api.requests import parse_body, source_ip
from chalicelib.domain.webhooks import WebhookDelivery, WebhookEndpoint

facility_webhooks = Blueprint(__name__)

ENDPOINTS = "/v1/facility/webhook-endpoints"
DELIVERIES = "/v1/facility/webhook-deliveries"


def schemas():  # type: ignore[no-untyped-def]
    from chalicelib.api import webhook_schemas

    return webhook_schemas


def endpoint_view(endpoint: WebhookEndpoint) -> responses.WebhookEndpoint:
    return responses.WebhookEndpoint(
        id=endpoint.id,
        url=endpoint.url,
        events=[str(t) for t in endpoint.events],
        status=str(endpoint.status),
        created_at=endpoint.created_at,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
    )


def delivery_view(delivery: WebhookDelivery) -> responses.WebhookDelivery:
    return responses.WebhookDelivery(
        id=delivery.id,
        event_id=delivery.event.id,
        event_type=str(delivery.event.type),
        endpoint_id=delivery.endpoint_id,
        status=str(delivery.status),
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
    )


@facility_webhooks.route(ENDPOINTS, methods=["POST"])
@facility_only(facility_webhooks, scope="webhooks")
def create_endpoint() -> Response:
    body = parse_body(facility_webhooks.current_request, schemas().NewWebhookEndpoint)
    caller = current_facility()
    endpoint, secret = dependencies.get_webhooks().create_endpoint(
        caller.facility_id,
        body.url,
        body.events,
        actor_id=caller.key.id,
        ip=source_ip(facility_webhooks.current_request),
    )
    answer = responses.NewWebhookEndpointAnswer(endpoint=endpoint_view(endpoint), secret=secret)
    return Response(answer.body(), status_code=201)


@facility_webhooks.route(ENDPOINTS, methods=["GET"])
@facility_only(facility_webhooks, scope="webhooks")
def list_endpoints() -> dict[str, Any]:
    found = dependencies.get_webhooks().endpoints(current_facility().facility_id)
    return responses.WebhookEndpointPage(
        data=[endpoint_view(e) for e in found], next_cursor=None
    ).body()


@facility_webhooks.route(ENDPOINTS + "/{endpoint_id}/disable", methods=["POST"])
@facility_only(facility_webhooks, scope="webhooks")
def disable_endpoint(endpoint_id: str) -> dict[str, Any]:
    parse_body(facility_webhooks.current_request, schemas().RequestBody)
    caller = current_facility()
    endpoint = dependencies.get_webhooks().disable_endpoint(
        caller.facility_id,
        endpoint_id,
        actor_id=caller.key.id,
        ip=source_ip(facility_webhooks.current_request),
    )
    return responses.WebhookEndpointAnswer(endpoint=endpoint_view(endpoint)).body()


@facility_webhooks.route(DELIVERIES, methods=["GET"])
@facility_only(facility_webhooks, scope="webhooks")
def list_deliveries() -> dict[str, Any]:
    params = facility_webhooks.current_request.query_params
    query = parse_list_query(params)
    endpoint_id = query_param(params, "endpoint_id")
    found, next_cursor = dependencies.get_webhooks().deliveries(
        current_facility().facility_id, endpoint_id or None, query.limit, query.cursor
    )
    return responses.WebhookDeliveryPage(
        data=[delivery_view(d) for d in found], next_cursor=next_cursor
    ).body()


@facility_webhooks.route(DELIVERIES + "/{delivery_id}/retry", methods=["POST"])
@facility_only(facility_webhooks, scope="webhooks")
def retry_delivery(delivery_id: str) -> Response:
    parse_body(facility_webhooks.current_request, schemas().RequestBody)
    delivery = dependencies.get_webhooks().retry(current_facility().facility_id, delivery_id)
    answer = responses.WebhookDeliveryAnswer(delivery=delivery_view(delivery))
    return Response(answer.body(), status_code=202)

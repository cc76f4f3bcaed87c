"""The deployed stage's outer rate guard: the gateway authorizer names each facility key by its
usage identifier, and issuing / revoking a key keeps the usage plan's API Gateway keys in step."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from chalicelib.adapters.api_gateway_keys import ApiGatewayKeys
from chalicelib.api.gateway_authorizer import handler
from chalicelib.domain.api_keys import not_a_facility_key, usage_identifier
from chalicelib.domain.errors import ProviderUnavailable

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/api/POST/v1/facility/payouts"
PREFIX = "0123456789abcdef"


def authorize(token: str) -> dict:
    return handler({"type": "TOKEN", "authorizationToken": token, "methodArn": ARN}, None)


def test_a_facility_secret_is_named_by_its_prefix_and_every_method_of_the_stage_allowed():
    answer = authorize(f"Bearer fk_{PREFIX}_secretpart")

    assert (
        answer["usageIdentifierKey"] == usage_identifier(PREFIX) == f"ledger-facility-key-{PREFIX}"
    )
    assert len(answer["usageIdentifierKey"]) >= 20  # API Gateway's minimum for a key's value
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": "arn:aws:execute-api:us-east-1:123456789012:abc123/api/*/*",
    }


@pytest.mark.parametrize(
    "token",
    [
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln",  # a user's access token
        "Bearer fk_notaprefix_x",
        "Basic Zm9vOmJhcg==",
        "",
        "Bearer " + "fk_" + "a" * 300,
    ],
)
def test_anything_else_goes_on_under_one_shared_identifier_for_the_app_to_answer(
    token: str, monkeypatch
):
    monkeypatch.setenv("STAGE", "prod")
    answer = authorize(token)

    assert answer["usageIdentifierKey"] == not_a_facility_key("prod")
    assert answer["usageIdentifierKey"] == "ledger-prod-not-a-facility-key"
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"


@pytest.fixture
def plan():
    with mock_aws():
        client = boto3.client("apigateway", region_name="us-east-1")
        plan_id = client.create_usage_plan(name="facility-keys")["id"]
        yield client, plan_id


def test_registering_a_key_puts_its_identifier_in_the_plan_once_however_often(plan):
    client, plan_id = plan
    keys = ApiGatewayKeys(plan_id, "us-east-1", client)

    keys.register(PREFIX, "fac_1")
    keys.register(PREFIX, "fac_1")  # a retried issue

    found = client.get_api_keys(includeValues=True)["items"]
    assert [(k["name"], k["value"]) for k in found] == [
        (usage_identifier(PREFIX), usage_identifier(PREFIX))
    ]
    in_plan = client.get_usage_plan_keys(usagePlanId=plan_id)["items"]
    assert [k["id"] for k in in_plan] == [found[0]["id"]]


def test_removing_a_key_deletes_it_and_removing_an_unknown_one_is_harmless(plan):
    client, plan_id = plan
    keys = ApiGatewayKeys(plan_id, "us-east-1", client)
    keys.register(PREFIX, "fac_1")

    keys.remove(PREFIX)
    keys.remove("fedcba9876543210")

    assert client.get_api_keys()["items"] == []


class UnreachableGateway:
    def get_api_keys(self, **kwargs):  # type: ignore[no-untyped-def]
        raise EndpointConnectionError(endpoint_url="https://apigateway.us-east-1.amazonaws.com")


def test_a_gateway_that_cannot_be_reached_is_a_provider_error_the_admin_can_retry():
    keys = ApiGatewayKeys("plan", "us-east-1", UnreachableGateway())

    with pytest.raises(ProviderUnavailable):
        keys.register(PREFIX, "fac_1")
    keys.remove(PREFIX)  # logged, not raised: the app refuses a revoked key anyway

"""API Gateway's authorizer for the facility routes of a deployed stage (its own small Lambda
function, ``FacilityKeyAuthorizer`` in infra/api.json; the local stack has no API Gateway).

It authenticates nothing: the app checks every key on every request (one read, revocation at
once). It only names the API Gateway key of the request's facility key, so that the stage's usage
plan throttles each facility key before any Lambda of the app runs (the outer guard; the app's
per-key limit in DynamoDB is the inner one). A secret shaped like ours (``fk_<prefix>_...``) is
named by its public prefix (``usage_identifier``); a prefix that no key ever had is unknown to the
gateway, which answers ``401 unauthenticated`` (``INVALID_API_KEY`` in
infra/api-gateway-responses.json). Anything else (a user's token, garbage) goes on under one shared
identifier (``not_a_facility_key``), so the app answers it exactly as it does locally (401 or 403).

Imports the standard library and one pure domain module only: it runs before each uncached
request of a facility, so its cold start is on that request's path. API Gateway caches its answer
per token for ``authorizerResultTtlInSeconds``; the policy therefore allows every method of the
stage, not just the one asked.
"""

from __future__ import annotations

import os
from typing import Any

from chalicelib.domain.api_keys import not_a_facility_key, parse_secret, usage_identifier


def stage_methods(method_arn: str) -> str:
    """``arn:...:execute-api:<region>:<account>:<api>/<stage>/<verb>/<path>`` -> every method
    of that stage (``.../<api>/<stage>/*/*``)."""
    head, _, route = method_arn.partition("/")
    stage = route.split("/", 1)[0]
    return f"{head}/{stage}/*/*"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A TOKEN authorizer: ``authorizationToken`` is the Authorization header."""
    scheme, _, credential = str(event.get("authorizationToken") or "").partition(" ")
    prefix = parse_secret(credential.strip()) if scheme.lower() == "bearer" else None
    if prefix is not None:
        identifier = usage_identifier(prefix)
    else:
        identifier = not_a_facility_key(os.environ.get("STAGE", "local"))
    return {
        "principalId": prefix or "not-a-facility-key",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": stage_methods(str(event["methodArn"])),
                }
            ],
        },
        "usageIdentifierKey": identifier,
    }

"""infra/: the templates lint clean, the table keeps its guarantees, the local table matches.

The table template is linted as it is. The gateway responses are a fragment that refers to
Chalice's ``RestAPI`` (it is merged into Chalice's template by ``chalice package
--merge-template``), so cfn-lint refuses it alone (E1020, unresolved Ref): it is linted merged
with a stand-in ``RestAPI``, and its shape is checked directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from infra.local.table import create_table

INFRA = Path(__file__).resolve().parents[2] / "infra"
TABLE_TEMPLATE = INFRA / "table.json"
GATEWAY_RESPONSES = INFRA / "api-gateway-responses.json"
SECURITY_HEADERS = {
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "Cache-Control",
    "X-Frame-Options",
}


# The cfn-lint installed next to this interpreter (requirements-dev.txt); cfnlint has no __main__.
CFN_LINT = Path(sys.executable).with_name("cfn-lint")


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFN_LINT), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def table_properties() -> dict:
    template = json.loads(TABLE_TEMPLATE.read_text())
    return template["Resources"]["LedgerTable"]["Properties"]


def test_table_template_passes_cfn_lint():
    result = cfn_lint(TABLE_TEMPLATE)

    assert result.returncode == 0, result.stdout + result.stderr


def test_table_is_on_demand_recoverable_protected_encrypted_and_expires_items():
    template = json.loads(TABLE_TEMPLATE.read_text())
    properties = table_properties()

    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["DeletionProtectionEnabled"] is True
    sse = properties["SSESpecification"]
    assert sse["SSEEnabled"] is True
    assert sse["SSEType"] == "KMS"
    assert sse["KMSMasterKeyId"] == {"Ref": "LedgerKey"}
    assert template["Resources"]["LedgerKey"]["Type"] == "AWS::KMS::Key"
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def gateway_responses() -> dict:
    fragment = json.loads(GATEWAY_RESPONSES.read_text())
    assert set(fragment) == {"x-amazon-apigateway-gateway-responses"}
    return fragment["x-amazon-apigateway-gateway-responses"]


def test_gateway_responses_answer_with_the_error_envelope():
    responses = gateway_responses()

    assert {"MISSING_AUTHENTICATION_TOKEN", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    for response in responses.values():
        headers = {
            name.removeprefix("gatewayresponse.header.") for name in response["responseParameters"]
        }
        assert headers >= SECURITY_HEADERS
        template = response["responseTemplates"]["application/json"]
        # Fill the variables API Gateway substitutes, then the body must be the envelope.
        body = json.loads(
            template.replace("$context.requestId", "req-1").replace(
                "$context.error.messageString", '"Forbidden"'
            )
        )
        assert set(body) == {"error"}
        assert set(body["error"]) == {"code", "message", "request_id"}
        assert body["error"]["request_id"] == "req-1"
    not_found = json.loads(
        responses["MISSING_AUTHENTICATION_TOKEN"]["responseTemplates"]["application/json"].replace(
            "$context.requestId", "req-1"
        )
    )
    assert not_found["error"]["code"] == "not_found"


def _key_schema(schema: list[dict]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


@pytest.mark.usefixtures("aws")
def test_local_table_definition_and_infra_stay_identical():
    client = boto3.client("dynamodb", region_name="us-east-1")
    create_table(client, "ledger-shape")
    described = client.describe_table(TableName="ledger-shape")["Table"]
    ttl = client.describe_time_to_live(TableName="ledger-shape")["TimeToLiveDescription"]
    expected = table_properties()

    assert _key_schema(described["KeySchema"]) == _key_schema(expected["KeySchema"])
    assert sorted(
        (a["AttributeName"], a["AttributeType"]) for a in described["AttributeDefinitions"]
    ) == sorted((a["AttributeName"], a["AttributeType"]) for a in expected["AttributeDefinitions"])
    assert {
        g["IndexName"]: (_key_schema(g["KeySchema"]), g["Projection"])
        for g in described["GlobalSecondaryIndexes"]
    } == {
        g["IndexName"]: (_key_schema(g["KeySchema"]), g["Projection"])
        for g in expected["GlobalSecondaryIndexes"]
    }
    assert described["BillingModeSummary"]["BillingMode"] == expected["BillingMode"]
    assert ttl["AttributeName"] == expected["TimeToLiveSpecification"]["AttributeName"]
    assert ttl["TimeToLiveStatus"] in {"ENABLED", "ENABLING"}

"""API Gateway keys of the facility usage plan (``services.api_keys.GatewayKeys``).

A deployed stage has a usage plan (``FacilityUsagePlan``, infra/api.json) that throttles each
facility key before the app runs: the gateway's authorizer names each request's key by its
usage identifier (``domain.api_keys.usage_identifier``), and this adapter keeps one API Gateway
key per facility key in the plan. botocore is imported only when a key is issued or revoked.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aws_lambda_powertools import Logger

from chalicelib.domain.api_keys import usage_identifier
from chalicelib.domain.errors import ProviderUnavailable

logger = Logger(child=True)


class NoGatewayKeys:
    """No API Gateway in front (the local stack, the tests): nothing to keep."""

    def register(self, prefix: str, facility_id: str) -> None:
        return None

    def remove(self, prefix: str) -> None:
        return None


class ApiGatewayKeys:
    def __init__(self, usage_plan_id: str, region: str, client: Any = None) -> None:
        self.usage_plan_id = usage_plan_id
        self.region = region
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import botocore.session

            session = botocore.session.get_session()
            self._client = session.create_client("apigateway", region_name=self.region)
        return self._client

    def register(self, prefix: str, facility_id: str) -> None:
        """Create the key (or find it, if a retry created it before) and add it to the plan."""
        value = usage_identifier(prefix)
        try:
            key_id = (
                self._find(value)
                or self.client.create_api_key(
                    name=value,
                    description=f"facility {facility_id}: the usage plan's name for key {prefix}",
                    enabled=True,
                    value=value,
                )["id"]
            )
            # ConflictException: in the plan already (a retried issue)
            with contextlib.suppress(self.client.exceptions.ConflictException):
                self.client.create_usage_plan_key(
                    usagePlanId=self.usage_plan_id, keyId=key_id, keyType="API_KEY"
                )
        except Exception as exc:
            raise ProviderUnavailable("API Gateway could not register the key; retry") from exc

    def remove(self, prefix: str) -> None:
        value = usage_identifier(prefix)
        try:
            key_id = self._find(value)
            if key_id is not None:
                self.client.delete_api_key(apiKey=key_id)
        except Exception:  # harmless: the app refuses a revoked key whatever the gateway says
            logger.exception("could not delete the API Gateway key", extra={"prefix": prefix})

    def _find(self, value: str) -> str | None:
        found = self.client.get_api_keys(nameQuery=value, includeValues=False, limit=2)
        for item in found.get("items", []):
            if item.get("name") == value:
                return str(item["id"])
        return None

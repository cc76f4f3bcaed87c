"""Request bodies of the risk routes (``/v1/admin/risk/rules``, ``/v1/admin/reviews``). Imported
on first use (see requests.py).

A rule is taken as any JSON object and checked by the domain (``domain.risk.parse_rules``), so
that every problem is named with its place (``rules.2.amount``) in ``error.details``; the
document still says what a rule is (``RULE_SCHEMA``), with amounts written per currency.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, WithJsonSchema

from chalicelib.api.auth_schemas import RequestBody
from chalicelib.api.fields import AMOUNT_SCHEMA, amount_per_currency
from chalicelib.domain.money import CURRENCIES
from chalicelib.domain.risk import (
    MAX_COUNT,
    MAX_HOURS,
    MAX_RULES,
    RULE_FIELDS,
    RuleAction,
    RuleKind,
)

RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "kind", "action"],
    "properties": {
        "id": {
            "type": "string",
            "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
            "description": "chosen by the admin, unique in the set",
        },
        "kind": {"type": "string", "enum": [k.value for k in RuleKind]},
        "action": {"type": "string", "enum": [a.value for a in RuleAction]},
        "currency": {"type": "string", "enum": sorted(CURRENCIES)},
        "amount": AMOUNT_SCHEMA,
        "count": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
        "hours": {"type": "integer", "minimum": 1, "maximum": MAX_HOURS},
        "user_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
    },
}
amount_per_currency("amount", "currency")(RULE_SCHEMA)
# Per kind, what ``domain.risk.parse_rules`` requires and refuses (a field a kind does not use may
# be absent or null), and an amount needs its currency: the document says what the code enforces.
# Optional fields may also be null (taken as absent); a field a kind requires may not.
_NOT_NULL = {
    name: dict(RULE_SCHEMA["properties"][name]) for name in ("currency", "amount", "count", "hours")
}
for _name in ("currency", "amount", "count", "hours", "user_id"):
    _prop = RULE_SCHEMA["properties"][_name]
    RULE_SCHEMA["properties"][_name] = {"anyOf": [_prop, {"type": "null"}]}
RULE_SCHEMA["allOf"].extend(
    [
        *(
            {
                "if": {"properties": {"kind": {"const": kind.value}}, "required": ["kind"]},
                "then": {
                    "required": [name for name, needed in fields.items() if needed],
                    "properties": {
                        **{
                            name: {"type": "null"}
                            for name in ("currency", "amount", "count", "hours")
                            if name not in fields
                        },
                        **{name: _NOT_NULL[name] for name, needed in fields.items() if needed},
                    },
                },
            }
            for kind, fields in RULE_FIELDS.items()
        ),
        {
            "if": {"properties": {"amount": {"type": "string"}}, "required": ["amount"]},
            "then": {"required": ["currency"], "properties": {"currency": _NOT_NULL["currency"]}},
        },
    ]
)
RULES_SCHEMA = {"type": "array", "maxItems": MAX_RULES, "items": RULE_SCHEMA}


class RulesChange(RequestBody):
    rules: Annotated[list[Any], WithJsonSchema(RULES_SCHEMA)]
    # The version the change starts from (GET's ``version``): a change based on an older version
    # is refused (409 version_conflict), so two admins cannot overwrite each other unseen.
    version: Annotated[
        int | None, Field(default=None, ge=0, description="the version this change is based on")
    ] = None


class ReviewRejection(RequestBody):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]

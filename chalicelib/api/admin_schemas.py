"""Request bodies of the operator routes (``/v1/admin/users``, ``/v1/admin/transactions``).
Imported on first use (see requests.py)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema

from chalicelib.api.auth_schemas import RequestBody
from chalicelib.api.fields import CurrencyAsSent, SignedAmountText
from chalicelib.api.responses import SIGNED_AMOUNT_PATTERN
from chalicelib.domain.money import CURRENCIES

# Not blank: the service strips whitespace (a no-break space too) and needs something left.
Reason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=500),
    Field(json_schema_extra={"pattern": "\\S"}),
]


class Rollback(RequestBody):
    reason: Reason
    force: bool = False  # let a user or facility account go negative (flagged) if it must


class Suspension(RequestBody):
    reason: Reason


class RoleChange(RequestBody):
    # Any string is taken; the service names the rule ("role must be user or admin").
    role: Annotated[
        str,
        StringConstraints(min_length=1, max_length=16),
        Field(json_schema_extra={"enum": ["user", "admin"]}),
    ]


class NewAdjustment(RequestBody):
    account_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    # A signed decimal string in the account's currency ("-12.50" takes money out); checked
    # against the currency by the service.
    amount: SignedAmountText
    reason: Reason


def _one_target(schema: dict[str, Any]) -> None:
    """The document says what the service enforces: a string ``account_id`` and no platform, or
    else (no ``account_id``, or null) a ``platform`` and a ``currency``; the threshold written with
    that currency's decimals. Said as if/then/else rules, without ``not``."""
    string = {"type": "string"}
    schema.setdefault("allOf", []).extend(
        [
            {
                "if": {"properties": {"account_id": string}, "required": ["account_id"]},
                "then": {"properties": {"platform": {"type": "null"}}},
                "else": {
                    "required": ["platform", "currency"],
                    "properties": {"platform": string, "currency": string},
                },
            },
            *(
                {
                    "if": {"properties": {"currency": {"const": code}}, "required": ["currency"]},
                    "then": {"properties": {"amount": {"pattern": _signed_pattern(spec.decimals)}}},
                }
                for code, spec in sorted(CURRENCIES.items())
            ),
        ]
    )


def _signed_pattern(decimals: int) -> str:
    fraction = f"(\\.[0-9]{{1,{decimals}}})?" if decimals else ""
    return f"^-?[0-9]{{1,18}}{fraction}$"


class NewMonitor(RequestBody):
    """A balance monitor: ``account_id``, or ``platform`` and ``currency``; the threshold
    ``amount`` is a signed decimal string of that currency (zero allowed)."""

    model_config = ConfigDict(json_schema_extra=_one_target)

    account_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    platform: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=32),
            Field(
                json_schema_extra={
                    "enum": ["stripe_clearing", "crypto_custody", "fx_pool", "fees", "adjustments"]
                }
            ),
        ]
        | None
    ) = None
    currency: CurrencyAsSent = None
    condition: Annotated[
        str,
        StringConstraints(min_length=1, max_length=16),
        Field(json_schema_extra={"enum": ["below", "above"]}),
    ]
    # Taken as sent: the domain names the rule a bad one breaks (a JSON number: invalid_amount).
    amount: Annotated[
        Any,
        WithJsonSchema(
            {
                "type": "string",
                "pattern": SIGNED_AMOUNT_PATTERN,
                "description": "The threshold: a signed decimal string of the monitor's "
                'currency; "0" and negative amounts are allowed',
                "examples": ["0.00", "-5000.00"],
            }
        ),
    ]
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None

"""A typed Python client generated from the running stack's ``GET /openapi.json`` and used for a
user's whole story: the document is proven usable by a client, not only valid.

The generator is openapi-python-client (pinned in requirements-dev.txt): it writes an httpx +
attrs package, one module per operation (named by its operationId) and one class per schema. It
is generated into a temporary folder for each run, so it always matches the document; a
generation warning (a schema it could not type, an operation it skipped) fails the test. The
only raw HTTP here is the crypto gateway's webhook, which is the provider's side, not a client's.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from infra.local.fake_gateway import deposit_event
from tests.e2e.test_local_stack import HOST, Stack, get, mailed_token, require_running
from tests.e2e.test_races_http import deliver, sign_up_and_log_in

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "ledger_api_client"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def client_package(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The generated package, imported from a folder of its own."""
    require_running(stack)
    folder = tmp_path_factory.mktemp("client")
    document = folder / "openapi.json"
    status, _, body = get(f"http://{HOST}:{stack.api}/openapi.json")
    assert status == 200, body
    document.write_text(json.dumps(body))
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=folder,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output, output  # every operation and schema typed
    sys.path.insert(0, str(folder))
    try:
        package = importlib.import_module(PACKAGE)
        package.document = body  # the document it was generated from, for AnswerCheck
        yield package
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


class AnswerCheck:
    """An httpx response hook: every raw answer the client receives is validated against the
    document's schema of its operation and status (the real answers of the story, not only what
    the generated classes happen to read)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"), path)
            # literal segments first: /v1/deposits/card before /v1/deposits/{deposit_id}
            for path in sorted(document["paths"], key=lambda p: p.count("{"))
        ]
        self.checked: list[str] = []
        self.problems: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        method, path = response.request.method.lower(), response.request.url.path
        template = next(t for pattern, t in self.templates if pattern.match(path))
        answers = self.document["paths"][template][method]["responses"]
        where = f"{method.upper()} {template} {response.status_code}"
        if str(response.status_code) not in answers:
            self.problems.append(f"{where}: status not in the document")
            return
        content = answers[str(response.status_code)].get("content")
        if content is not None:
            schema = content["application/json"]["schema"]
            validator = Draft202012Validator({**schema, "components": self.document["components"]})
            for error in validator.iter_errors(response.json()):
                self.problems.append(f"{where}: {error.message}")
        self.checked.append(where)


def operation(package: types.ModuleType, tag: str, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{tag}.{name}")


def test_a_users_story_through_the_generated_client(stack: Stack, client_package: Any):
    pkg = client_package
    models = importlib.import_module(f"{PACKAGE}.models")
    base_url = f"http://{HOST}:{stack.api}"
    check = AnswerCheck(pkg.document)
    hooks = {"event_hooks": {"response": [check]}}
    public = pkg.Client(
        base_url=base_url, raise_on_unexpected_status=True, timeout=60, httpx_args=hooks
    )

    # Sign up, verify the mailed token, log in: typed answers all the way.
    email = f"client-{uuid.uuid4().hex[:8]}@example.com"
    signed_up = operation(pkg, "auth", "sign_up").sync(
        client=public, body=models.SignUpBody(email=email, password=PASSWORD, accept_terms=True)
    )
    assert isinstance(signed_up, models.UserAnswer)
    assert signed_up.user.email == email
    assert signed_up.user.email_verified is False
    verified = operation(pkg, "auth", "verify_email").sync(
        client=public, body=models.VerifyEmailBody(token=mailed_token(stack, email))
    )
    assert isinstance(verified, models.UserAnswer)
    assert verified.user.email_verified is True
    tokens = operation(pkg, "auth", "login").sync(
        client=public, body=models.LoginBody(email=email, password=PASSWORD)
    )
    assert isinstance(tokens, models.TokenPair)
    user = pkg.AuthenticatedClient(
        base_url=base_url,
        token=tokens.access_token,
        raise_on_unexpected_status=True,
        timeout=60,
        httpx_args=hooks,
    )
    me = operation(pkg, "auth", "me").sync(client=user)
    assert me.user.id == signed_up.user.id

    # Money in: the crypto gateway confirms a deposit to the user's address.
    address = operation(pkg, "deposits", "deposit_address").sync(
        client=user,
        body=models.DepositAddressBody(currency=models.DepositAddressBodyCurrency.USDT),
    )
    assert isinstance(address, models.AddressAnswer)
    event = deposit_event(
        address.address.address, "USDT", "25", f"tx_{uuid.uuid4().hex}", f"evt_{uuid.uuid4().hex}"
    )
    assert deliver(stack, event)[0] == 200
    accounts = operation(pkg, "accounts", "list_accounts").sync(client=user)
    assert isinstance(accounts, models.AccountList)
    usdt = next(a for a in accounts.data if a.currency == models.AccountCurrency.USDT)
    assert usdt.available == "25.000000"

    # A transfer to another user, read back by its id and in the history.
    bob_email = f"client-bob-{uuid.uuid4().hex[:8]}@example.com"
    sign_up_and_log_in(stack, bob_email)
    sent = operation(pkg, "money", "create_transfer").sync(
        client=user,
        body=models.CreateTransferBody(
            amount="5.5", currency=models.CreateTransferBodyCurrency.USDT, to_email=bob_email
        ),
        idempotency_key=f"client-{uuid.uuid4().hex}",
    )
    assert isinstance(sent, models.TransactionAnswer)
    assert sent.transaction.status == models.TransactionStatus.POSTED
    again = operation(pkg, "accounts", "get_transaction").sync(
        client=user, transaction_id=sent.transaction.id
    )
    assert again.transaction.id == sent.transaction.id
    entries = operation(pkg, "accounts", "list_entries").sync(client=user, account_id=usdt.id)
    assert isinstance(entries, models.EntryPage)
    assert [e.amount for e in entries.data][:2] == ["-5.500000", "25.000000"]

    # A quote and its swap.
    quote = operation(pkg, "fx", "create_quote").sync(
        client=user,
        body=models.CreateQuoteBody(
            from_currency=models.CreateQuoteBodyFromCurrency.USDT,
            to_currency=models.CreateQuoteBodyToCurrency.USD,
            from_amount="2",
        ),
    )
    assert isinstance(quote, models.QuoteAnswer)
    swapped = operation(pkg, "fx", "create_swap").sync(
        client=user,
        body=models.CreateSwapBody(quote_id=quote.quote.id),
        idempotency_key=f"client-{uuid.uuid4().hex}",
    )
    assert swapped.transaction.type_ == models.TransactionType.SWAP  # `type` is a builtin

    # A withdrawal, read and cancelled while it waits for review.
    asked = operation(pkg, "withdrawals", "request_withdrawal").sync(
        client=user,
        body=models.RequestWithdrawalBody(
            amount="10",  # the USDT minimum
            currency=models.RequestWithdrawalBodyCurrency.USDT,
            destination="TXYZ1234567890abcdef",
        ),
        idempotency_key=f"client-{uuid.uuid4().hex}",
    )
    assert isinstance(asked, models.WithdrawalAnswer)
    withdrawal_id = asked.withdrawal.id
    read = operation(pkg, "withdrawals", "get_withdrawal").sync(
        client=user, withdrawal_id=withdrawal_id
    )
    assert read.withdrawal.status == models.WithdrawalStatus.PENDING_REVIEW
    cancelled = operation(pkg, "withdrawals", "cancel_withdrawal").sync(
        client=user, withdrawal_id=withdrawal_id
    )
    assert cancelled.withdrawal.status == models.WithdrawalStatus.CANCELLED

    # An error is typed too: the envelope of API.md.
    missing = operation(pkg, "accounts", "get_transaction").sync(
        client=user, transaction_id="txn_nothing"
    )
    assert isinstance(missing, models.Error)
    assert missing.error.code == "not_found"
    assert missing.error.request_id

    # Every raw answer above matched the document's schema of its operation and status.
    assert check.problems == []
    assert len(check.checked) >= 15, check.checked

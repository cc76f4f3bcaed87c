"""The local stack, as a developer runs it: ``python -m infra.local.stack`` on free 127.0.0.1 ports.

It must answer health and the 404 envelope through HTTP, serve the Stripe fake and the table, let
the seeded admin log in with a TOTP code and mail a reset token into the mail folder, move crypto
in and out through the fake crypto gateway process with exact balances, and stop completely on
Ctrl-C: exit 0, every child gone, every port free again.

The stack starts once for the module (``stack``); the tests that use it run in file order, and
the last one stops it.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pyotp
import pytest

from infra.local import stack as stack_module

pytestmark = pytest.mark.e2e

PROJECT_DIR = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15
# The seeded admin (API.md, "The local stack").
ADMIN_EMAIL = "admin@local.test"
ADMIN_PASSWORD = "local-admin-password"
ADMIN_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    """Status, headers and JSON body of a GET; (0, {}, {}) when nothing answers."""
    return send(urllib.request.Request(url, headers=headers or {}))  # noqa: S310 (127.0.0.1)


def post(url: str, body: dict) -> tuple[int, dict, dict]:
    """Status, headers and JSON body of a POST of ``body`` as JSON."""
    headers = {"Content-Type": "application/json"}
    return send(urllib.request.Request(url, json.dumps(body).encode(), headers))  # noqa: S310


def send(request: urllib.request.Request, timeout: float = 5) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError):
        return 0, {}, {}


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The parent pid is the 2nd field after the parenthesised command name.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    api: int
    dynamodb: int
    stripe: int
    log: Path
    mail_dir: Path
    crypto: int = 0

    def output(self) -> str:
        return self.log.read_text(errors="replace")


# A developer's real Stripe test mode must not leak into the tests: they reach only 127.0.0.1.
NOT_INHERITED = ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "CRYPTO_GATEWAY_URL")


def start_stack(
    tmp_path: Path,
    api: int,
    dynamodb: int,
    stripe: int,
    crypto: int | None = None,
    workers: int = 4,
) -> Stack:
    mail_dir = tmp_path / "mail"  # the stack creates it
    crypto = crypto or free_ports(1)[0]
    env = {
        **{k: v for k, v in os.environ.items() if k not in NOT_INHERITED},
        "LEDGER_API_PORT": str(api),
        "LEDGER_DYNAMODB_PORT": str(dynamodb),
        "LEDGER_STRIPE_PORT": str(stripe),
        "LEDGER_CRYPTO_PORT": str(crypto),
        "LEDGER_MAIL_DIR": str(mail_dir),
        "TABLE_NAME": "ledger-e2e",
        # More API workers than cores: parallel requests interleave as on Lambda.
        "LEDGER_API_WORKERS": str(workers),
        # Risk rules a test sets apply to the very next request in every worker.
        "RISK_RULES_TTL_SECONDS": "0",
    }
    log = tmp_path / "stack.log"
    with log.open("wb") as out:
        # A file, not a pipe: nobody reads the output while the stack runs.
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.stack"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Stack(process, api, dynamodb, stripe, log, mail_dir, crypto)


START_ATTEMPTS = 3


@contextlib.contextmanager
def running_stack(tmp_path: Path, workers: int = 4) -> Iterator[Stack]:
    """A healthy stack on free ports; stopped (Ctrl-C, then kill) unless a test stopped it.

    A port found free can be taken by another test process (xdist workers start stacks at the
    same time) before this stack's service binds it: the stack then stops, saying the port is
    already in use, and it is started again on other ports."""
    for attempt in range(START_ATTEMPTS):
        folder = tmp_path / f"stack-{attempt}"
        folder.mkdir()
        running = start_stack(folder, *free_ports(3), workers=workers)
        if wait_until_ready(running):
            break
        if "already in use" not in running.output() or attempt == START_ATTEMPTS - 1:
            pytest.fail(f"the local stack did not start:\n{running.output()}")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGINT)
            try:
                running.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                running.process.kill()  # its children stop by themselves when it is gone
                running.process.wait()


def wait_until_ready(stack: Stack) -> bool:
    """True once the stack says it is ready and its API is healthy; False if it stopped first.

    Only the stack's own word counts: a healthy answer on its API port could come from another
    test's stack that took the port first."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            return False
        if "local stack ready" in stack.output():
            status, _, body = get(f"http://{HOST}:{stack.api}/health")
            assert (status, body) == (200, {"status": "ok", "checks": {"dynamodb": "ok"}})
            return True
        time.sleep(0.25)
    pytest.fail(f"no ready stack within {START_TIMEOUT_SECONDS} s:\n{stack.output()}")


def moto_client(stack: Stack, service: str) -> Any:
    """A boto3 client of the stack's moto server (it serves every AWS service on its port)."""
    return boto3.client(
        service,
        endpoint_url=f"http://{HOST}:{stack.dynamodb}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def require_running(stack: Stack) -> None:
    assert stack.process.poll() is None, f"the stack is not running:\n{stack.output()}"


def test_the_stack_serves_the_api_stripe_and_the_table(stack: Stack):
    require_running(stack)

    status, headers, body = get(f"http://{HOST}:{stack.api}/no/such/route")
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert body["error"]["request_id"] == headers["X-Request-Id"]
    assert headers["X-Content-Type-Options"] == "nosniff"

    status, _, balance = get(
        f"http://{HOST}:{stack.stripe}/v1/balance", {"Authorization": "Bearer sk_test_local"}
    )
    assert status == 200
    assert "available" in balance  # an empty Stripe account

    dynamodb = moto_client(stack, "dynamodb")
    assert "ledger-e2e" in dynamodb.list_tables()["TableNames"]


@pytest.fixture(scope="module")
def admin_tokens(stack: Stack) -> dict:
    """The seeded admin's login, once per stack: a TOTP code is accepted once per 30 s step."""
    status, _, tokens = post(
        f"http://{HOST}:{stack.api}/v1/auth/login",
        {
            "email": ADMIN_EMAIL,
            "password": ADMIN_PASSWORD,
            "totp_code": pyotp.TOTP(ADMIN_TOTP_SECRET).now(),
        },
    )
    assert status == 200, tokens
    return tokens


def test_the_seeded_admin_logs_in_with_totp_and_gets_a_reset_mail(stack: Stack, admin_tokens):
    require_running(stack)
    api = f"http://{HOST}:{stack.api}"
    output = stack.output()
    assert f"TOTP secret {ADMIN_TOTP_SECRET}" in output
    assert str(stack.mail_dir) in output

    tokens = admin_tokens
    assert tokens["token_type"] == "Bearer"

    status, _, me = get(f"{api}/v1/me", {"Authorization": f"Bearer {tokens['access_token']}"})
    assert status == 200, me
    assert me["user"]["email"] == ADMIN_EMAIL
    assert me["user"]["role"] == "admin"
    assert me["user"]["mfa_enabled"] is True

    # Sent through moto's SES (which refuses unverified senders) and written to the folder.
    # The mail goes out of the request (the outbox; the local stack sends it within a second).
    status, _, _ = post(f"{api}/v1/auth/password/forgot", {"email": ADMIN_EMAIL})
    assert status == 202
    mails = wait_for_mail(stack, ADMIN_EMAIL)
    assert moto_client(stack, "ses").get_send_quota()["SentLast24Hours"] == 1
    assert len(mails) == 1, mails
    message = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
    assert message["To"] == ADMIN_EMAIL
    body = message.get_content()
    assert re.search(r"Reset token \(valid 30 minutes, usable once\): \S{20,}", body), body
    assert f"{api}/reset-password?token=" in body


def wait_for_mail(stack: Stack, to: str, count: int = 1, seconds: float = 15) -> list[Path]:
    """The mail folder's messages to ``to`` once there are ``count`` of them (sent by the local
    stack's mail sender, outside the request that asked for them)."""
    deadline = time.monotonic() + seconds
    while True:
        found = [
            path
            for path in sorted(stack.mail_dir.glob("*.eml"))
            if email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["To"] == to
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def mailed_token(stack: Stack, to: str, kind: str = "Verification token", count: int = 1) -> str:
    """The token of the newest mail of ``kind`` to ``to``."""
    for path in reversed(wait_for_mail(stack, to, count)):
        body = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        match = re.search(rf"{kind} \(.*\): (\S+)", body.get_content())
        if match:
            return match.group(1)
    raise AssertionError(f"no {kind} mailed to {to}")


def authed(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return headers | ({"Idempotency-Key": key} if key else {})


def call(url: str, token: str, body: dict | None = None, key: str | None = None):
    """Status and JSON body of a request as ``token``'s user: a POST of ``body``, else a GET."""
    data = json.dumps(body).encode() if body is not None else None
    status, _, answer = send(urllib.request.Request(url, data, authed(token, key)))  # noqa: S310
    return status, answer


def btc_balances(api: str, token: str) -> tuple[str, str]:
    status, body = call(f"{api}/v1/accounts", token)
    assert status == 200, body
    found = [(a["posted"], a["available"]) for a in body["data"] if a["currency"] == "BTC"]
    return found[0] if found else ("0", "0")


def run_module(stack: Stack, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` with the stack's variables, as a developer runs it."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in NOT_INHERITED},
        "LEDGER_API_PORT": str(stack.api),
        "LEDGER_DYNAMODB_PORT": str(stack.dynamodb),
        "LEDGER_STRIPE_PORT": str(stack.stripe),
        "LEDGER_CRYPTO_PORT": str(stack.crypto),
        "TABLE_NAME": "ledger-e2e",
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def fake_gateway_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return run_module(stack, "infra.local.fake_gateway", *args)


def test_crypto_in_and_out_through_the_fake_gateway_process(stack: Stack, admin_tokens):
    """A deposit address from the gateway, a deposit it confirms credited once, a withdrawal the
    admin approves that shows up at the gateway and that it settles; then a payout the gateway
    refused at approval, sent by the retry and failed by the gateway. Balances exact throughout."""
    require_running(stack)
    api, gateway = f"http://{HOST}:{stack.api}", f"http://{HOST}:{stack.crypto}"
    admin = admin_tokens["access_token"]
    credentials = {"email": "dave@example.com", "password": "correct horse battery"}
    status, _, body = post(f"{api}/v1/auth/signup", {**credentials, "accept_terms": True})
    assert status == 201, body
    token = mailed_token(stack, "dave@example.com")  # only a verified email may withdraw
    status, _, body = post(f"{api}/v1/auth/email/verify", {"token": token})
    assert status == 200, body
    status, _, tokens = post(f"{api}/v1/auth/login", credentials)
    assert status == 200, tokens
    dave = tokens["access_token"]

    status, body = call(f"{api}/v1/deposits/crypto/address", dave, {"currency": "BTC"})
    assert status == 200, body
    address = body["address"]["address"]
    assert address.startswith("bc1q")

    deposit = ("confirm-deposit", "--address", address, "--currency", "BTC", "--amount", "0.5")
    for _ in range(2):  # the same transfer reported twice: credited once
        done = fake_gateway_cli(stack, *deposit, "--tx-hash", "tx_e2e_in")
        assert done.returncode == 0, done.stdout + done.stderr
    assert '"outcome": "duplicate_tx"' in done.stdout
    assert btc_balances(api, dave) == ("0.50000000", "0.50000000")

    withdrawal = {"amount": "0.2", "currency": "BTC", "destination": "bc1qe2edestination0000"}
    status, body = call(f"{api}/v1/withdrawals", dave, withdrawal, "e2e-w1")
    assert status == 201, body
    first = body["withdrawal"]["id"]
    assert btc_balances(api, dave) == ("0.50000000", "0.30000000")
    status, body = call(f"{api}/v1/admin/withdrawals/{first}/approve", admin, {})
    assert (status, body["withdrawal"]["status"]) == (200, "processing"), body
    status, _, listed = get(f"{gateway}/payouts")
    assert status == 200
    assert [(p["withdrawal_id"], p["amount"], p["status"]) for p in listed["data"]] == [
        (first, 20_000_000, "requested")
    ]
    done = fake_gateway_cli(stack, "settle-payout", "--withdrawal-id", first)
    assert done.returncode == 0, done.stdout + done.stderr
    assert btc_balances(api, dave) == ("0.30000000", "0.30000000")
    status, body = call(f"{api}/v1/withdrawals/{first}", dave)
    assert body["withdrawal"]["status"] == "completed", body

    # The gateway refuses payouts for a while: the approval stands, the payout stays requested.
    assert post(f"{gateway}/_config/payouts", {"fail": True})[0] == 200
    withdrawal["amount"] = "0.1"
    status, body = call(f"{api}/v1/withdrawals", dave, withdrawal, "e2e-w2")
    assert status == 201, body
    second = body["withdrawal"]["id"]
    status, body = call(f"{api}/v1/admin/withdrawals/{second}/approve", admin, {})
    assert (status, body["withdrawal"]["status"]) == (200, "processing"), body
    assert len(get(f"{gateway}/payouts")[2]["data"]) == 1
    assert post(f"{gateway}/_config/payouts", {"fail": False})[0] == 200
    for expected in (f"sent {second}", "no payout left requested"):  # the retry, run twice
        done = run_module(stack, "infra.local.retry_payouts")  # make retry-payouts
        assert done.returncode == 0, done.stdout + done.stderr
        assert expected in done.stdout, done.stdout
    payouts = get(f"{gateway}/payouts")[2]["data"]
    assert [(p["withdrawal_id"], p["requests"]) for p in payouts] == [(first, 1), (second, 1)]
    assert btc_balances(api, dave) == ("0.30000000", "0.20000000")
    done = fake_gateway_cli(stack, "settle-payout", "--withdrawal-id", second, "--fail")
    assert done.returncode == 0, done.stdout + done.stderr
    assert btc_balances(api, dave) == ("0.30000000", "0.30000000")
    status, body = call(f"{api}/v1/withdrawals/{second}", dave)
    assert body["withdrawal"]["status"] == "failed", body


def test_a_sign_in_from_a_new_device_is_mailed_as_an_eml_file(stack: Stack):
    require_running(stack)
    api = f"http://{HOST}:{stack.api}"
    who = {"email": "erin@local.test", "password": "erin-local-password"}
    status, _, body = post(f"{api}/v1/auth/signup", {**who, "accept_terms": True})
    assert status == 201, body
    assert post(f"{api}/v1/auth/login", who)[0] == 200  # the first: the baseline, no alert
    phone = {"Content-Type": "application/json", "User-Agent": "ErinPhone/2.1 (e2e)"}
    login = urllib.request.Request(f"{api}/v1/auth/login", json.dumps(who).encode(), phone)  # noqa: S310
    assert send(login)[0] == 200
    mails = wait_for_mail(stack, who["email"], count=2)  # the verification mail and the alert
    alerts = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in mails
    ]
    [alert] = [m for m in alerts if m["Subject"] == "New sign-in to your account"]
    body_text = alert.get_content()
    assert "IP address: 127.0.0.1" in body_text
    assert "Device: ErinPhone/2.1 (e2e)" in body_text
    assert "reset your password" in body_text


def test_the_balance_monitor_check_runs_on_the_stack(stack: Stack):
    require_running(stack)
    done = run_module(stack, "infra.local.balance_monitors")  # make balance-monitors
    assert done.returncode == 0, done.stdout + done.stderr
    # The out-of-the-box monitor is created and checked: Stripe clearing is not above zero.
    assert "unchanged: 1" in done.stdout, done.stdout


def test_ctrl_c_stops_every_service_and_frees_every_port(stack: Stack):
    require_running(stack)
    children = children_of(stack.process.pid)
    assert len(children) == 4, stack.output()

    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=STOP_TIMEOUT_SECONDS) == 0, stack.output()

    assert not [pid for pid in children if is_running(pid)]
    for port in (stack.api, stack.dynamodb, stack.stripe, stack.crypto):
        assert port_is_free(port), port
    output = stack.output()
    urls = (stack.dynamodb, stack.stripe, stack.crypto)
    for line in (f"http://{HOST}:{port}" for port in urls):
        assert line in output
    assert "local stack stopped" in output


def test_a_taken_port_fails_fast_with_a_message_naming_it(tmp_path: Path):
    api, dynamodb, stripe = free_ports(3)
    with socket.socket() as squatter:
        squatter.bind((HOST, dynamodb))
        squatter.listen()

        stack = start_stack(tmp_path, api, dynamodb, stripe)
        code = stack.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    assert code == 1
    output = stack.output()
    assert f"port {dynamodb}" in output
    assert "LEDGER_DYNAMODB_PORT" in output
    assert port_is_free(api)
    assert port_is_free(stripe)


class AnswersEverything(BaseHTTPRequestHandler):
    """Another program on a port: 200 and an empty JSON object to anything."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.calls.append(self.headers.get("X-Amz-Target"))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_port_taken_between_the_check_and_the_bind_is_not_taken_for_the_service(tmp_path: Path):
    """The stack finds its ports free, then another program (another test's stack, say) takes
    the DynamoDB port before moto binds it. Whatever answers there is not this stack's DynamoDB:
    the stack stops, saying the port is in use, and never sends it a table."""
    squatter = ThreadingHTTPServer((HOST, 0), AnswersEverything)
    squatter.calls = []  # type: ignore[attr-defined]
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    api, stripe, crypto = free_ports(3)
    config = stack_module.read_config(
        {
            "LEDGER_API_PORT": str(api),
            "LEDGER_DYNAMODB_PORT": str(squatter.server_address[1]),
            "LEDGER_STRIPE_PORT": str(stripe),
            "LEDGER_CRYPTO_PORT": str(crypto),
            "LEDGER_MAIL_DIR": str(tmp_path / "mail"),
        }
    )
    supervisor = stack_module.Supervisor(config)  # started past run()'s port check
    try:
        with pytest.raises(stack_module.StackError, match="dynamodb exited with code 1"):
            supervisor.start()
    finally:
        supervisor.shutdown()
        squatter.shutdown()
        squatter.server_close()
    assert squatter.calls == [None] * len(squatter.calls)  # health probes, no DynamoDB call

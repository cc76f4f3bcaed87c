"""Load benchmark of the local stack over HTTP: many users moving money at once.

    .venv/bin/python bench/load.py [--users 20 --duration 60 --seed 7]
    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 [--dynamodb-port 8001]

By default it starts a fresh local stack of its own (``python -m infra.local.stack``) on free
127.0.0.1 ports, with table ``ledger-load`` and its mail folder in a temporary directory, and
stops it with SIGINT at the end. With ``--url`` it uses a stack that is already running instead
(its moto process is found only with ``--dynamodb-port``; its mail folder is ``--mail-dir``, by
default the stack's ``.local/mail``). Then, as API.md describes the HTTP contract:

1. setup: ``--users`` users sign up, log in (and verify their email from the mailed link when the
   API has ``POST /v1/auth/email/verify``), concurrently; each is funded with one USDT crypto
   deposit, a ``deposit.confirmed`` webhook signed with ``CRYPTO_WEBHOOK_SECRET`` (default
   ``crypto_local``) sent straight to ``/v1/webhooks/crypto``;
2. traffic: for ``--duration`` seconds one loop per user picks at random a transfer to another
   user by email (about 1 in 10 is sent a second time with the same Idempotency-Key and body,
   which must answer the same status and body), its balance, its USDT history or its
   transactions. ``422 insufficient_funds`` is a business outcome; a 5xx, a connection error or
   any other unexpected answer is an error (the first few are printed);
3. checks: the users' posted USDT balances add up to what was deposited, nothing is pending, and
   each user's balance is what the answers to its transfers say; then the seeded admin (TOTP via
   pyotp) reconciles today (UTC) and the report must be ``ok`` with a zero trial balance.

It prints requests, requests/s of the traffic phase, errors, p50/p95/p99 latency per route
template, and the RSS (``VmRSS``) of the moto DynamoDB process (and of the API process) before
and after the traffic. No timing is judged. Exit code 1 when the conservation check or the
reconciliation fails or any error was counted, else 0. Every loop is bounded by count or time.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import email.policy
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from chalicelib.adapters.crypto_gateway import sign  # noqa: E402
from chalicelib.config import LOCAL_CRYPTO_WEBHOOK_SECRET  # noqa: E402
from infra.local.seed import ADMIN_EMAIL, ADMIN_PASSWORD, ADMIN_TOTP_SECRET  # noqa: E402
from tests.e2e.test_local_stack import free_ports  # noqa: E402

HOST = "127.0.0.1"
CURRENCY = "USDT"
DECIMALS = 6  # USDT (API.md, "Conventions")
UNIT = 10**DECIMALS
FUNDING_UNITS = 100 * UNIT  # per user
TRANSFER_MIN_UNITS, TRANSFER_MAX_UNITS = UNIT // 100, 2 * UNIT  # 0.01 to 2.00 USDT
REPLAY_PROBABILITY = 0.10
ACTIONS = ("transfer", "balance", "history", "transactions")
ACTION_WEIGHTS = (4, 2, 2, 2)
PASSWORD = "load benchmark password"  # noqa: S105 - >= 12 characters, a benchmark user's
# The crypto webhook secret of the local stack (API.md, "The local stack").
CRYPTO_WEBHOOK_SECRET = os.environ.get("CRYPTO_WEBHOOK_SECRET") or LOCAL_CRYPTO_WEBHOOK_SECRET
TABLE_NAME = "ledger-load"
STACK_START_SECONDS = 240.0  # four services, each given up to 60 s by the stack itself
STACK_STOP_SECONDS = 60.0
MAIL_WAIT_SECONDS = 20.0
RECONCILIATION_POLL_SECONDS = 180.0
# Answers the contract calls safe to retry (API.md, "Conventions"); a transfer retries them with
# the same Idempotency-Key a few times before counting an error.
RETRYABLE = {(409, "conflict"), (409, "idempotency_in_progress")}
TRANSFER_ATTEMPTS = 4
MAX_ERRORS_SHOWN = 10
TOKEN_RENEW_MARGIN_SECONDS = 60


# -- HTTP ---------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int  # 0: no answer (connection error, timeout)
    body: Any  # parsed JSON, or None
    raw: bytes
    seconds: float
    failure: str = ""  # why there was no answer

    @property
    def code(self) -> str:
        """``error.code`` of an error answer, else ""."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code", ""))
        return ""

    def describe(self) -> str:
        if self.status == 0:
            return f"no answer ({self.failure})"
        if self.code:
            message = self.body["error"].get("message", "")
            return f"{self.status} {self.code}: {message}"
        return f"{self.status} {self.raw[:200].decode(errors='replace')}"


class Recorder:
    """Latencies and statuses per route template, and the errors, of one phase (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []

    def request(self, route: str, reply: Reply) -> None:
        label = str(reply.status) + (f" {reply.code}" if reply.code else "")
        with self.lock:
            self.latencies[route].append(reply.seconds)
            self.statuses[route][label if reply.status else "no answer"] += 1

    def outcome(self, name: str) -> None:
        with self.lock:
            self.outcomes[name] += 1

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)

    @property
    def total(self) -> int:
        with self.lock:
            return sum(len(values) for values in self.latencies.values())


class Api:
    """One HTTP/1.1 exchange per connection (http.client), JSON in and out."""

    def __init__(self, base_url: str, timeout: float) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise SystemExit(f"--url must be http://host:port, got {base_url!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        *,
        route: str | None = None,
        recorder: Recorder | None = None,
        body: Any = None,
        raw: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request; record it under ``route`` (default ``METHOD path``) if asked."""
        sent = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Accept": "application/json", **(headers or {})}
        if sent is not None:
            all_headers["Content-Type"] = "application/json"
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=sent, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
            reply = Reply(response.status, None, data, time.perf_counter() - started)
        except (OSError, http.client.HTTPException) as exc:
            reply = Reply(0, None, b"", time.perf_counter() - started, f"{type(exc).__name__}")
        finally:
            connection.close()
        if reply.raw:
            with contextlib.suppress(ValueError):
                reply.body = json.loads(reply.raw)
        if recorder is not None:
            recorder.request(route or f"{method} {path.split('?')[0]}", reply)
        return reply


# -- the stack ----------------------------------------------------------------------------------
@dataclass
class Stack:
    """A local stack this script started (None of it when ``--url`` names a running one)."""

    process: subprocess.Popen[bytes]
    api_url: str
    dynamodb_port: int
    mail_dir: Path
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def start_stack(workdir: Path) -> Stack:
    api_port, dynamodb_port, stripe_port, crypto_port = free_ports(4)
    mail_dir = workdir / "mail"
    log_path = workdir / "stack.log"
    env = {
        k: v
        for k, v in os.environ.items()
        # Always localstripe: a load run never talks to real Stripe.
        if k not in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET")
    }
    env.update(
        {
            "LEDGER_API_PORT": str(api_port),
            "LEDGER_DYNAMODB_PORT": str(dynamodb_port),
            "LEDGER_STRIPE_PORT": str(stripe_port),
            "LEDGER_CRYPTO_PORT": str(crypto_port),
            "LEDGER_MAIL_DIR": str(mail_dir),
            "TABLE_NAME": TABLE_NAME,
            "CRYPTO_WEBHOOK_SECRET": CRYPTO_WEBHOOK_SECRET,
            "PYTHONUNBUFFERED": "1",
        }
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.stack"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # A session of its own: a Ctrl-C in this terminal reaches only this script, which
            # then stops the stack with SIGINT (below).
            start_new_session=True,
            preexec_fn=_stop_with_parent,  # run before any thread of this script starts
        )
    stack = Stack(process, f"http://{HOST}:{api_port}", dynamodb_port, mail_dir, log_path)
    print(f"starting the local stack (pid {process.pid}, API {stack.api_url}, log {log_path})")
    api = Api(stack.api_url, timeout=5)
    deadline = time.monotonic() + STACK_START_SECONDS
    while True:
        if process.poll() is not None:
            raise SystemExit(
                f"the local stack exited with code {process.returncode} before answering:\n"
                + stack.log_tail()
            )
        if api.call("GET", "/health").status == 200:
            return stack
        if time.monotonic() > deadline:
            stop_stack(stack)
            raise SystemExit(
                f"the local stack did not answer GET /health within {STACK_START_SECONDS:.0f} s:"
                "\n" + stack.log_tail()
            )
        time.sleep(0.5)


def _stop_with_parent() -> None:
    """In the stack's supervisor, before it runs: SIGINT to it if this script dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT)


def stop_stack(stack: Stack) -> int | None:
    """SIGINT to the supervisor (it stops its children), then wait; SIGKILL only as last resort."""
    process = stack.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STACK_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            print(f"the stack did not stop within {STACK_STOP_SECONDS:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


# -- processes and memory -----------------------------------------------------------------------
def _cmdline(pid: str) -> list[str]:
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    return []


def _parent(pid: str) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])  # the field after "(comm) state"
    return None


def find_service(service: str, *, parent: int | None, port: int | None) -> int | None:
    """The pid of the stack's ``infra.local.stack --serve <service> <port>`` child.

    ``parent``: only a child of that supervisor; ``port``: only the one serving that port.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        args = _cmdline(entry.name)
        if "infra.local.stack" not in args or "--serve" not in args:
            continue
        at = args.index("--serve")
        if args[at + 1 : at + 2] != [service]:
            continue
        if port is not None and args[-1] != str(port):
            continue
        if parent is not None and _parent(entry.name) != parent:
            continue
        return int(entry.name)
    return None


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


# -- money --------------------------------------------------------------------------------------
def to_units(text: str) -> int:
    value = Decimal(text) * UNIT
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} has more than {DECIMALS} decimals")
    return int(value)


def to_text(units: int) -> str:
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), UNIT)
    return f"{sign}{whole}.{fraction:0{DECIMALS}d}"


# -- users --------------------------------------------------------------------------------------
@dataclass
class User:
    index: int
    email: str
    token: str = ""
    logged_in_at: float = 0.0
    expires_in: float = 900.0
    account_id: str = ""
    funded_units: int = 0
    # What the answers to its transfers say its balance is: funding - sent + received.
    tally_units: int = 0
    unknown_transfers: int = 0  # transfers with no answer: the tally cannot be trusted
    ready: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def login(api: Api, user: User, recorder: Recorder) -> bool:
    reply = api.call(
        "POST",
        "/v1/auth/login",
        recorder=recorder,
        body={"email": user.email, "password": PASSWORD},
    )
    if reply.status != 200 or not isinstance(reply.body, dict):
        recorder.error(f"POST /v1/auth/login ({user.email}) -> {reply.describe()}")
        return False
    user.token = reply.body["access_token"]
    user.expires_in = float(reply.body.get("expires_in") or 900)
    user.logged_in_at = time.monotonic()
    return True


def ensure_fresh_token(api: Api, user: User, recorder: Recorder) -> bool:
    """Log in again shortly before the access token expires (long ``--duration``)."""
    age = time.monotonic() - user.logged_in_at
    if age < user.expires_in - TOKEN_RENEW_MARGIN_SECONDS:
        return True
    return login(api, user, recorder)


def verification_route_exists(api: Api) -> bool:
    """``POST /v1/auth/email/verify`` (API revision 2) is there unless it answers the 404 of an
    unknown route; a made-up token is refused by a route that exists."""
    reply = api.call("POST", "/v1/auth/email/verify", body={"token": "load-benchmark-probe"})
    return not (reply.status == 404 and reply.code == "not_found")


_TOKEN_LINK = re.compile(r"[?&]token=([A-Za-z0-9._~%+\-]+)")


def mailed_token(mail_dir: Path, address: str, since: float) -> str | None:
    """The ``token=`` of the newest verification-looking mail to ``address`` written after
    ``since`` (epoch seconds), or of any token-carrying mail to it."""
    found: list[tuple[int, float, str]] = []
    with contextlib.suppress(OSError):
        for path in mail_dir.glob("*.eml"):
            try:
                stat = path.stat()
                if stat.st_mtime < since - 1:
                    continue
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            except (OSError, ValueError):
                continue
            if str(message.get("To", "")).strip().lower() != address.lower():
                continue
            texts = []
            for part in message.walk():
                if part.get_content_maintype() == "text":
                    with contextlib.suppress(LookupError, ValueError):
                        texts.append(part.get_content())
            text = "\n".join(texts)
            match = _TOKEN_LINK.search(text)
            if match:
                about = f"{message.get('Subject', '')} {text[: match.start()][-200:]}".lower()
                rank = 1 if "verif" in about else 0
                found.append((rank, stat.st_mtime, urllib.parse.unquote(match.group(1))))
    return max(found)[2] if found else None


@dataclass
class Setup:
    api: Api
    recorder: Recorder
    run_id: str
    verify: bool
    mail_dir: Path | None
    started_epoch: float


def set_up_user(setup: Setup, user: User) -> None:
    """Sign up, log in, verify the email (when the API can), learn the USDT account, fund it."""
    api, recorder = setup.api, setup.recorder
    reply = api.call(
        "POST",
        "/v1/auth/signup",
        recorder=recorder,
        body={"email": user.email, "password": PASSWORD, "accept_terms": True},
    )
    if reply.status != 201:
        recorder.error(f"POST /v1/auth/signup ({user.email}) -> {reply.describe()}")
        return
    signed_up = reply.body.get("user", {}) if isinstance(reply.body, dict) else {}
    if not login(api, user, recorder):
        return

    if setup.verify and signed_up.get("email_verified") is not True:
        if setup.mail_dir is None:
            recorder.error(f"cannot verify {user.email}: no mail folder (--mail-dir)")
            return
        token = None
        deadline = time.monotonic() + MAIL_WAIT_SECONDS
        while token is None and time.monotonic() < deadline:
            token = mailed_token(setup.mail_dir, user.email, setup.started_epoch)
            if token is None:
                time.sleep(0.5)
        if token is None:
            recorder.error(f"no verification mail to {user.email} in {setup.mail_dir}")
            return
        reply = api.call("POST", "/v1/auth/email/verify", recorder=recorder, body={"token": token})
        if reply.status != 200:
            recorder.error(f"POST /v1/auth/email/verify ({user.email}) -> {reply.describe()}")
            return

    reply = api.call(
        "POST",
        "/v1/deposits/crypto/address",
        recorder=recorder,
        token=user.token,
        body={"currency": CURRENCY},
    )
    if reply.status != 200:
        recorder.error(f"POST /v1/deposits/crypto/address ({user.email}) -> {reply.describe()}")
        return
    address = reply.body["address"]["address"]

    tag = f"{setup.run_id}-{user.index}"
    event = {
        "id": f"evt_load-{tag}",
        "type": "deposit.confirmed",
        "data": {
            "address": address,
            "currency": CURRENCY,
            "amount": to_text(FUNDING_UNITS),
            "tx_hash": f"load-{tag}",
        },
    }
    raw = json.dumps(event).encode()
    reply = api.call(
        "POST",
        "/v1/webhooks/crypto",
        recorder=recorder,
        raw=raw,
        headers={"X-Signature": sign(CRYPTO_WEBHOOK_SECRET, raw)},
    )
    outcome = reply.body.get("outcome") if isinstance(reply.body, dict) else None
    if reply.status != 200 or outcome != "credited":
        recorder.error(f"POST /v1/webhooks/crypto ({user.email}) -> {reply.describe()}")
        return
    user.funded_units = user.tally_units = FUNDING_UNITS

    account = usdt_account(api, user, recorder)
    if account is None:
        return
    user.account_id = account["id"]
    posted = to_units(account["posted"])
    if posted != FUNDING_UNITS:
        recorder.error(f"{user.email}: posted {account['posted']} after a deposit of 100")
        return
    user.ready = True


def usdt_account(api: Api, user: User, recorder: Recorder) -> dict[str, Any] | None:
    reply = api.call("GET", "/v1/accounts", recorder=recorder, token=user.token)
    if reply.status != 200 or not isinstance(reply.body, dict):
        recorder.error(f"GET /v1/accounts ({user.email}) -> {reply.describe()}")
        return None
    for account in reply.body.get("data", []):
        if account.get("currency") == CURRENCY:
            return account
    recorder.error(f"GET /v1/accounts ({user.email}): no {CURRENCY} account")
    return None


# -- traffic ------------------------------------------------------------------------------------
class Traffic:
    def __init__(self, api: Api, users: list[User], recorder: Recorder, deadline: float) -> None:
        self.api = api
        self.users = users
        self.recorder = recorder
        self.deadline = deadline
        self.replays = 0
        self.replays_lock = threading.Lock()

    def run_user(self, user: User, rng: random.Random) -> None:
        sequence = 0
        while time.monotonic() < self.deadline:
            if not ensure_fresh_token(self.api, user, self.recorder):
                return
            action = rng.choices(ACTIONS, weights=ACTION_WEIGHTS)[0]
            if action == "transfer":
                sequence += 1
                self.transfer(user, rng, sequence)
            elif action == "balance":
                self.read(user, "GET /v1/accounts", "/v1/accounts")
            elif action == "history":
                path = f"/v1/accounts/{urllib.parse.quote(user.account_id, safe='')}/entries"
                self.read(user, "GET /v1/accounts/{id}/entries", f"{path}?limit=20")
            else:
                self.read(user, "GET /v1/transactions", "/v1/transactions")

    def read(self, user: User, route: str, path: str) -> None:
        reply = self.api.call("GET", path, route=route, recorder=self.recorder, token=user.token)
        if reply.status == 200 and isinstance(reply.body, dict):
            self.recorder.outcome(f"{route} 200")
        else:
            self.recorder.error(f"{route} ({user.email}) -> {reply.describe()}")

    def transfer(self, sender: User, rng: random.Random, sequence: int) -> None:
        route = "POST /v1/transfers"
        recipient = rng.choice([u for u in self.users if u is not sender])
        units = rng.randint(TRANSFER_MIN_UNITS, TRANSFER_MAX_UNITS)
        body = {
            "amount": to_text(units),
            "currency": CURRENCY,
            "to_email": recipient.email,
            "memo": f"load {sequence}",
        }
        key = f"load-{uuid.uuid4().hex}"
        reply = self._send(sender, body, key)
        if reply.status == 201:
            self.recorder.outcome("transfer 201 posted")
            with sender.lock:
                sender.tally_units -= units
            with recipient.lock:
                recipient.tally_units += units
        elif reply.status == 422 and reply.code == "insufficient_funds":
            self.recorder.outcome("transfer 422 insufficient_funds (expected)")
        elif reply.status == 202:
            # A risk rule held it for review: money on hold, the checks below will say so.
            self.recorder.outcome("transfer 202 held for review")
        else:
            if reply.status == 0 or reply.status >= 500:
                with sender.lock:
                    sender.unknown_transfers += 1
            self.recorder.error(f"{route} ({sender.email}) -> {reply.describe()}")
            return

        if rng.random() < REPLAY_PROBABILITY:
            with self.replays_lock:
                self.replays += 1
            again = self._send(sender, body, key)
            if again.status != reply.status or again.body != reply.body:
                self.recorder.error(
                    f"{route} replay with the same Idempotency-Key ({sender.email}) answered "
                    f"{again.describe()} instead of the original {reply.describe()}"
                )
            else:
                self.recorder.outcome("transfer replay: same status and body")

    def _send(self, sender: User, body: dict[str, Any], key: str) -> Reply:
        """POST the transfer; retry what the contract calls safe to retry, with the same key."""
        reply = Reply(0, None, b"", 0.0, "not sent")
        for attempt in range(TRANSFER_ATTEMPTS):
            reply = self.api.call(
                "POST",
                "/v1/transfers",
                recorder=self.recorder,
                token=sender.token,
                body=body,
                headers={"Idempotency-Key": key},
            )
            if (reply.status, reply.code) not in RETRYABLE:
                return reply
            self.recorder.outcome(f"transfer {reply.status} {reply.code} (retried)")
            time.sleep(0.05 * 2**attempt)
        return reply


# -- checks -------------------------------------------------------------------------------------
def check_conservation(api: Api, users: list[User], recorder: Recorder) -> bool:
    print("\nconservation")
    total_posted = 0
    pending = 0
    off_tally: list[str] = []
    unreadable = 0
    for user in users:
        if not ensure_fresh_token(api, user, recorder):
            unreadable += 1
            continue
        account = usdt_account(api, user, recorder)
        if account is None:
            unreadable += 1
            continue
        posted = to_units(account["posted"])
        total_posted += posted
        pending += abs(to_units(account["pending_outgoing"]))
        pending += abs(to_units(account["pending_incoming"]))
        if posted != user.tally_units and not user.unknown_transfers:
            off_tally.append(f"{user.email}: posted {to_text(posted)}, answers say ")
            off_tally[-1] += to_text(user.tally_units)
    funded = sum(u.funded_units for u in users)
    print(f"  funded (deposits credited)   {to_text(funded)} {CURRENCY} over {len(users)} users")
    print(f"  sum of posted balances       {to_text(total_posted)} {CURRENCY}")
    print(f"  pending (outgoing+incoming)  {to_text(pending)} {CURRENCY}")
    print(f"  balances off the answers     {len(off_tally)} users")
    for line in off_tally[:MAX_ERRORS_SHOWN]:
        print(f"    {line}")
    ok = unreadable == 0 and total_posted == funded and pending == 0 and not off_tally
    print(f"  conservation: {'OK' if ok else 'FAILED'}")
    return ok


def admin_token(api: Api, recorder: Recorder) -> str | None:
    import pyotp

    totp = pyotp.TOTP(ADMIN_TOTP_SECRET)
    reply = Reply(0, None, b"", 0.0, "not sent")
    for _attempt in range(2):
        reply = api.call(
            "POST",
            "/v1/auth/login",
            recorder=recorder,
            body={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "totp_code": totp.now()},
        )
        if reply.status == 200 and isinstance(reply.body, dict):
            return str(reply.body["access_token"])
        if reply.code != "invalid_totp":
            break
        # This step's code was used already (another login in the same 30 s): wait for the next.
        time.sleep(totp.interval - time.time() % totp.interval + 1)
    recorder.error(f"admin login -> {reply.describe()}")
    return None


def reconcile_today(api: Api, recorder: Recorder) -> bool:
    today = datetime.now(UTC).date().isoformat()
    print(f"\nreconciliation of {today} (UTC, today: a partial, provisional day)")
    token = admin_token(api, recorder)
    if token is None:
        print("  the admin could not log in; no reconciliation")
        return False
    started = time.perf_counter()
    reply = api.call(
        "POST", "/v1/admin/reconciliations", recorder=recorder, token=token, body={"date": today}
    )
    if reply.status not in (201, 202) or not isinstance(reply.body, dict):
        print(f"  POST /v1/admin/reconciliations {{date: {today}}} was refused: {reply.describe()}")
        print("  (API.md lets an admin reconcile any day up to today; today could not be checked)")
        recorder.error(f"POST /v1/admin/reconciliations -> {reply.describe()}")
        return False
    report = reply.body.get("report", {})
    deadline = time.monotonic() + RECONCILIATION_POLL_SECONDS
    while report.get("status") == "running" and time.monotonic() < deadline:
        time.sleep(1.0)
        polled = api.call(
            "GET",
            f"/v1/admin/reconciliations/{today}",
            route="GET /v1/admin/reconciliations/{date}",
            recorder=recorder,
            token=token,
        )
        if polled.status == 200 and isinstance(polled.body, dict):
            report = polled.body.get("report", {})
        elif polled.status != 404:  # 404: not stored yet
            recorder.error(f"GET /v1/admin/reconciliations/{today} -> {polled.describe()}")
            return False
    seconds = time.perf_counter() - started
    status = report.get("status")
    trial = report.get("trial_balance") or {}
    print(f"  answer {reply.status}, status {status} after {seconds:.1f} s")
    print(
        f"  transactions checked {report.get('transactions_checked')}, "
        f"accounts checked {report.get('accounts_checked')}"
    )
    print(f"  trial balance {json.dumps(trial, sort_keys=True)}")
    mismatches = report.get("mismatches") or []
    print(f"  mismatches {len(mismatches)}")
    for mismatch in mismatches[:MAX_ERRORS_SHOWN]:
        print(f"    {json.dumps(mismatch, sort_keys=True)[:300]}")
    if report.get("stripe") is not None:
        print(f"  stripe {json.dumps(report['stripe'], sort_keys=True)[:300]}")
    zero = bool(trial) and all(Decimal(str(value)) == 0 for value in trial.values())
    ok = status == "ok" and zero
    if status == "running":
        print(f"  still running after {RECONCILIATION_POLL_SECONDS:.0f} s")
    print(f"  reconciliation: {'OK' if ok else 'FAILED'}")
    return ok


# -- report -------------------------------------------------------------------------------------
def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def print_routes(title: str, recorder: Recorder) -> None:
    print(f"\n{title}")
    print(f"  {'route':<40}{'count':>7}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}  statuses")
    for route in sorted(recorder.latencies):
        values = sorted(recorder.latencies[route])
        p50, p95, p99 = (percentile(values, f) * 1000 for f in (0.50, 0.95, 0.99))
        statuses = ", ".join(f"{k} x{v}" for k, v in sorted(recorder.statuses[route].items()))
        print(f"  {route:<40}{len(values):>7}{p50:>10.0f}{p95:>10.0f}{p99:>10.0f}  {statuses}")


def print_errors(title: str, recorder: Recorder) -> None:
    if not recorder.errors:
        return
    print(f"\n{title}: {len(recorder.errors)} (first {MAX_ERRORS_SHOWN})")
    for text in recorder.errors[:MAX_ERRORS_SHOWN]:
        print(f"  {text}")


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=20, help="simulated users (default 20)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of the traffic phase (default 60)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: printed)")
    parser.add_argument("--url", help="use this running stack (e.g. http://127.0.0.1:8000)")
    parser.add_argument(
        "--dynamodb-port", type=int, help="with --url: the moto port, to measure its memory"
    )
    parser.add_argument(
        "--mail-dir",
        type=Path,
        help="with --url: the stack's mail folder (default LEDGER_MAIL_DIR or .local/mail)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds one request may take (default 120)"
    )
    args = parser.parse_args(argv)
    if args.users < 2:
        parser.error("--users must be at least 2 (users transfer to each other)")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through main's finally: the stack is stopped


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    with tempfile.TemporaryDirectory(prefix="ledger-load-") as workdir:
        stack = None
        if args.url:
            api_url = args.url.rstrip("/")
            dynamodb_port = args.dynamodb_port
            mail_dir = args.mail_dir or Path(
                os.environ.get("LEDGER_MAIL_DIR") or ROOT / ".local" / "mail"
            )
        else:
            stack = start_stack(Path(workdir))
            api_url, dynamodb_port, mail_dir = stack.api_url, stack.dynamodb_port, stack.mail_dir
        try:
            return benchmark(args, seed, api_url, dynamodb_port, mail_dir, stack)
        finally:
            if stack is not None:
                code = stop_stack(stack)
                print(f"\nlocal stack stopped (exit code {code})")


def benchmark(
    args: argparse.Namespace,
    seed: int,
    api_url: str,
    dynamodb_port: int | None,
    mail_dir: Path,
    stack: Stack | None,
) -> int:
    api = Api(api_url, timeout=args.timeout)
    health = api.call("GET", "/health")
    if health.status != 200:
        print(f"GET {api_url}/health -> {health.describe()}")
        return 1
    supervisor = stack.process.pid if stack else None
    api_port = api.port
    # With --url and no --dynamodb-port, any stack's moto could match: none is measured.
    moto_pid = (
        find_service("dynamodb", parent=supervisor, port=dynamodb_port)
        if stack is not None or dynamodb_port is not None
        else None
    )
    api_pid = find_service("api", parent=supervisor, port=api_port)
    run_id = uuid.uuid4().hex[:10]
    print(
        f"load run {run_id}: {args.users} users, {args.duration:g} s of traffic, seed {seed}, "
        f"API {api_url}, moto pid {moto_pid or 'unknown'}, API pid {api_pid or 'unknown'}"
    )

    # -- setup: sign up, log in, verify, fund -------------------------------------------------
    verify = verification_route_exists(api)
    print(
        "POST /v1/auth/email/verify "
        + ("exists: users verify their email from the mailed link" if verify else "does not exist")
    )
    setup = Setup(api, Recorder(), run_id, verify, mail_dir, time.time())
    users = [User(i, f"load-{run_id}-{i}@example.com") for i in range(args.users)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.users) as pool:
        for future in [pool.submit(set_up_user, setup, u) for u in users]:
            future.result()
    setup_seconds = time.perf_counter() - started
    ready = [u for u in users if u.ready]
    funded = sum(u.funded_units for u in users)
    print(
        f"setup: {len(ready)}/{len(users)} users signed up, logged in and funded in "
        f"{setup_seconds:.1f} s ({setup.recorder.total} requests); funded {to_text(funded)} "
        f"{CURRENCY}"
    )

    # -- traffic ------------------------------------------------------------------------------
    moto_before, api_before = rss_kib(moto_pid), rss_kib(api_pid)
    traffic = Traffic(api, ready, Recorder(), time.monotonic() + args.duration)
    traffic_seconds = 0.0
    if len(ready) >= 2:
        print(f"traffic: {len(ready)} user loops for {args.duration:g} s ...", flush=True)
        master = random.Random(seed)
        threads = [
            threading.Thread(
                target=traffic.run_user,
                args=(u, random.Random(master.randrange(2**32))),
                name=f"user-{u.index}",
                daemon=True,  # a Ctrl-C must not wait for the loops
            )
            for u in ready
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()  # each loop ends at the deadline (plus at most one request's timeout)
        traffic_seconds = time.perf_counter() - started
    else:
        print("traffic: skipped (fewer than 2 users are ready)")
    moto_after, api_after = rss_kib(moto_pid), rss_kib(api_pid)

    # -- checks -------------------------------------------------------------------------------
    checks = Recorder()
    funded_users = [u for u in users if u.funded_units]
    conserved = check_conservation(api, funded_users, checks)
    reconciled = reconcile_today(api, checks)

    # -- figures ------------------------------------------------------------------------------
    print_routes("setup (per route)", setup.recorder)
    print_routes("traffic (per route)", traffic.recorder)
    print_routes("checks (per route)", checks)
    print("\ntraffic outcomes")
    for name, count in sorted(traffic.recorder.outcomes.items()):
        print(f"  {name:<50}{count:>7}")
    print(f"  {'idempotent replays sent':<50}{traffic.replays:>7}")
    print_errors("setup errors", setup.recorder)
    print_errors("traffic errors", traffic.recorder)
    print_errors("check errors", checks)

    total = traffic.recorder.total
    rate = total / traffic_seconds if traffic_seconds else 0.0
    errors = len(setup.recorder.errors) + len(traffic.recorder.errors) + len(checks.errors)
    print("\nsummary")
    print(f"  users ready                  {len(ready)}/{len(users)}")
    print(f"  setup                        {setup.recorder.total} requests, {setup_seconds:.1f} s")
    print(f"  traffic requests             {total} in {traffic_seconds:.1f} s")
    print(f"  requests/s (traffic)         {rate:.2f}")
    print(f"  errors                       {errors}")
    print(f"  moto RSS before traffic      {mib(moto_before)}")
    print(f"  moto RSS after traffic       {mib(moto_after)}")
    print(f"  API RSS before traffic       {mib(api_before)}")
    print(f"  API RSS after traffic        {mib(api_after)}")
    print(f"  conservation                 {'OK' if conserved else 'FAILED'}")
    print(f"  reconciliation               {'OK' if reconciled else 'FAILED'}")
    failed = not conserved or not reconciled or errors > 0 or len(ready) < len(users)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

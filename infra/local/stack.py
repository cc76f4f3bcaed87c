"""The local stack: the whole ledger on this machine with no cloud account (``make run``).

    python -m infra.local.stack

starts four services, each bound to 127.0.0.1, each in a process (and process group) of its own,
each only once the one before it answers:

========  ======================  ====================  =========================================
service   default URL             port variable         what
========  ======================  ====================  =========================================
dynamodb  http://127.0.0.1:8001   LEDGER_DYNAMODB_PORT  moto server, every DynamoDB call under one
                                                        lock; table ``TABLE_NAME`` (ledger-local)
                                                        created from infra/table.json
stripe    http://127.0.0.1:8002   LEDGER_STRIPE_PORT    localstripe, empty, with the API's webhook
                                                        endpoint registered under
                                                        ``STRIPE_WEBHOOK_SECRET`` (whsec_local)
crypto    http://127.0.0.1:8003   LEDGER_CRYPTO_PORT    the fake crypto gateway
                                                        (``infra.local.crypto_gateway_server``):
                                                        addresses, payouts, signed webhooks to
                                                        the API (``CRYPTO_WEBHOOK_SECRET``)
api       http://127.0.0.1:8000   LEDGER_API_PORT       the Chalice app, stage ``local``
                                                        (``chalice local``), 404-aware gateway,
                                                        ``CRYPTO_GATEWAY_URL`` -> crypto
========  ======================  ====================  =========================================

Real Stripe test mode: with ``STRIPE_API_KEY`` (a test key, ``sk_test_...`` or ``rk_test_...``) in
the environment, localstripe is not started, the API talks to Stripe itself (no
``STRIPE_API_BASE``) with that key, and ``STRIPE_WEBHOOK_SECRET`` must be set too (the stack
refuses to start without it): it is the secret ``stripe listen --forward-to
http://127.0.0.1:<api port>/v1/webhooks/stripe`` prints, which the stack reminds of at start-up.

Between the table and the API, ``infra.local.seed`` (run once, with the API's environment)
verifies the mail sender in moto's SES and creates the admin ``admin@local.test`` (password
``local-admin-password``, TOTP secret ``JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP``). The API mails through
moto's SES (``SES_ENDPOINT``) and also writes each message as an ``.eml`` file into the mail
folder, ``LEDGER_MAIL_DIR`` (default ``.local/mail`` in the project).

Ctrl-C (SIGINT), SIGTERM or SIGHUP stops them all, newest first (SIGTERM to each process group,
SIGKILL after a grace period), and exits 0. A port already in use, or a service that dies or does
not answer, stops everything and exits 1 with a message naming the service. Each child also
stops by itself if this supervisor disappears without stopping it (killed with SIGKILL), so
nothing is orphaned.

This module is also the entry point of the dynamodb and api children
(``python -m infra.local.stack --serve dynamodb|api PORT``); localstripe's is
``infra.local.localstripe_server``, the fake crypto gateway's ``infra.local.crypto_gateway_server``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from infra.local.child import (
    STACK_ID_ENV,
    STACK_ID_HEADER,
    SUPERVISOR_PID_ENV,
    exit_with_supervisor,
)
from infra.local.seed import ADMIN_EMAIL, ADMIN_PASSWORD, ADMIN_TOTP_SECRET

HOST = "127.0.0.1"
REGION = "us-east-1"
API_STAGE = "local"
PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_TABLE_NAME = "ledger-local"
# Local-only secrets, public by design (API.md, "The local stack").
DEFAULT_STRIPE_WEBHOOK_SECRET = "whsec_local"  # noqa: S105
LOCAL_STRIPE_API_KEY = "sk_test_local"
DEFAULT_CRYPTO_WEBHOOK_SECRET = "crypto_local"  # noqa: S105
DEFAULT_CRYPTO_ADDRESS_SECRET = "crypto-address-local"  # noqa: S105
CRYPTO_WEBHOOK_PATH = "/v1/webhooks/crypto"
# Real Stripe test mode (STRIPE_API_KEY set): only test keys, never a live one.
STRIPE_TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")
REAL_STRIPE_URL = "https://api.stripe.com"
STRIPE_WEBHOOK_ID = "ledger-local"
STRIPE_WEBHOOK_PATH = "/v1/webhooks/stripe"
MAIL_DIR_VARIABLE = "LEDGER_MAIL_DIR"
DEFAULT_MAIL_DIR = PROJECT_DIR / ".local" / "mail"  # .local/ is gitignored
# A real session or profile must not mix with the fake keys the API and the seed get.
REAL_AWS_SESSION_ENV = ("AWS_SESSION_TOKEN", "AWS_PROFILE")

STARTUP_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 5.0  # per service
POLL_SECONDS = 0.2
# Set in each child's environment: the pid whose disappearance makes the child stop itself.
# What the API child must see even though .chalice/config.json's local stage sets some of it.
API_ENV_NAMES = (
    "STAGE",
    "TABLE_NAME",
    "DYNAMODB_ENDPOINT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "STRIPE_API_BASE",
    "STRIPE_API_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "CRYPTO_WEBHOOK_SECRET",
    "CRYPTO_ADDRESS_SECRET",
    "CRYPTO_GATEWAY_URL",
    "SES_ENDPOINT",
    "MAIL_DIR",
    "PUBLIC_BASE_URL",
)


@dataclass(frozen=True)
class PortSetting:
    service: str
    variable: str
    default: int


PORT_SETTINGS = (
    PortSetting("api", "LEDGER_API_PORT", 8000),
    PortSetting("dynamodb", "LEDGER_DYNAMODB_PORT", 8001),
    PortSetting("stripe", "LEDGER_STRIPE_PORT", 8002),
    PortSetting("crypto", "LEDGER_CRYPTO_PORT", 8003),
)


@dataclass(frozen=True)
class StackConfig:
    api_port: int
    dynamodb_port: int
    stripe_port: int
    table_name: str
    stripe_webhook_secret: str
    crypto_webhook_secret: str
    mail_dir: Path
    crypto_port: int = 8003
    crypto_address_secret: str = DEFAULT_CRYPTO_ADDRESS_SECRET
    # Set: real Stripe test mode with this key (no localstripe); None: localstripe.
    stripe_api_key: str | None = None

    @property
    def real_stripe(self) -> bool:
        return self.stripe_api_key is not None

    @property
    def ports(self) -> dict[str, int]:
        """The port of each service this stack starts (no stripe in real Stripe test mode)."""
        ports = {
            "api": self.api_port,
            "dynamodb": self.dynamodb_port,
            "stripe": self.stripe_port,
            "crypto": self.crypto_port,
        }
        if self.real_stripe:
            del ports["stripe"]
        return ports

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def dynamodb_url(self) -> str:
        return f"http://{HOST}:{self.dynamodb_port}"

    @property
    def stripe_url(self) -> str:
        return f"http://{HOST}:{self.stripe_port}"

    @property
    def crypto_url(self) -> str:
        return f"http://{HOST}:{self.crypto_port}"

    @property
    def stripe_forwarding(self) -> str:
        """How Stripe's test-mode webhooks reach this API (real Stripe test mode)."""
        return f"stripe listen --forward-to {self.api_url}{STRIPE_WEBHOOK_PATH}"


class StackError(Exception):
    """The stack cannot run; the message says which service and why."""


class StopRequested(Exception):
    """A signal asked the stack to stop while it was starting."""


def read_config(environ: Mapping[str, str]) -> StackConfig:
    """Ports, table name, secrets, the mail folder and the Stripe mode from the environment."""
    stripe_api_key = _stripe_mode(environ)
    ports: dict[str, int] = {}
    for setting in PORT_SETTINGS:
        raw = environ.get(setting.variable, "").strip()
        if not raw:
            ports[setting.service] = setting.default
            continue
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StackError(f"{setting.variable}={raw!r} is not a TCP port number (1-65535)")
        ports[setting.service] = int(raw)
    used = [s for s in PORT_SETTINGS if not (stripe_api_key and s.service == "stripe")]
    if len({ports[s.service] for s in used}) != len(used):
        names = ", ".join(f"{s.variable}={ports[s.service]}" for s in used)
        raise StackError(f"each service needs a port of its own, got {names}")
    return StackConfig(
        api_port=ports["api"],
        dynamodb_port=ports["dynamodb"],
        stripe_port=ports["stripe"],
        table_name=environ.get("TABLE_NAME") or DEFAULT_TABLE_NAME,
        stripe_webhook_secret=environ.get("STRIPE_WEBHOOK_SECRET") or DEFAULT_STRIPE_WEBHOOK_SECRET,
        crypto_webhook_secret=environ.get("CRYPTO_WEBHOOK_SECRET") or DEFAULT_CRYPTO_WEBHOOK_SECRET,
        # Absolute: the API runs in the project directory, not necessarily the caller's.
        mail_dir=Path(environ.get(MAIL_DIR_VARIABLE) or DEFAULT_MAIL_DIR).expanduser().resolve(),
        crypto_port=ports["crypto"],
        crypto_address_secret=environ.get("CRYPTO_ADDRESS_SECRET") or DEFAULT_CRYPTO_ADDRESS_SECRET,
        stripe_api_key=stripe_api_key,
    )


def _stripe_mode(environ: Mapping[str, str]) -> str | None:
    """The Stripe test key for real Stripe test mode, or None for localstripe.

    Raises StackError for a key that is not a test key, or a missing webhook secret (without it
    no webhook from Stripe could be verified, so no card deposit would ever be credited).
    """
    key = environ.get("STRIPE_API_KEY", "").strip()
    if not key:
        return None
    if not key.startswith(STRIPE_TEST_KEY_PREFIXES):
        raise StackError(
            "STRIPE_API_KEY is not a Stripe test key (sk_test_... or rk_test_...); the local "
            "stack never uses a live key. Unset it to use localstripe."
        )
    if not environ.get("STRIPE_WEBHOOK_SECRET", "").strip():
        raise StackError(
            "STRIPE_API_KEY is set (real Stripe test mode) but STRIPE_WEBHOOK_SECRET is not. Run "
            f"`stripe listen --forward-to http://{HOST}:<LEDGER_API_PORT, 8000>"
            f"{STRIPE_WEBHOOK_PATH}` and set STRIPE_WEBHOOK_SECRET to the whsec_... secret it "
            "prints; or unset STRIPE_API_KEY to use localstripe."
        )
    return key


def port_is_free(port: int) -> bool:
    # SO_REUSEADDR like the servers themselves: a port in TIME_WAIT from a previous run is free,
    # a port someone listens on is not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def check_ports_free(config: StackConfig) -> None:
    ports = config.ports
    for setting in PORT_SETTINGS:
        if setting.service not in ports:
            continue
        port = ports[setting.service]
        if not port_is_free(port):
            raise StackError(
                f"port {port} on {HOST} ({setting.service}, {setting.variable}) is already in "
                f"use. Stop what is listening there, or choose another port, e.g. "
                f"{setting.variable}={port + 100} make run"
            )


def http_answer(
    url: str, *, method: str = "GET", body: bytes | None = None
) -> tuple[int, str] | None:
    """The status a URL answers with and the stack id it names (``infra.local.child``), or
    None when nothing answers (yet)."""
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 (http://127.0.0.1 only)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return int(response.status), response.headers.get(STACK_ID_HEADER, "")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.headers.get(STACK_ID_HEADER, "")
    except (urllib.error.URLError, OSError):
        return None


def http_status(url: str, *, method: str = "GET", body: bytes | None = None) -> int | None:
    """The status a URL answers with, or None when nothing answers (yet)."""
    answer = http_answer(url, method=method, body=body)
    return None if answer is None else answer[0]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


class Supervisor:
    """Starts the services in order, watches them, and stops them all."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        # Named by every answer of this stack's services: an answer without it comes from a
        # program that took a service's port first (infra.local.child).
        self.stack_id = secrets.token_hex(8)

    # -- lifecycle ---------------------------------------------------------------------------
    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_requested.set()

    def start(self) -> None:
        config = self.config
        dynamodb = self._spawn("dynamodb", ["infra.local.stack", "--serve", "dynamodb"])
        self._wait_until("dynamodb", dynamodb, lambda: self.answers(config.dynamodb_url))
        created = self._ensure_table()
        state = "created" if created else "exists"
        self._announce("dynamodb", config.dynamodb_url, f"table {config.table_name} ({state})")
        self._make_mail_dir()
        self._seed()

        if config.real_stripe:
            self._announce(
                "stripe",
                REAL_STRIPE_URL,
                "real Stripe test mode (STRIPE_API_KEY); forward its webhooks with: "
                f"{config.stripe_forwarding} "
                "(the whsec_... secret it prints goes into STRIPE_WEBHOOK_SECRET)",
            )
        else:
            stripe = self._spawn("stripe", ["infra.local.localstripe_server"])
            balance = f"{config.stripe_url}/v1/balance"
            self._wait_until("stripe", stripe, lambda: self.answers(balance))
            webhook_url = self._register_stripe_webhook()
            self._announce("stripe", config.stripe_url, f"webhook -> {webhook_url}")

        crypto = self._spawn(
            "crypto", ["infra.local.crypto_gateway_server"], self._crypto_gateway_env()
        )
        crypto_health = f"{config.crypto_url}/health"
        self._wait_until("crypto", crypto, lambda: self.answers(crypto_health, 200))
        self._announce(
            "crypto",
            config.crypto_url,
            f"fake gateway, webhooks -> {config.api_url}{CRYPTO_WEBHOOK_PATH}",
        )

        api = self._spawn(
            "api",
            ["infra.local.stack", "--serve", "api"],
            self._api_env(),
            # In real Stripe test mode nothing may point the API at another Stripe.
            without=REAL_AWS_SESSION_ENV + (("STRIPE_API_BASE",) if config.real_stripe else ()),
        )
        health = f"{config.api_url}/health"
        self._wait_until("api", api, lambda: self.answers(health, 200))
        self._announce("api", config.api_url, f"stage {API_STAGE}")
        print(
            f"{'admin':<9}{ADMIN_EMAIL} (password {ADMIN_PASSWORD}, "
            f"TOTP secret {ADMIN_TOTP_SECRET})",
            flush=True,
        )
        print(f"{'mail':<9}{config.mail_dir} (one .eml file per message sent)", flush=True)
        print("local stack ready; Ctrl-C stops it", flush=True)

    def watch(self) -> None:
        """Return when a stop is requested; raise if a service dies meanwhile."""
        while not self.stop_requested.wait(0.5):
            for child in self.children:
                code = child.process.poll()
                if code is not None:
                    raise StackError(f"{child.name} exited unexpectedly (exit code {code})")

    def shutdown(self) -> None:
        """Stop the children newest first (the API before what it talks to).

        Each gets SIGTERM to its process group and a grace period, then SIGKILL.
        """
        for child in reversed(self.children):
            _signal_group(child.process, signal.SIGTERM)
            try:
                child.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"{child.name} did not stop in time; killing it", file=sys.stderr)
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
            # Anything the child started in its group goes with it.
            _signal_group(child.process, signal.SIGKILL)
        self.children.clear()

    # -- helpers -----------------------------------------------------------------------------
    def _spawn(
        self,
        name: str,
        module_args: list[str],
        extra_env: Mapping[str, str] | None = None,
        without: tuple[str, ...] = (),
    ) -> Child:
        if self.stop_requested.is_set():
            raise StopRequested
        port = self.config.ports[name]
        process = subprocess.Popen(
            [sys.executable, "-m", *module_args, str(port)],
            cwd=PROJECT_DIR,
            env=self._child_env(extra_env, without),
            # Its own session and process group: the terminal's Ctrl-C reaches only this
            # supervisor, which then stops the children in order.
            start_new_session=True,
        )
        child = Child(name, process)
        self.children.append(child)
        return child

    def _child_env(
        self, extra_env: Mapping[str, str] | None, without: tuple[str, ...]
    ) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if k not in without},
            **(extra_env or {}),
            SUPERVISOR_PID_ENV: str(os.getpid()),
            STACK_ID_ENV: self.stack_id,
            "PYTHONUNBUFFERED": "1",
        }

    def answers(self, url: str, status: int | None = None) -> bool:
        """Whether this stack's service answers URL (with STATUS, when given)."""
        answer = http_answer(url)
        if answer is None or answer[1] != self.stack_id:
            return False  # nothing yet, or not this stack's: its service then exits, saying why
        return status is None or answer[0] == status

    def _wait_until(self, name: str, child: Child, answered: Callable[[], bool]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if self.stop_requested.is_set():
                raise StopRequested
            code = child.process.poll()
            if code is not None:
                raise StackError(
                    f"{name} exited with code {code} before answering (its output is above)"
                )
            if answered():
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{name} was not ready within {STARTUP_TIMEOUT_SECONDS:.0f} s "
                    "(its output is above)"
                )
            self.stop_requested.wait(POLL_SECONDS)

    def _ensure_table(self) -> bool:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        from infra.local.table import ensure_table

        client = boto3.client(
            "dynamodb",
            endpoint_url=self.config.dynamodb_url,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 (moto accepts any credentials)
            config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 3}),
        )
        try:
            return ensure_table(client, self.config.table_name)
        except (BotoCoreError, ClientError) as exc:
            raise StackError(
                f"dynamodb: could not create table {self.config.table_name}: {exc}"
            ) from exc

    def _make_mail_dir(self) -> None:
        try:
            self.config.mail_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StackError(
                f"mail: cannot create the mail folder {self.config.mail_dir} "
                f"({MAIL_DIR_VARIABLE}): {exc}"
            ) from exc

    def _seed(self) -> None:
        """Run ``infra.local.seed`` with the API's environment: SES sender verified, admin there
        (created, or already there).

        Like the services, it runs in a session of its own (the terminal's Ctrl-C reaches only
        this supervisor) and is stopped on a stop request.
        """
        if self.stop_requested.is_set():
            raise StopRequested
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local.seed"],
            cwd=PROJECT_DIR,
            env=self._child_env(self._api_env(), REAL_AWS_SESSION_ENV),
            stdout=subprocess.PIPE,  # the outcome; its errors go to this stack's stderr
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            try:
                out, _ = process.communicate(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                timed_out = time.monotonic() > deadline
                if not (self.stop_requested.is_set() or timed_out):
                    continue
                _signal_group(process, signal.SIGKILL)
                process.communicate()
                if timed_out:
                    raise StackError(
                        f"seed did not finish within {STARTUP_TIMEOUT_SECONDS:.0f} s"
                    ) from None
                raise StopRequested from None
        outcome = out.decode(errors="replace").strip()
        if process.returncode != 0 or outcome not in ("created", "exists"):
            raise StackError(
                f"seed (SES sender identity, admin {ADMIN_EMAIL}) failed with exit code "
                f"{process.returncode} {outcome!r} (its output is above)"
            )

    def _register_stripe_webhook(self) -> str:
        webhook_url = f"{self.config.api_url}{STRIPE_WEBHOOK_PATH}"
        body = json.dumps({"url": webhook_url, "secret": self.config.stripe_webhook_secret})
        status = http_status(
            f"{self.config.stripe_url}/_config/webhooks/{STRIPE_WEBHOOK_ID}",
            method="POST",
            body=body.encode(),
        )
        if status != 200:
            raise StackError(f"stripe: registering the webhook answered {status}")
        return webhook_url

    def _api_env(self) -> dict[str, str]:
        return api_environment(self.config)

    def _crypto_gateway_env(self) -> dict[str, str]:
        config = self.config
        return {
            "CRYPTO_WEBHOOK_URL": f"{config.api_url}{CRYPTO_WEBHOOK_PATH}",
            "CRYPTO_WEBHOOK_SECRET": config.crypto_webhook_secret,
            "CRYPTO_ADDRESS_SECRET": config.crypto_address_secret,
        }

    @staticmethod
    def _announce(name: str, url: str, detail: str) -> None:
        print(f"{name:<9}{url:<24}{detail}", flush=True)


def api_environment(config: StackConfig) -> dict[str, str]:
    """What the API process (and the seed, and ``infra.local.retry_payouts``) runs with."""
    if config.real_stripe:
        # Stripe itself: the developer's test key, and no STRIPE_API_BASE.
        stripe = {"STRIPE_API_KEY": config.stripe_api_key or ""}
    else:
        # localstripe, which accepts any key.
        stripe = {"STRIPE_API_BASE": config.stripe_url, "STRIPE_API_KEY": LOCAL_STRIPE_API_KEY}
    return {
        "STAGE": API_STAGE,
        "TABLE_NAME": config.table_name,
        "DYNAMODB_ENDPOINT": config.dynamodb_url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # Fake credentials: the API must never sign requests with real ones, even locally.
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        **stripe,
        "STRIPE_WEBHOOK_SECRET": config.stripe_webhook_secret,
        "CRYPTO_WEBHOOK_SECRET": config.crypto_webhook_secret,
        "CRYPTO_ADDRESS_SECRET": config.crypto_address_secret,
        "CRYPTO_GATEWAY_URL": config.crypto_url,
        # moto's server answers every AWS service on its port, SES included.
        "SES_ENDPOINT": config.dynamodb_url,
        "MAIL_DIR": str(config.mail_dir),
        "PUBLIC_BASE_URL": config.api_url,
    }


def use_running_stack(command: str) -> StackConfig | None:
    """For a command run beside ``make run`` (``make retry-payouts``, ...): point this process at
    the running stack as its API sees it (its table and endpoints, fake AWS credentials) and
    return the stack's configuration; None, after saying why on stderr, when the environment
    names no stack."""
    try:
        config = read_config(os.environ)
    except StackError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return None
    os.environ.update(api_environment(config))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    from chalicelib.config import get_settings

    get_settings.cache_clear()
    return config


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def run(environ: Mapping[str, str]) -> int:
    try:
        config = read_config(environ)
        check_ports_free(config)
    except StackError as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 1
    supervisor = Supervisor(config)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, supervisor.request_stop)
    try:
        supervisor.start()
        supervisor.watch()
        return 0
    except StopRequested:
        return 0
    except StackError as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 1
    finally:
        supervisor.shutdown()
        print("local stack stopped", flush=True)


# -- the children ----------------------------------------------------------------------------
def _on_stop_signals(action: Callable[[], Any]) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        action()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def serve_dynamodb(port: int) -> int:
    """moto's server (``infra.local.moto_server``) with its DynamoDB serialized and made to
    behave like DynamoDB under load (``infra.local.moto_dynamodb``)."""
    from infra.local.moto_dynamodb import install as patch_moto_dynamodb
    from infra.local.moto_server import create_server

    if not port_is_free(port):
        print(f"dynamodb: port {port} on {HOST} is already in use", file=sys.stderr)
        return 1
    patch_moto_dynamodb()
    server = create_server(HOST, port)
    # shutdown() waits for serve_forever() to return, so it must run on another thread.
    _on_stop_signals(lambda: threading.Thread(target=server.shutdown, daemon=True).start())
    exit_with_supervisor()
    server.serve_forever()
    server.server_close()
    return 0


def _stage_config() -> Any:
    from chalice.cli.factory import CLIFactory

    factory = CLIFactory(str(PROJECT_DIR), environ=os.environ)  # as `chalice local` builds it
    return factory.create_config_obj(chalice_stage_name=API_STAGE)


def load_api_gateway() -> Any:
    """The app of stage ``local`` behind the 404-aware gateway, as ``chalice local`` loads it.

    Runs in each API worker process (``infra.local.workers``).
    """
    from chalice.deploy.validate import validate_routes

    stack_env = {name: os.environ[name] for name in API_ENV_NAMES if name in os.environ}
    # Loading the app applies the stage's environment_variables from .chalice/config.json to
    # os.environ (as `chalice local` does); the stack's endpoints, table and secrets win.
    config = _stage_config()
    app = config.chalice_app
    os.environ.update(stack_env)
    # Only now: the gateway imports the app's logger, which reads its service name from the
    # environment the stage just set.
    from infra.local.gateway import NotFoundAwareGateway, as_local_app

    validate_routes(app.routes)
    return NotFoundAwareGateway(as_local_app(app), config)


def serve_api(port: int) -> int:
    """The API on PORT: a front that hands each request to one of several worker processes,
    each serving one request at a time like a Lambda container (``infra.local.workers``)."""
    from infra.local.workers import WorkerPool, create_server, request_timeout, worker_count

    try:
        size, timeout = worker_count(os.environ), request_timeout(os.environ)
    except ValueError as exc:
        print(f"api: {exc}", file=sys.stderr)
        return 1
    # The front logs too (a worker that failed): with the stage's settings, the stack's win.
    stack_env = {name: os.environ[name] for name in API_ENV_NAMES if name in os.environ}
    os.environ.update({**_stage_config().environment_variables, **stack_env})
    pool = WorkerPool(load_api_gateway, size, timeout)
    stopped = threading.Event()
    _on_stop_signals(stopped.set)
    exit_with_supervisor()
    scheduler = _start_scheduler()
    try:
        pool.start()
        if stopped.is_set():
            return 0
        server = create_server(pool, HOST, port)
        print(f"api: {size} workers (pids {', '.join(map(str, pool.pids()))})", flush=True)
        # shutdown() waits for serve_forever() to return, so it must run on another thread.
        threading.Thread(
            target=lambda: (stopped.wait(), server.shutdown()), name="api-stop", daemon=True
        ).start()
        server.serve_forever()
        server.server_close()
        return 0
    finally:
        pool.stop()
        scheduler.terminate()


def _start_scheduler() -> subprocess.Popen:
    """The scheduled jobs (mail, webhooks), every second, in a process of their own
    (infra/local/scheduler); it stops when this process does."""
    return subprocess.Popen(
        [sys.executable, "-m", "infra.local.scheduler", str(os.getpid())], cwd=PROJECT_DIR
    )


SERVERS: dict[str, Callable[[int], int]] = {"dynamodb": serve_dynamodb, "api": serve_api}


def main(argv: list[str]) -> int:
    if not argv:
        return run(os.environ)
    if len(argv) == 3 and argv[0] == "--serve" and argv[1] in SERVERS and argv[2].isdigit():
        return SERVERS[argv[1]](int(argv[2]))
    print("usage: python -m infra.local.stack", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

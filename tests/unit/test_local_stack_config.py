"""The local stack's decisions from its environment (infra/local/stack.py), with no process started
and no network: ports (the crypto gateway's included), localstripe versus real Stripe test mode,
and what the API is given in each."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from infra.local import stack, workers
from infra.local.stack import StackConfig, StackError, Supervisor, api_environment, read_config

REAL = {"STRIPE_API_KEY": "sk_test_abc123", "STRIPE_WEBHOOK_SECRET": "whsec_from_stripe_listen"}


def test_by_default_localstripe_and_the_fake_crypto_gateway_on_their_ports():
    config = read_config({})
    assert not config.real_stripe
    assert config.ports == {"api": 8000, "dynamodb": 8001, "stripe": 8002, "crypto": 8003}
    env = api_environment(config)
    assert env["STRIPE_API_BASE"] == "http://127.0.0.1:8002"
    assert env["STRIPE_API_KEY"] == "sk_test_local"
    assert env["STRIPE_WEBHOOK_SECRET"] == "whsec_local"
    assert env["CRYPTO_GATEWAY_URL"] == "http://127.0.0.1:8003"
    assert env["CRYPTO_WEBHOOK_SECRET"] == "crypto_local"
    assert env["CRYPTO_ADDRESS_SECRET"] == "crypto-address-local"


def test_the_crypto_port_is_configurable_and_must_be_its_own():
    assert read_config({"LEDGER_CRYPTO_PORT": "9003"}).crypto_url == "http://127.0.0.1:9003"
    with pytest.raises(StackError, match="LEDGER_CRYPTO_PORT=8000"):
        read_config({"LEDGER_CRYPTO_PORT": "8000"})
    with pytest.raises(StackError, match="LEDGER_CRYPTO_PORT"):
        read_config({"LEDGER_CRYPTO_PORT": "port"})


def test_a_stripe_test_key_and_webhook_secret_mean_real_stripe_test_mode():
    config = read_config(REAL)
    assert config.real_stripe
    assert "stripe" not in config.ports  # localstripe is not started
    env = api_environment(config)
    assert "STRIPE_API_BASE" not in env  # the stripe library's default: Stripe itself
    assert env["STRIPE_API_KEY"] == "sk_test_abc123"
    assert env["STRIPE_WEBHOOK_SECRET"] == "whsec_from_stripe_listen"
    assert config.stripe_forwarding == (
        "stripe listen --forward-to http://127.0.0.1:8000/v1/webhooks/stripe"
    )
    # localstripe's port is not used, so it may be anything, even another service's.
    assert read_config({**REAL, "LEDGER_STRIPE_PORT": "8000"}).real_stripe


def test_real_stripe_without_the_webhook_secret_refuses_to_start_and_says_what_to_do():
    with pytest.raises(StackError) as refused:
        read_config({"STRIPE_API_KEY": "sk_test_abc123", "LEDGER_API_PORT": "9000"})
    message = str(refused.value)
    assert "STRIPE_WEBHOOK_SECRET is not" in message
    assert "stripe listen --forward-to http://127.0.0.1:<LEDGER_API_PORT, 8000>" in message
    assert "/v1/webhooks/stripe" in message


@pytest.mark.parametrize("key", ["sk_live_abc", "rk_live_abc", "pk_test_abc", "whatever"])
def test_a_key_that_is_not_a_secret_test_key_is_refused(key):
    with pytest.raises(StackError, match="not a Stripe test key"):
        read_config({**REAL, "STRIPE_API_KEY": key})


def test_a_blank_key_is_localstripe():
    assert not read_config({"STRIPE_API_KEY": "  ", "STRIPE_WEBHOOK_SECRET": ""}).real_stripe


def test_the_stripe_port_is_checked_only_when_localstripe_runs(unused_port: int):
    api, dynamodb, crypto = spare_ports(3)
    ports = {
        "LEDGER_API_PORT": str(api),
        "LEDGER_DYNAMODB_PORT": str(dynamodb),
        "LEDGER_CRYPTO_PORT": str(crypto),
        "LEDGER_STRIPE_PORT": str(unused_port),
    }
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", unused_port))
        squatter.listen()
        with pytest.raises(StackError, match="LEDGER_STRIPE_PORT"):
            stack.check_ports_free(read_config(ports))
        stack.check_ports_free(read_config({**ports, **REAL}))  # not started: not checked


@pytest.fixture
def unused_port() -> int:
    return spare_ports(1)[0]


def spare_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class DryRun(Supervisor):
    """The supervisor's start-up sequence with every process, wait and write replaced."""

    def __init__(self, config: StackConfig) -> None:
        super().__init__(config)
        self.spawned: list[tuple[str, dict[str, str], tuple[str, ...]]] = []

    def _spawn(self, name, module_args, extra_env=None, without=()):  # type: ignore[override]
        self.spawned.append((name, dict(extra_env or {}), without))
        return stack.Child(name, subprocess.Popen(["true"]))

    def _wait_until(self, name, child, answered) -> None:  # type: ignore[override]
        child.process.wait()

    def _ensure_table(self) -> bool:
        return True

    def _make_mail_dir(self) -> None:
        pass

    def _seed(self) -> None:
        pass

    def _register_stripe_webhook(self) -> str:
        return "registered"


def test_in_real_stripe_mode_the_stack_starts_no_localstripe_and_prints_the_forwarding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run = DryRun(read_config({**REAL, "LEDGER_MAIL_DIR": str(tmp_path)}))
    run.start()
    names = [name for name, _, _ in run.spawned]
    assert names == ["dynamodb", "crypto", "api"]
    _, api_env, without = run.spawned[-1]
    assert "STRIPE_API_BASE" not in api_env
    assert "STRIPE_API_BASE" in without  # not even from the caller's environment
    assert api_env["STRIPE_API_KEY"] == "sk_test_abc123"
    out = capsys.readouterr().out
    assert "real Stripe test mode" in out
    assert "stripe listen --forward-to http://127.0.0.1:8000/v1/webhooks/stripe" in out
    assert "STRIPE_WEBHOOK_SECRET" in out


def test_with_localstripe_the_stack_starts_it_before_the_crypto_gateway_and_the_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    run = DryRun(read_config({"LEDGER_MAIL_DIR": str(tmp_path)}))
    run.start()
    assert [name for name, _, _ in run.spawned] == ["dynamodb", "stripe", "crypto", "api"]
    _, crypto_env, _ = run.spawned[2]
    assert crypto_env == {
        "CRYPTO_WEBHOOK_URL": "http://127.0.0.1:8000/v1/webhooks/crypto",
        "CRYPTO_WEBHOOK_SECRET": "crypto_local",
        "CRYPTO_ADDRESS_SECRET": "crypto-address-local",
    }
    _, api_env, without = run.spawned[-1]
    assert api_env["STRIPE_API_BASE"] == "http://127.0.0.1:8002"
    assert "STRIPE_API_BASE" not in without
    out = capsys.readouterr().out
    assert "stripe listen" not in out
    assert "crypto   http://127.0.0.1:8003" in out


def test_the_api_runs_one_worker_per_core_and_at_least_two(monkeypatch):
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 1)
    assert workers.worker_count({}) == 2
    monkeypatch.setattr(workers.os, "cpu_count", lambda: 8)
    assert workers.worker_count({}) == 8
    assert workers.worker_count({"LEDGER_API_WORKERS": "3"}) == 3


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_worker_count_that_is_not_a_positive_number_is_refused(raw):
    with pytest.raises(ValueError, match="LEDGER_API_WORKERS"):
        workers.worker_count({"LEDGER_API_WORKERS": raw})


def test_the_request_timeout_is_sixty_seconds_unless_set():
    assert workers.request_timeout({}) == 60.0
    assert workers.request_timeout({"LEDGER_API_TIMEOUT": "2.5"}) == 2.5
    for raw in ("0", "soon", "-3"):
        with pytest.raises(ValueError, match="LEDGER_API_TIMEOUT"):
            workers.request_timeout({"LEDGER_API_TIMEOUT": raw})

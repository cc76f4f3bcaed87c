"""Outbound webhooks, the rules (no I/O): the signature, the back-off schedule, the delivery's
life, and the URL policy against SSRF with an injected resolver."""

from __future__ import annotations

import random
import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.webhook_http import HttpWebhookSender
from chalicelib.domain.errors import InvalidRequest, InvalidWebhookUrl
from chalicelib.domain.signatures import signature_header
from chalicelib.domain.webhook_urls import address_refusal, parse_target
from chalicelib.domain.webhooks import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    GIVE_UP_SECONDS,
    Attempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
    backoff_seconds,
    delivery_id,
    derive_endpoint_secret,
    parse_event_types,
    payload,
)
from chalicelib.services import crypto

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _event() -> WebhookEvent:
    return WebhookEvent.about(
        WebhookEventType.PAYMENT_RECEIVED, "txn_1", "fac_1", "2026-12-01T12:00:00.000000Z", {}
    )


def _endpoint() -> WebhookEndpoint:
    return WebhookEndpoint.new("fac_1", "https://a.example/h", ["payment.received"], "2026-12-01")


# -- the signature --------------------------------------------------------------------------------
def test_the_signature_is_the_scheme_our_own_crypto_webhook_verifier_accepts():
    body = payload(_event())
    header = signature_header("whsec_x", 1_800_000_000, body)

    assert header.startswith("t=1800000000,v1=")
    assert crypto.verify(body, header, "whsec_x", now=1_800_000_000).id == _event().id
    with pytest.raises(Exception, match="does not match"):
        crypto.verify(body, header, "whsec_other", now=1_800_000_000)
    with pytest.raises(Exception, match="does not match"):
        crypto.verify(body + b" ", header, "whsec_x", now=1_800_000_000)


def test_the_payload_is_the_event_with_its_id():
    event = WebhookEvent.about(
        WebhookEventType.PAYOUT_COMPLETED, "po_1", "fac_1", "2026-12-01T12:00:00Z", {"n": 1}
    )
    assert payload(event) == (
        b'{"created_at":"2026-12-01T12:00:00Z","data":{"n":1},'
        b'"id":"' + event.id.encode() + b'","type":"payout.completed"}'
    )


def test_an_endpoint_secret_is_derived_from_the_master_key_and_the_endpoint():
    endpoint = _endpoint()
    secret = endpoint.secret("master")

    assert secret.startswith("whsec_")
    assert len(secret) == 6 + 64
    assert secret == derive_endpoint_secret("master", endpoint.id, endpoint.secret_nonce)
    assert endpoint.secret("another master") != secret
    assert _endpoint().secret("master") != secret  # another endpoint, another secret


def test_event_types_must_be_a_non_empty_set_of_known_ones():
    assert parse_event_types(["payout.completed", "payment.received", "payment.received"]) == (
        WebhookEventType.PAYMENT_RECEIVED,
        WebhookEventType.PAYOUT_COMPLETED,
    )
    for bad in ([], ["payment.sent"]):
        with pytest.raises(InvalidRequest):
            parse_event_types(bad)


def test_one_delivery_id_per_event_and_endpoint():
    assert delivery_id("evt_1", "we_1") == delivery_id("evt_1", "we_1")
    assert len({delivery_id("evt_1", "we_1"), delivery_id("evt_1", "we_2")}) == 2
    assert len({delivery_id("evt_1", "we_1"), delivery_id("evt_2", "we_1")}) == 2


# -- back-off and the delivery's life --------------------------------------------------------------
class _Top(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


def test_back_off_is_exponential_with_full_jitter_and_capped():
    ceilings = [backoff_seconds(n, _Top()) for n in range(1, 14)]

    assert ceilings[:4] == [30, 60, 120, 240]
    assert ceilings[-1] == BACKOFF_CAP_SECONDS  # 6 h
    rng = random.Random(7)
    samples = [backoff_seconds(3, rng) for _ in range(500)]
    assert 0 <= min(samples) < 10
    assert 110 < max(samples) <= 4 * BACKOFF_BASE_SECONDS
    assert backoff_seconds(10_000, rng) <= BACKOFF_CAP_SECONDS


def test_a_failed_attempt_is_retried_until_three_days_after_the_first_then_fails():
    delivery = WebhookDelivery.of(_event(), _endpoint(), "2026-12-01T12:00:00.000000Z")
    rng = _Top()
    now = T0
    first = delivery.after(Attempt(500, "non-2xx"), now, rng)
    assert (first.status, first.attempts, first.last_status_code) == (
        DeliveryStatus.PENDING,
        1,
        500,
    )
    assert first.next_attempt_at == "2026-12-01T12:00:30.000000Z"
    assert first.first_attempt_at == "2026-12-01T12:00:00.000000Z"

    current = first
    while current.status is DeliveryStatus.PENDING:
        now = datetime.fromisoformat(current.next_attempt_at.replace("Z", "+00:00"))
        current = current.after(Attempt(None, "timeout"), now, rng)
    assert current.status is DeliveryStatus.FAILED
    assert now == T0 + timedelta(seconds=GIVE_UP_SECONDS)  # the last attempt is at the limit
    assert current.next_attempt_at is None
    assert current.first_attempt_at == first.first_attempt_at
    assert current.event.id == delivery.event.id

    succeeded = first.after(Attempt(204), T0 + timedelta(minutes=1), rng)
    assert succeeded.status is DeliveryStatus.SUCCEEDED
    assert succeeded.next_attempt_at is None
    assert Attempt(299).succeeded
    assert not Attempt(301).succeeded
    assert not Attempt(None).succeeded


def test_an_endpoint_fails_too_long_after_three_days_without_success():
    endpoint = _endpoint()
    assert not endpoint.failing_too_long(T0)
    failing = WebhookEndpoint(**{**endpoint.__dict__, "failing_since": "2026-12-01T12:00:00Z"})
    assert not failing.failing_too_long(T0 + timedelta(days=3, seconds=-1))
    assert failing.failing_too_long(T0 + timedelta(days=3))


# -- the URL policy -------------------------------------------------------------------------------
REFUSED_ADDRESSES = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "127.0.0.1",
    "127.1.2.3",
    "169.254.169.254",  # the cloud's instance metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",  # noqa: S104 - an address refused, not bound
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "fec0::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
]


@pytest.mark.parametrize("text", REFUSED_ADDRESSES)
def test_non_public_addresses_are_refused(text):
    import ipaddress

    assert address_refusal(ipaddress.ip_address(text)) is not None


@pytest.mark.parametrize("text", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1"])
def test_public_addresses_are_allowed(text):
    import ipaddress

    assert address_refusal(ipaddress.ip_address(text)) is None


def _sender(answers: dict[str, list[str]], *, local: bool = False) -> HttpWebhookSender:
    def resolve(host: str, port: int) -> list[str]:
        return list(answers[host])

    return HttpWebhookSender(allow_loopback=local, resolver=resolve)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/x", "https"),
        ("ftp://hooks.example.com/x", "https"),
        ("https://user:pw@hooks.example.com/x", "user name"),
        ("https://user@hooks.example.com/x", "user name"),
        ("https://hooks.example.com/x#frag", "fragment"),
        ("https:///x", "host"),
        ("https://localhost/x", "host name"),
        ("https://hooks.example.com:99999/x", "valid URL"),
        ("https://hooks.example.com/" + "a" * 2100, "at most"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https://10.1.2.3/x", "private"),
        ("https://[::1]/x", "loopback"),
        ("https://[::ffff:169.254.169.254]/x", "embeds"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://private.example.com/x", "private"),
        ("https://meta.example.com/x", "link-local"),
        ("https://v6.example.com/x", "unique-local|private"),
        ("https://mapped.example.com/x", "embeds"),
        ("https://mixed.example.com/x", "private"),  # one public, one private: refused
        ("https://nothing.example.com/x", "does not resolve"),
        ("http://127.0.0.1:8080/x", "https"),  # the loopback receiver, outside a local stage
        ("https://127.0.0.1:8443/x", "loopback"),
    ],
)
def test_a_deployed_stage_refuses_urls_that_could_reach_inside(url, reason):
    sender = _sender(
        {
            "private.example.com": ["10.0.0.7"],
            "meta.example.com": ["169.254.169.254"],
            "v6.example.com": ["fd00::5"],
            "mapped.example.com": ["::ffff:192.168.0.1"],
            "mixed.example.com": ["93.184.215.14", "192.168.0.1"],
            "nothing.example.com": [],
        }
    )
    with pytest.raises(InvalidWebhookUrl, match=reason):
        sender.check(url)


def test_a_deployed_stage_accepts_https_to_public_hosts():
    sender = _sender({"hooks.example.com": ["93.184.215.14", "2606:2800:220:1::1"]})
    sender.check("https://hooks.example.com/ledger?x=1")
    sender.check("https://hooks.example.com:8443/")
    sender.check("https://93.184.215.14/")


def test_the_local_stages_also_take_the_loopback_receiver_and_nothing_else_local():
    sender = _sender({"private.example.com": ["10.0.0.7"]}, local=True)
    sender.check("http://127.0.0.1:8080/hook")
    target = parse_target("http://127.0.0.1:8080/hook?a=1", allow_loopback=True)
    assert (target.host, target.port, target.path) == ("127.0.0.1", 8080, "/hook?a=1")
    for url in (
        "http://127.0.0.1/hook",  # no port: not the local receiver form
        "http://127.0.0.2:8080/hook",
        "http://localhost:8080/hook",
        "https://private.example.com/x",
        "https://169.254.169.254/x",
    ):
        with pytest.raises(InvalidWebhookUrl):
            sender.check(url)


def test_each_delivery_checks_again_and_connects_to_the_address_it_checked(monkeypatch):
    """DNS rebinding: the name resolved to a public address at registration and to a private one
    now; the delivery is refused without connecting. And when the name is public, the connection
    goes to the checked address (one lookup), not to a second lookup of the name."""
    answers = {"rebind.example.com": ["93.184.215.14"]}
    sender = _sender(answers)
    sender.check("https://rebind.example.com/h")
    answers["rebind.example.com"] = ["127.0.0.1"]
    connected: list[tuple] = []

    def no_connection(address, *args, **kwargs):
        connected.append(address)
        raise OSError("refused")

    monkeypatch.setattr("socket.create_connection", no_connection)
    attempt = sender.post("https://rebind.example.com/h", b"{}", {})
    assert attempt.status_code is None
    assert "refused" in (attempt.error or "")
    assert connected == []

    lookups: list[str] = []

    def once(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["93.184.215.14"] if len(lookups) == 1 else ["10.0.0.1"]

    pinned = HttpWebhookSender(allow_loopback=False, resolver=once)
    attempt = pinned.post("https://rebind.example.com:8443/h", b"{}", {})
    assert lookups == ["rebind.example.com"]
    assert connected == [("93.184.215.14", 8443)]
    assert attempt.status_code is None


def test_the_documented_verification_snippet_verifies_our_signature():
    """docs/facilities.md's Python snippet, run as written, on a body we signed."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "facilities.md").read_text()
    section = text[text.index("### Verifying the signature") :]
    begin = section.index("```python\n") + len("```python\n")
    snippet = section[begin : section.index("\n```", begin)]
    namespace: dict = {}
    exec(compile(snippet, "facilities.md", "exec"), namespace)  # noqa: S102 - our own docs
    verify_webhook = namespace["verify_webhook"]

    body = payload(_event())
    header = signature_header("whsec_abc", 1_800_000_000, body)
    assert verify_webhook("whsec_abc", header, body, now=1_800_000_100)["id"] == _event().id
    for secret, raw, now in (
        ("whsec_other", body, 1_800_000_100),
        ("whsec_abc", body + b" ", 1_800_000_100),
        ("whsec_abc", body, 1_800_000_301),  # too old
    ):
        with pytest.raises(ValueError, match="X-Signature"):
            verify_webhook(secret, header, raw, now=now)


def test_https_goes_to_the_checked_address_with_the_names_sni_host_and_certificate(tmp_path):
    """A TLS receiver on 127.0.0.1 with a certificate for hooks.example.test: the connection is
    made to the address, the TLS SNI and Host header carry the name, and the certificate is
    verified against the name (a certificate for another name is refused)."""
    import http.server
    import ssl
    import subprocess
    import threading
    import time

    from chalicelib.adapters.webhook_http import _Deadline, _PinnedHTTPSConnection

    def certificate(name: str) -> tuple[str, str]:
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        subprocess.run(
            [
                "/usr/bin/openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                f"/CN={name}",
                "-addext",
                f"subjectAltName=DNS:{name}",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        return str(cert), str(key)

    seen: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen["host"] = self.headers["Host"]
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    cert, key = certificate("hooks.example.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server_tls.sni_callback = lambda sock, name, ctx: seen.__setitem__("sni", name)
    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        trusting = ssl.create_default_context(cafile=cert)
        connection = _PinnedHTTPSConnection(
            "hooks.example.test", port, "127.0.0.1", _Deadline(5, time.monotonic), trusting
        )
        connection.request("POST", "/h", body=b"{}")
        assert connection.getresponse().status == 204
        connection.close()
        assert seen == {"sni": "hooks.example.test", "host": f"hooks.example.test:{port}"}

        other_cert, _ = certificate("elsewhere.example.test")
        wrong = ssl.create_default_context(cafile=other_cert)
        connection = _PinnedHTTPSConnection(
            "hooks.example.test", port, "127.0.0.1", _Deadline(5, time.monotonic), wrong
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            connection.request("POST", "/h", body=b"{}")
        connection.close()
    finally:
        server.shutdown()
        server.server_close()


def _drip_server(drips: int) -> tuple[int, threading.Event]:
    """A receiver on 127.0.0.1 that answers 200, its status line one byte per read (``drips``
    bytes, each in its own send, then the rest); it stops when the client hangs up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    done = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            connection.recv(65536)
            for _ in range(drips):
                connection.sendall(b" ")  # folded whitespace before the status line: no answer
                done.wait(0.01)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass  # the client hung up at its deadline
        finally:
            connection.close()
            listener.close()
            done.set()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], done


def test_an_answer_dripped_a_byte_at_a_time_is_no_answer_at_the_attempts_deadline():
    """The timeout bounds the whole attempt, not each read: a clock that moves 1 s per look and a
    10 s deadline stop the attempt after a few reads, although each read gets bytes at once."""
    port, done = _drip_server(drips=2000)
    ticks = iter(range(100_000))
    sender = HttpWebhookSender(allow_loopback=True, timeout=10.0, clock=lambda: float(next(ticks)))
    attempt = sender.post(f"http://127.0.0.1:{port}/h", b"{}", {})
    assert attempt == Attempt(None, "no answer within 10 s")
    assert done.wait(30)

"""Outbound webhooks over HTTP (API.md, "Outbound webhooks"): a facility registers, lists and
disables endpoints with a key of scope ``webhooks``; the URL policy refuses what could reach
inside; a payment to the facility becomes exactly one signed delivery to a real receiver on
127.0.0.1, retried with back-off under the same event id, given up after 3 days (the endpoint then
disabled, audited and alerted); deliveries are listed and retried; two workers never send one
delivery at once."""

# ruff: noqa: F811 - `people` is a fixture imported from test_transfers

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.webhook_http import HttpWebhookSender
from chalicelib.api import dependencies, jobs
from chalicelib.domain.webhooks import GIVE_UP_SECONDS, event_id
from tests.api.helpers import call
from tests.api.test_facility_keys import issue
from tests.api.test_transfers import people, send  # noqa: F401 (a fixture)
from tests.support import scan
from tests.webhook_receiver import Receiver, receiver, verify

ENDPOINTS = "/v1/facility/webhook-endpoints"
DELIVERIES = "/v1/facility/webhook-deliveries"


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, subject: str, message: str) -> bool:
        self.sent.append((subject, message))
        return True


def _facility(client, people, name: str = "Clinic") -> str:
    response, body = call(
        client, "POST", "/v1/admin/facilities", people["tokens"]["admin"], {"name": name}
    )
    assert response.status_code == 201, body
    return body["facility"]["id"]


@pytest.fixture
def facility_id(api_client, people):
    return _facility(api_client, people)


@pytest.fixture
def key(api_client, people, facility_id):
    status, created = issue(api_client, people, facility_id, scopes=["webhooks"])
    assert status == 201, created
    return created["secret"]


@pytest.fixture
def hooks() -> Receiver:
    with receiver() as running:
        yield running


def as_facility(client, method: str, path: str, secret: str, body=None):
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    raw = json.dumps(body).encode() if body is not None else b""
    response = client.http.request(method, path, headers=headers, body=raw)
    return response, json.loads(response.body)


def register(client, secret: str, url: str, events=("payment.received",)):
    return as_facility(client, "POST", ENDPOINTS, secret, {"url": url, "events": list(events)})


def pay(client, people, facility_id: str, amount: str = "1.50", key: str = "pay-1"):
    response, body = send(
        client,
        people["tokens"]["alice"],
        {"amount": amount, "currency": "USD", "to_facility_id": facility_id, "memo": "visit"},
        key=key,
    )
    assert response.status_code == 201, body
    return body["transaction"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def worker():
    """The service the scheduled function uses, with a clock the test moves and alerts it keeps."""
    service = dependencies.get_webhooks()
    service.clock = Clock()
    service.alerts = Alerts()
    return service


# -- endpoints ------------------------------------------------------------------------------------
def test_a_facility_registers_lists_and_disables_endpoints(api_client, key, hooks, table):
    response, created = register(
        api_client, key, hooks.url, ["payout.completed", "payment.received"]
    )
    assert response.status_code == 201, created
    endpoint, secret = created["endpoint"], created["secret"]
    assert secret.startswith("whsec_")
    assert (endpoint["url"], endpoint["status"]) == (hooks.url, "enabled")
    assert endpoint["events"] == ["payment.received", "payout.completed"]
    assert endpoint["id"].startswith("we_")
    assert endpoint["created_at"].endswith("Z")

    response, second = register(api_client, key, hooks.url + "/2")
    response, listed = as_facility(api_client, "GET", ENDPOINTS, key)
    assert response.status_code == 200
    assert [e["id"] for e in listed["data"]] == [second["endpoint"]["id"], endpoint["id"]]
    assert secret not in json.dumps(listed)

    path = f"{ENDPOINTS}/{endpoint['id']}/disable"
    response, disabled = as_facility(api_client, "POST", path, key)
    assert response.status_code == 200, disabled
    assert disabled["endpoint"]["status"] == "disabled"
    assert disabled["endpoint"]["disabled_reason"] == "disabled by the facility"
    again, _ = as_facility(api_client, "POST", path, key)
    assert again.status_code == 200

    items = scan(table)
    assert secret not in json.dumps(items, default=str)  # derived, never stored
    audit = [i for i in items if i["item_type"] == "audit"]
    created_events = [a for a in audit if a["action"] == "facility.webhook_endpoint_created"]
    disabled_events = [a for a in audit if a["action"] == "facility.webhook_endpoint_disabled"]
    assert len(created_events) == 2
    assert len(disabled_events) == 1
    assert disabled_events[0]["target"] == endpoint["id"]


def test_another_facilitys_endpoint_is_not_found(api_client, people, key, hooks):
    other = _facility(api_client, people, "Other")
    _, other_key = issue(api_client, people, other, scopes=["webhooks"])
    _, theirs = register(api_client, other_key["secret"], hooks.url)
    for endpoint_id in (theirs["endpoint"]["id"], "we_nothing", "we_" + "0" * 3000):
        response, body = as_facility(api_client, "POST", f"{ENDPOINTS}/{endpoint_id}/disable", key)
        assert (response.status_code, body["error"]["code"]) == (404, "not_found")
    _, listed = as_facility(api_client, "GET", ENDPOINTS, key)
    assert listed["data"] == []


def test_webhook_routes_need_the_webhooks_scope(api_client, people, facility_id, hooks):
    _, read_only = issue(api_client, people, facility_id, scopes=["read"])
    for method, path in (
        ("POST", ENDPOINTS),
        ("GET", ENDPOINTS),
        ("POST", f"{ENDPOINTS}/we_x/disable"),
        ("GET", DELIVERIES),
        ("POST", f"{DELIVERIES}/whd_x/retry"),
    ):
        body = {"url": hooks.url, "events": ["payment.received"]} if path == ENDPOINTS else None
        response, answer = as_facility(api_client, method, path, read_only["secret"], body)
        assert (response.status_code, answer["error"]["code"]) == (403, "forbidden"), path
        response, answer = as_facility(api_client, method, path, people["tokens"]["alice"], body)
        assert response.status_code == 403, path
        response, answer = as_facility(api_client, method, path, "fk_0000000000000000_x", body)
        assert response.status_code == 401, path


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1:9/h", "events": []},
        {"url": "http://127.0.0.1:9/h", "events": ["payment.sent"]},
        {"url": "http://127.0.0.1:9/h", "events": "payment.received"},
        {"url": "http://127.0.0.1:9/h"},
        {"events": ["payment.received"]},
        {"url": 5, "events": ["payment.received"]},
        {"url": "http://127.0.0.1:9/" + "a" * 2100, "events": ["payment.received"]},
        {"url": "http://127.0.0.1:9/h", "events": ["payment.received"], "secret": "mine"},
        {"url": "not a url", "events": ["payment.received"]},
        {"url": "http://hooks.example.com/h", "events": ["payment.received"]},
        {"url": "https://10.0.0.1/h", "events": ["payment.received"]},
    ],
)
def test_a_bad_endpoint_is_invalid_request(api_client, key, body):
    response, answer = as_facility(api_client, "POST", ENDPOINTS, key, body)
    assert (response.status_code, answer["error"]["code"]) == (400, "invalid_request"), answer


def test_only_the_local_and_test_stages_take_the_loopback_receiver(monkeypatch):
    from chalicelib.config import get_settings

    for stage, allowed in (("local", True), ("test", True), ("dev", False), ("prod", False)):
        monkeypatch.setenv("STAGE", stage)
        get_settings.cache_clear()
        dependencies.reset()
        assert dependencies.get_webhook_sender().allow_loopback is allowed, stage


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:8080/h", "https"),
        ("https://127.0.0.1:8443/h", "loopback"),
        ("https://internal.example.com/h", "private"),
        ("https://metadata.example.com/h", "link-local"),
        ("https://v6.example.com/h", "private"),
        ("https://mapped.example.com/h", "embeds"),
        ("https://[::ffff:10.0.0.1]/h", "embeds"),
        ("https://user:pw@hooks.example.com/h", "user name"),
    ],
)
def test_a_deployed_stage_refuses_urls_that_reach_inside(api_client, key, monkeypatch, url, says):
    answers = {
        "hooks.example.com": ["93.184.215.14"],
        "internal.example.com": ["10.1.2.3"],
        "metadata.example.com": ["169.254.169.254"],
        "v6.example.com": ["fd00::1"],
        "mapped.example.com": ["::ffff:172.16.0.1"],
    }
    deployed = HttpWebhookSender(allow_loopback=False, resolver=lambda host, port: answers[host])
    monkeypatch.setattr(dependencies, "get_webhook_sender", lambda: deployed)
    dependencies.get_webhooks.cache_clear()

    response, answer = register(api_client, key, url)
    assert (response.status_code, answer["error"]["code"]) == (400, "invalid_request")
    assert says in answer["error"]["message"]
    response, ok = register(api_client, key, "https://hooks.example.com/h")
    assert response.status_code == 201, ok


# -- deliveries -----------------------------------------------------------------------------------
def test_a_payment_is_delivered_signed_and_a_500_is_retried_with_the_same_event_id(
    api_client,
    people,
    facility_id,
    key,
    hooks,
    worker,
):
    _, created = register(api_client, key, hooks.url)
    secret = created["secret"]
    hooks.statuses = [500]
    txn = pay(api_client, people, facility_id)

    assert jobs.run_webhook_delivery()["deliveries_created"] == 1
    (first,) = hooks.wait_for(1)
    assert verify(secret, first.headers["X-Signature"], first.body)
    assert not verify("whsec_" + "0" * 64, first.headers["X-Signature"], first.body)
    event = json.loads(first.body)
    assert event["id"] == event_id("payment.received", txn["id"])
    assert event["type"] == "payment.received"
    assert event["data"] == {
        "transaction_id": txn["id"],
        "amount": "1.50",
        "currency": "USD",
        "from_user_id": people["alice"].id,
        "memo": "visit",
    }
    assert first.path == "/hooks"
    assert first.headers["Content-Type"] == "application/json"

    _, listed = as_facility(api_client, "GET", DELIVERIES, key)
    (delivery,) = listed["data"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
        "pending",
        1,
        500,
    )
    assert delivery["event_id"] == event["id"]
    assert delivery["endpoint_id"] == created["endpoint"]["id"]
    waited = datetime.fromisoformat(delivery["next_attempt_at"].replace("Z", "+00:00"))
    assert timedelta(0) <= waited - worker.clock.now <= timedelta(seconds=30)

    worker.clock.now = waited
    jobs.run_webhook_delivery()
    second = hooks.wait_for(2)[1]
    assert json.loads(second.body)["id"] == event["id"]  # the same event, again
    assert verify(secret, second.headers["X-Signature"], second.body)
    _, listed = as_facility(api_client, "GET", DELIVERIES, key)
    assert (listed["data"][0]["status"], listed["data"][0]["attempts"]) == ("succeeded", 2)
    assert listed["data"][0]["next_attempt_at"] is None
    jobs.run_webhook_delivery()
    assert len(hooks.received) == 2  # nothing more to send


def test_a_retried_payment_gives_exactly_one_delivery(
    api_client,
    people,
    facility_id,
    key,
    hooks,
    worker,
    table,
):
    register(api_client, key, hooks.url)
    first = pay(api_client, people, facility_id, key="same")
    again = pay(api_client, people, facility_id, key="same")  # a retry of the same request
    assert first["id"] == again["id"]
    outcomes = jobs.run_webhook_delivery()
    assert outcomes["deliveries_created"] == 1
    assert jobs.run_webhook_delivery()["deliveries_created"] == 0  # a second run: nothing new
    hooks.wait_for(1)
    _, listed = as_facility(api_client, "GET", DELIVERIES, key)
    assert [d["event_type"] for d in listed["data"]] == ["payment.received"]
    assert len(hooks.received) == 1
    # a payment to a user, and a refused payment, write no facility event
    send(
        api_client,
        people["tokens"]["alice"],
        {"amount": "1", "currency": "USD", "to_email": "bob@example.com"},
        key="to-bob",
    )
    response, _ = send(
        api_client,
        people["tokens"]["alice"],
        {"amount": "999", "currency": "USD", "to_facility_id": facility_id},
        key="too-much",
    )
    assert response.status_code == 422
    assert [i for i in scan(table) if i["item_type"] == "outbound_event"] == []
    assert len([i for i in scan(table) if i["item_type"] == "webhook_delivery"]) == 1


def test_a_payment_retried_after_its_replay_record_expired_gives_no_second_event(
    api_client, people, facility_id, key, hooks, worker, table
):
    """The event item is gone once fanned out, and the replay record can expire: the derived
    transaction id still makes the retry move no money and write no event."""
    from chalicelib.adapters.dynamo.models import IdempotencyItem

    register(api_client, key, hooks.url)
    first = pay(api_client, people, facility_id, key="expired")
    assert jobs.run_webhook_delivery()["deliveries_created"] == 1
    for item in IdempotencyItem.scan(IdempotencyItem.item_type == IdempotencyItem.ITEM_TYPE):
        item.delete()  # as if its 24 h TTL had passed
    again = pay(api_client, people, facility_id, key="expired")
    assert again["id"] == first["id"]
    assert [i for i in scan(table) if i["item_type"] == "outbound_event"] == []
    assert jobs.run_webhook_delivery()["deliveries_created"] == 0
    hooks.wait_for(1)
    assert len(hooks.received) == 1
    people["world"].check_guarantees()


def test_only_enabled_endpoints_that_want_the_type_get_a_delivery(
    api_client,
    people,
    facility_id,
    key,
    hooks,
    worker,
):
    _, wanted = register(api_client, key, hooks.url + "/a")
    register(api_client, key, hooks.url + "/b", ["payout.completed"])
    _, off = register(api_client, key, hooks.url + "/c")
    as_facility(api_client, "POST", f"{ENDPOINTS}/{off['endpoint']['id']}/disable", key)
    pay(api_client, people, facility_id)
    assert jobs.run_webhook_delivery()["deliveries_created"] == 1
    assert [r.path for r in hooks.wait_for(1)] == ["/hooks/a"]
    _response, listed = as_facility(
        api_client, "GET", f"{DELIVERIES}?endpoint_id={wanted['endpoint']['id']}", key
    )
    assert len(listed["data"]) == 1
    _, none = as_facility(
        api_client, "GET", f"{DELIVERIES}?endpoint_id={off['endpoint']['id']}", key
    )
    assert none["data"] == []
    _, unknown = as_facility(api_client, "GET", f"{DELIVERIES}?endpoint_id={'x' * 3000}", key)
    assert unknown == {"data": [], "next_cursor": None}


def test_after_three_days_of_failures_the_delivery_fails_and_the_endpoint_is_disabled(
    api_client,
    people,
    facility_id,
    key,
    hooks,
    worker,
    table,
):
    _, created = register(api_client, key, hooks.url)
    hooks.statuses = [503] * 1000
    pay(api_client, people, facility_id)
    start = worker.clock.now
    jobs.run_webhook_delivery()
    attempts = 1
    while True:
        _, listed = as_facility(api_client, "GET", DELIVERIES, key)
        (delivery,) = listed["data"]
        if delivery["status"] != "pending":
            break
        assert delivery["attempts"] == attempts
        worker.clock.now = datetime.fromisoformat(
            delivery["next_attempt_at"].replace("Z", "+00:00")
        )
        jobs.run_webhook_delivery()
        attempts += 1
    assert delivery["status"] == "failed"
    assert delivery["last_status_code"] == 503
    assert worker.clock.now - start >= timedelta(seconds=GIVE_UP_SECONDS)
    assert worker.clock.now - start < timedelta(seconds=GIVE_UP_SECONDS + 1)
    assert len({json.loads(r.body)["id"] for r in hooks.received}) == 1
    assert len(hooks.received) == attempts

    _, endpoints = as_facility(api_client, "GET", ENDPOINTS, key)
    (endpoint,) = endpoints["data"]
    assert endpoint["status"] == "disabled"
    assert "3 days" in endpoint["disabled_reason"]
    (alert,) = worker.alerts.sent
    assert created["endpoint"]["id"] in alert[0]
    audit = [i for i in scan(table) if i.get("action") == "facility.webhook_endpoint_disabled"]
    assert [a["target"] for a in audit] == [created["endpoint"]["id"]]

    # a later payment is not sent to the disabled endpoint
    pay(api_client, people, facility_id, key="later")
    assert jobs.run_webhook_delivery()["deliveries_created"] == 0


def test_a_success_in_between_keeps_the_endpoint_enabled(
    api_client,
    people,
    facility_id,
    key,
    hooks,
    worker,
):
    register(api_client, key, hooks.url)
    hooks.statuses = [500]
    pay(api_client, people, facility_id, key="one")
    jobs.run_webhook_delivery()
    worker.clock.now += timedelta(days=2)
    jobs.run_webhook_delivery()  # the retry succeeds
    hooks.statuses = [500] * 1000
    worker.clock.now += timedelta(days=2)
    pay(api_client, people, facility_id, key="two")
    jobs.run_webhook_delivery()
    worker.clock.now += timedelta(hours=30)
    jobs.run_webhook_delivery()
    _, endpoints = as_facility(api_client, "GET", ENDPOINTS, key)
    assert endpoints["data"][0]["status"] == "enabled"  # failing 30 h, not 3 days
    assert worker.alerts.sent == []


def test_a_delivery_is_retried_now_on_request(
    api_client,
    people,
    facility_id,
    key,
    hooks,
    worker,
):
    _, created = register(api_client, key, hooks.url)
    hooks.statuses = [500]
    pay(api_client, people, facility_id)
    jobs.run_webhook_delivery()
    _, listed = as_facility(api_client, "GET", DELIVERIES, key)
    delivery_id = listed["data"][0]["id"]

    response, answer = as_facility(api_client, "POST", f"{DELIVERIES}/{delivery_id}/retry", key)
    assert response.status_code == 202, answer
    assert answer["delivery"]["status"] == "succeeded"  # attempted within the request
    assert answer["delivery"]["attempts"] == 2
    received = hooks.wait_for(2)
    assert json.loads(received[0].body)["id"] == json.loads(received[1].body)["id"]
    # a succeeded delivery may be sent again on request, still with the same event id
    response, answer = as_facility(api_client, "POST", f"{DELIVERIES}/{delivery_id}/retry", key)
    assert (response.status_code, answer["delivery"]["attempts"]) == (202, 3)
    assert json.loads(hooks.wait_for(3)[2].body)["id"] == json.loads(received[0].body)["id"]

    as_facility(api_client, "POST", f"{ENDPOINTS}/{created['endpoint']['id']}/disable", key)
    response, answer = as_facility(api_client, "POST", f"{DELIVERIES}/{delivery_id}/retry", key)
    assert (response.status_code, answer["error"]["code"]) == (409, "invalid_state")


def test_another_facilitys_delivery_is_not_found(
    api_client,
    people,
    facility_id,
    key,
    hooks,
    worker,
):
    register(api_client, key, hooks.url)
    pay(api_client, people, facility_id)
    jobs.run_webhook_delivery()
    _, listed = as_facility(api_client, "GET", DELIVERIES, key)
    delivery_id = listed["data"][0]["id"]
    other = _facility(api_client, people, "Other")
    _, other_key = issue(api_client, people, other, scopes=["webhooks"])
    for target in (delivery_id, "whd_nothing", "whd_" + "f" * 3000):
        response, answer = as_facility(
            api_client, "POST", f"{DELIVERIES}/{target}/retry", other_key["secret"]
        )
        assert (response.status_code, answer["error"]["code"]) == (404, "not_found")
    _, theirs = as_facility(api_client, "GET", DELIVERIES, other_key["secret"])
    assert theirs["data"] == []


def test_deliveries_are_listed_newest_first_in_pages(
    api_client,
    people,
    facility_id,
    key,
    hooks,
    worker,
):
    register(api_client, key, hooks.url)
    for n in range(3):
        pay(api_client, people, facility_id, amount="0.10", key=f"p{n}")
        jobs.run_webhook_delivery()
        worker.clock.now += timedelta(seconds=1)
    response, first = as_facility(api_client, "GET", f"{DELIVERIES}?limit=2", key)
    assert response.status_code == 200
    assert len(first["data"]) == 2
    assert first["next_cursor"]
    _, rest = as_facility(
        api_client, "GET", f"{DELIVERIES}?limit=2&cursor={first['next_cursor']}", key
    )
    listed = first["data"] + rest["data"]
    assert len({d["id"] for d in listed}) == 3
    assert [d["created_at"] for d in listed] == sorted(
        (d["created_at"] for d in listed), reverse=True
    )
    for query in ("limit=0", "cursor=nonsense", "limit=2&limit=3"):
        response, answer = as_facility(api_client, "GET", f"{DELIVERIES}?{query}", key)
        assert (response.status_code, answer["error"]["code"]) == (400, "invalid_request"), query


def test_two_workers_racing_never_send_one_delivery_at_once(
    api_client,
    people,
    facility_id,
    key,
    hooks,
    worker,
):
    register(api_client, key, hooks.url)
    pay(api_client, people, facility_id)
    worker.fan_out()
    hooks.hold = threading.Event()  # the first POST waits until the other worker is done
    start = threading.Barrier(2)
    one_done = threading.Event()
    outcomes: list = []

    def run() -> None:
        start.wait()
        outcomes.append(worker.deliver_due())
        one_done.set()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    hooks.wait_for(1)
    assert one_done.wait(30)  # the other worker finished while the first POST was in flight
    hooks.hold.set()
    for thread in threads:
        thread.join()
    assert sorted(map(dict, outcomes), key=str) == [{"leased_elsewhere": 1}, {"succeeded": 1}]
    assert len(hooks.received) == 1
    assert worker.deliver_due() == {}  # and nothing is left to send

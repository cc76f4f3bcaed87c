"""The contract of ``services.webhooks.WebhookRepository``, run against the in-memory repository
and ``DynamoWebhookRepository`` (moto); and the worker's rules on the in-memory one, with a fake
sender (no network)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.adapters.dynamo.webhook_repository import (
    DynamoWebhookEvents,
    DynamoWebhookRepository,
    _delivery_item,
)
from chalicelib.domain.errors import (
    InvalidRequest,
    InvalidState,
    VersionConflict,
    WebhookDeliveryNotFound,
)
from chalicelib.domain.users import AuditEvent
from chalicelib.domain.webhooks import (
    Attempt,
    DeliveryStatus,
    EndpointStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)
from chalicelib.services.webhooks import MAX_FAN_OUT_TRIES, Webhooks
from tests.memory.webhooks import MemoryWebhookRepository

AT = "2026-12-01T12:00:00.000000Z"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def endpoint_of(facility_id: str = "fac_1", at: str = AT, events=("payment.received",)):
    return WebhookEndpoint.new(facility_id, "https://a.example/h", events, at)


def audit(action: str = "facility.webhook_endpoint_created") -> AuditEvent:
    return AuditEvent.new(action, at=AT, actor_id="key_1", target=None, ip=None)


def event_of(subject: str = "txn_1", facility_id: str = "fac_1") -> WebhookEvent:
    return WebhookEvent.about(
        WebhookEventType.PAYMENT_RECEIVED, subject, facility_id, AT, {"amount": "1.00"}
    )


class TestWebhookRepositoryContract:
    @pytest.fixture(params=["memory", "dynamodb"])
    def store(self, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
        """(the repository, how a money write puts an event in the outbox)"""
        if request.param == "memory":
            memory = MemoryWebhookRepository()
            return memory, memory.put_event
        request.getfixturevalue("table")
        return DynamoWebhookRepository(), lambda e: DynamoWebhookEvents.event(e).model.save()

    def test_endpoints_are_created_listed_and_disabled_once(self, store):
        repository, _ = store
        first, second = endpoint_of(), endpoint_of(at="2026-12-01T13:00:00.000000Z")
        other = endpoint_of("fac_2")
        for endpoint in (first, second, other):
            repository.create_endpoint(endpoint, audit())
        with pytest.raises(VersionConflict):
            repository.create_endpoint(first, audit())
        assert repository.endpoints_of("fac_1") == [second, first]
        assert repository.endpoint("fac_1", first.id) == first
        assert repository.endpoint("fac_2", first.id) is None  # not another facility's

        disabled = first.disabled(AT, "by hand")
        repository.disable_endpoint(disabled, audit("facility.webhook_endpoint_disabled"))
        assert repository.endpoint("fac_1", first.id) == disabled
        with pytest.raises(VersionConflict):
            repository.disable_endpoint(disabled, audit("facility.webhook_endpoint_disabled"))

    def test_failing_since_is_set_once_and_cleared_by_a_success(self, store):
        repository, _ = store
        endpoint = endpoint_of()
        repository.create_endpoint(endpoint, audit())
        assert repository.endpoint_failed(endpoint, AT).failing_since == AT
        assert repository.endpoint_failed(endpoint, "2026-12-02T00:00:00Z").failing_since == AT
        repository.endpoint_succeeded(endpoint, "2026-12-02T00:00:00.000000Z")
        assert repository.endpoint("fac_1", endpoint.id).failing_since is None
        assert repository.endpoint_failed(endpoint_of("fac_9"), AT) is None  # gone: nothing

    def test_an_event_is_fanned_out_once(self, store):
        repository, put_event = store
        endpoint = endpoint_of()
        event = event_of()
        put_event(event)
        put_event(event_of("txn_2"))
        assert {e.id for e in repository.waiting_events(10)} == {event.id, event_of("txn_2").id}
        delivery = WebhookDelivery.of(event, endpoint, AT)
        assert repository.fan_out(event, [delivery]) is True
        assert repository.fan_out(event, [delivery]) is False
        assert [e.id for e in repository.waiting_events(10)] == [event_of("txn_2").id]
        assert repository.delivery(delivery.id) == delivery
        assert repository.fan_out(event_of("txn_2"), []) is True  # nobody wants it: dropped
        assert repository.waiting_events(10) == []

    def test_a_delivery_is_claimed_by_one_holder_who_alone_records_it(self, store):
        repository, put_event = store
        event = event_of()
        put_event(event)
        delivery = WebhookDelivery.of(event, endpoint_of(), AT)
        repository.fan_out(event, [delivery])
        assert repository.due(AT, 10) == [delivery.id]
        assert repository.due("2026-12-01T11:59:59.000000Z", 10) == []

        claimed = repository.claim(delivery.id, 100, 220, due_at=AT)
        assert claimed is not None
        assert claimed[0] == delivery
        token = claimed[1]
        assert repository.claim(delivery.id, 150, 270, due_at=AT) is None  # held
        assert repository.claim(delivery.id, 150, 270, due_at=None) is None
        later = repository.claim(delivery.id, 221, 341, due_at=AT)  # the lease ran out
        assert later is not None
        after = delivery.after(Attempt(500, "non-2xx"), T0, random.Random(1))
        assert repository.record(after, token, 230) is False  # not the holder any more
        assert repository.record(after, later[1], 230) is True
        assert repository.delivery(delivery.id) == after
        assert repository.claim(delivery.id, 231, 351, due_at=AT) is None  # not due yet
        assert repository.due(after.next_attempt_at, 10) == [delivery.id]

        done = after.after(Attempt(200), T0 + timedelta(minutes=5), random.Random(1))
        claimed = repository.claim(delivery.id, 400, 520, due_at=after.next_attempt_at)
        assert repository.record(done, claimed[1], 410) is True
        assert repository.due("2027-01-01T00:00:00.000000Z", 10) == []  # ended: never due
        assert repository.claim(delivery.id, 500, 620, due_at="2027-01-01") is None
        assert repository.claim(delivery.id, 500, 620, due_at=None) is not None  # a retry may

    def test_deliveries_are_listed_newest_first_by_facility_and_endpoint(self, store):
        repository, put_event = store
        one, two = endpoint_of(), endpoint_of()
        made = []
        for n in range(5):
            event = event_of(f"txn_{n}")
            put_event(event)
            at = f"2026-12-01T12:00:0{n}.000000Z"
            deliveries = [WebhookDelivery.of(event, one, at), WebhookDelivery.of(event, two, at)]
            repository.fan_out(event, deliveries)
            made += deliveries
        put_event(event_of("txn_x", "fac_2"))
        seen, cursor = [], None
        while True:
            page, cursor = repository.deliveries_of("fac_1", one.id, 2, cursor)
            seen += page
            if cursor is None:
                break
        mine = [d for d in made if d.endpoint_id == one.id]
        assert seen == sorted(mine, key=lambda d: d.created_at, reverse=True)
        everything, _ = repository.deliveries_of("fac_1", None, 100, None)
        assert len(everything) == 10
        assert repository.deliveries_of("fac_2", None, 10, None) == ([], None)
        with pytest.raises(ValueError, match="cursor"):
            repository.deliveries_of("fac_1", None, 2, "not a cursor")

    def test_an_attempt_started_is_stored_under_the_lease_which_it_keeps(self, store):
        repository, put_event = store
        event = event_of()
        put_event(event)
        delivery = WebhookDelivery.of(event, endpoint_of(), AT)
        repository.fan_out(event, [delivery])
        _, token = repository.claim(delivery.id, 100, 220, due_at=AT)
        started = delivery.started(T0, random.Random(1))
        assert repository.record(started, token, 100, keep_lease=True) is True
        assert repository.delivery(delivery.id) == started
        assert repository.claim(delivery.id, 150, 270, due_at=None) is None  # still held
        finished = started.finished(Attempt(200), T0, random.Random(1))
        assert repository.record(finished, token, 110) is True
        assert repository.delivery(delivery.id) == finished
        assert repository.claim(delivery.id, 150, 270, due_at=None) is not None  # released

    def test_a_success_clears_a_failure_stored_at_or_before_its_start_only(self, store):
        repository, _ = store
        endpoint = endpoint_of()
        repository.create_endpoint(endpoint, audit())
        repository.endpoint_failed(endpoint, "2026-12-01T12:00:05.000000Z")
        repository.endpoint_succeeded(endpoint, "2026-12-01T12:00:04.000000Z")  # began before
        assert repository.endpoint("fac_1", endpoint.id).failing_since is not None
        repository.endpoint_succeeded(endpoint, "2026-12-01T12:00:05.000000Z")
        assert repository.endpoint("fac_1", endpoint.id).failing_since is None
        repository.endpoint_succeeded(endpoint, "2026-12-01T12:00:06.000000Z")  # not failing
        assert repository.endpoint("fac_1", endpoint.id).failing_since is None

    def test_an_event_no_endpoint_wants_is_removed_with_no_delivery(self, store):
        repository, put_event = store
        event = event_of()
        put_event(event)
        assert repository.fan_out(event, []) is True
        assert repository.waiting_events(10) == []
        assert repository.fan_out(event, []) is False  # removed already

    def test_the_endpoint_cap_is_held_by_the_write_itself(self, store):
        """Creations that read the facility's endpoints before the others were written (a race)
        still stop at 16; a disabled endpoint keeps its slot."""
        repository, _ = store
        made = [endpoint_of() for _ in range(16)]
        for endpoint in made:
            repository.create_endpoint(endpoint, audit(), existing=0)  # all read "none yet"
        with pytest.raises(InvalidRequest, match="at most 16"):
            repository.create_endpoint(endpoint_of(), audit(), existing=0)
        repository.disable_endpoint(
            made[0].disabled(AT, "by hand"), audit("facility.webhook_endpoint_disabled")
        )
        with pytest.raises(InvalidRequest, match="at most 16"):
            repository.create_endpoint(endpoint_of(), audit(), existing=15)
        assert len(repository.endpoints_of("fac_1")) == 16
        repository.create_endpoint(endpoint_of("fac_2"), audit())  # another facility's own cap

    def test_a_failed_fan_out_is_counted_on_the_event_and_a_parked_event_leaves_the_outbox(
        self, store
    ):
        repository, put_event = store
        event = event_of()
        put_event(event)
        assert [repository.fan_out_failed(event) for _ in range(3)] == [1, 2, 3]
        assert repository.park_event(event, AT) is True
        assert repository.waiting_events(10) == []
        assert repository.parked_events() == [event]
        assert repository.park_event(event, AT) is False  # no longer waiting
        assert repository.fan_out_failed(event) == 0


# -- the worker's rules on the in-memory repository ------------------------------------------------
class Sender:
    def __init__(self, *statuses: int | None) -> None:
        self.statuses = list(statuses)
        self.posts: list[tuple[str, bytes, dict]] = []

    def check(self, url: str) -> None:
        pass

    def post(self, url, body, headers):  # type: ignore[no-untyped-def]
        self.posts.append((url, body, dict(headers)))
        status = self.statuses.pop(0) if self.statuses else 200
        return Attempt(status, None if status and status < 300 else "failed")


def _refusing_big_transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """DynamoDB refuses a TransactWriteItems over 4 MB (moto does not): do the same."""
    from pynamodb.connection.base import Connection

    sizes: list[int] = []
    original = Connection.transact_write_items

    def checked(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        size = len(json.dumps(kwargs.get("put_items", []), default=str).encode())
        sizes.append(size)
        if size > 4 * 1024 * 1024:
            raise RuntimeError("ValidationException: transaction request over 4 MB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "transact_write_items", checked)
    return sizes


def test_a_big_event_to_sixteen_endpoints_is_fanned_out_once_per_endpoint(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _refusing_big_transactions(monkeypatch)
    repository = DynamoWebhookRepository()
    items = [{"to_email": f"p{i:03d}@example.com", "memo": "x" * 420} for i in range(500)]
    event = WebhookEvent.about(
        WebhookEventType.PAYOUT_COMPLETED, "po_1", "fac_1", AT, {"items": items}
    )
    DynamoWebhookEvents.event(event).model.save()
    endpoints = [endpoint_of(events=("payout.completed",)) for _ in range(16)]
    deliveries = [WebhookDelivery.of(event, e, AT) for e in endpoints]
    for delivery in deliveries[:5]:  # a run that stopped half-way: the event still waits
        _delivery_item(delivery).save()
    assert repository.waiting_events(10) == [event]

    assert repository.fan_out(event, deliveries) is True
    assert repository.waiting_events(10) == []
    assert [repository.delivery(d.id) for d in deliveries] == deliveries
    assert all(size <= 4 * 1024 * 1024 for size in sizes)
    DynamoWebhookEvents.event(event).model.save()  # the event written again: no second ones
    assert repository.fan_out(event, deliveries) is False
    assert repository.waiting_events(10) == []


class _PoisonedRepository(MemoryWebhookRepository):
    def fan_out(self, event, deliveries):  # type: ignore[no-untyped-def]
        if event.id.startswith("evt_poison"):
            raise RuntimeError("ValidationException: transaction request over 4 MB")
        return super().fan_out(event, deliveries)


def test_an_event_that_cannot_be_fanned_out_is_parked_and_holds_up_nothing():
    repository = _PoisonedRepository()
    webhooks = Webhooks(
        repository,
        Sender(*[200] * 20),
        Alerts(),
        "master",
        clock=lambda: T0,
        rng=random.Random(3),
    )
    for facility_id in ("fac_1", "fac_2"):
        webhooks.create_endpoint(
            facility_id, "https://a.example/h", ["payment.received"], actor_id="k", ip=None
        )
    poison = WebhookEvent(
        "evt_poison", WebhookEventType.PAYMENT_RECEIVED, "fac_1", "2026-12-01T11:00:00.000000Z", {}
    )
    repository.put_event(poison)
    repository.put_event(event_of("txn_1", "fac_2"))
    first = webhooks.run()
    assert (first["fan_out_failed"], first["fanned_out"], first["succeeded"]) == (1, 1, 1)
    assert len(webhooks.sender.posts) == 1  # fac_2's event went, the same run
    for _ in range(MAX_FAN_OUT_TRIES - 2):
        assert webhooks.run()["parked"] == 0
    assert webhooks.alerts.sent == []
    assert webhooks.run()["parked"] == 1
    assert repository.waiting_events(10) == []
    assert repository.parked_events() == [poison]
    assert webhooks.alerts.sent == ["Ledger: webhook event evt_poison parked"]


class Alerts:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def publish(self, subject: str, message: str) -> bool:
        self.sent.append(subject)
        return True


def service(sender: Sender, clock) -> tuple[Webhooks, MemoryWebhookRepository]:  # type: ignore[no-untyped-def]
    repository = MemoryWebhookRepository()
    return Webhooks(
        repository, sender, Alerts(), "master", clock=clock, rng=random.Random(3)
    ), repository


def test_a_disabled_endpoints_pending_delivery_ends_failed_without_an_attempt():
    now = [T0]
    webhooks, repository = service(Sender(500), lambda: now[0])
    endpoint, _ = webhooks.create_endpoint(
        "fac_1", "https://a.example/h", ["payment.received"], actor_id="k", ip=None
    )
    repository.put_event(event_of())
    assert webhooks.run()["retry_later"] == 1
    webhooks.disable_endpoint("fac_1", endpoint.id, actor_id="k", ip=None)
    now[0] += timedelta(hours=7)
    assert webhooks.run()["abandoned"] == 1
    (delivery,) = repository.deliveries_of("fac_1", None, 10, None)[0]
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert len(webhooks.sender.posts) == 1
    with pytest.raises(InvalidState):
        webhooks.retry("fac_1", delivery.id)
    with pytest.raises(WebhookDeliveryNotFound):
        webhooks.retry("fac_2", delivery.id)


def test_a_retry_while_a_worker_holds_the_delivery_is_a_conflict():
    webhooks, repository = service(Sender(), lambda: T0)
    webhooks.create_endpoint(
        "fac_1", "https://a.example/h", ["payment.received"], actor_id="k", ip=None
    )
    repository.put_event(event_of())
    webhooks.fan_out()
    (delivery_id,) = repository.due("2030-01-01", 10)
    assert repository.claim(
        delivery_id, int(T0.timestamp()), int(T0.timestamp()) + 120, due_at=None
    )
    with pytest.raises(VersionConflict):
        webhooks.retry("fac_1", delivery_id)
    assert webhooks.sender.posts == []


def test_the_endpoint_is_disabled_once_and_alerted_once_after_three_days_of_failures():
    now = [T0]
    webhooks, repository = service(Sender(*[503] * 500), lambda: now[0])
    endpoint, _ = webhooks.create_endpoint(
        "fac_1", "https://a.example/h", ["payment.received"], actor_id="k", ip=None
    )
    for n in range(3):
        repository.put_event(event_of(f"txn_{n}"))
    webhooks.run()
    while repository.due("9999", 10):
        now[0] = max(
            now[0],
            datetime.fromisoformat(
                min(
                    repository.delivery(d).next_attempt_at for d in repository.due("9999", 10)
                ).replace("Z", "+00:00")
            ),
        )
        webhooks.run()
    stored = repository.endpoint("fac_1", endpoint.id)
    assert stored.status is EndpointStatus.DISABLED
    assert webhooks.alerts.sent == [f"Ledger: webhook endpoint {endpoint.id} disabled"]
    actions = [e.action for e in repository.audit]
    assert actions.count("facility.webhook_endpoint_disabled") == 1
    assert now[0] - T0 >= timedelta(days=3)
    statuses = {d.status for d in repository.deliveries_of("fac_1", None, 10, None)[0]}
    assert statuses == {DeliveryStatus.FAILED}


def test_a_store_failure_on_one_delivery_lets_the_others_go_then_fails_the_run():
    webhooks, repository = service(Sender(), lambda: T0)
    webhooks.create_endpoint(
        "fac_1", "https://a.example/h", ["payment.received"], actor_id="k", ip=None
    )
    for n in range(3):
        repository.put_event(event_of(f"txn_{n}"))
    webhooks.fan_out()
    broken = repository.due("9999", 10)[0]
    record = repository.record

    def flaky(delivery, token, now, keep_lease=False):  # type: ignore[no-untyped-def]
        if delivery.id == broken and not keep_lease:  # the outcome is not stored
            raise ConnectionError("the table is unreachable")
        return record(delivery, token, now, keep_lease=keep_lease)

    repository.record = flaky  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        webhooks.deliver_due()
    assert len(webhooks.sender.posts) == 3
    statuses = {d.id: d.status for d in repository.deliveries_of("fac_1", None, 10, None)[0]}
    assert statuses.pop(broken) is DeliveryStatus.PENDING  # leased; tried again once it expires
    assert set(statuses.values()) == {DeliveryStatus.SUCCEEDED}


def test_a_facility_has_at_most_sixteen_endpoints():
    webhooks, repository = service(Sender(), lambda: T0)
    for n in range(16):
        webhooks.create_endpoint(
            "fac_1", f"https://a.example/{n}", ["payment.received"], actor_id="k", ip=None
        )
    with pytest.raises(InvalidRequest, match="at most 16"):
        webhooks.create_endpoint(
            "fac_1", "https://a.example/17", ["payment.received"], actor_id="k", ip=None
        )
    webhooks.create_endpoint(
        "fac_2", "https://a.example/1", ["payout.completed"], actor_id="k", ip=None
    )
    assert len(repository.endpoints_of("fac_1")) == 16


class _Killed(BaseException):
    """The worker's Lambda killed at its timeout, mid-attempt."""


class _KilledSender(Sender):
    def post(self, url, body, headers):  # type: ignore[no-untyped-def]
        self.posts.append((url, body, dict(headers)))
        raise _Killed


def test_an_attempt_whose_worker_is_killed_still_counts_toward_back_off_and_give_up():
    now = [T0]
    webhooks, repository = service(_KilledSender(), lambda: now[0])
    webhooks.create_endpoint(
        "fac_1", "https://a.example/h", ["payment.received"], actor_id="k", ip=None
    )
    repository.put_event(event_of())
    webhooks.fan_out()
    (delivery_id,) = repository.due(AT, 10)
    with pytest.raises(_Killed):
        webhooks.retry("fac_1", delivery_id)
    killed = repository.delivery(delivery_id)
    assert (killed.attempts, killed.first_attempt_at) == (1, AT)
    assert killed.next_attempt_at > AT  # backed off, as after a failed attempt

    webhooks.sender = Sender(503)
    now[0] = T0 + timedelta(days=3, seconds=1)
    repository.deliveries[delivery_id].claimed_until = 0  # the dead worker's lease ran out
    webhooks.deliver_due()
    ended = repository.delivery(delivery_id)
    assert (ended.status, ended.attempts) == (DeliveryStatus.FAILED, 2)


def test_a_success_clears_a_failure_stored_while_it_was_being_attempted():
    """Two deliveries to one endpoint: one fails while the other's attempt, which read the
    endpoint as not failing, is under way and then succeeds; the endpoint is not failing."""
    repository = MemoryWebhookRepository()
    webhooks = Webhooks(repository, Sender(), Alerts(), "master", clock=lambda: T0)

    class RacedSender(Sender):
        def post(self, url, body, headers):  # type: ignore[no-untyped-def]
            (endpoint,) = repository.endpoints_of("fac_1")
            repository.endpoint_failed(endpoint, AT)  # the other delivery's failure, meanwhile
            return super().post(url, body, headers)

    webhooks.sender = RacedSender()
    endpoint, _ = webhooks.create_endpoint(
        "fac_1", "https://a.example/h", ["payment.received"], actor_id="k", ip=None
    )
    repository.put_event(event_of())
    assert webhooks.run()["succeeded"] == 1
    assert repository.endpoint("fac_1", endpoint.id).failing_since is None


def test_a_run_drains_a_backlog_larger_than_one_batch():
    webhooks, repository = service(Sender(), lambda: T0)
    webhooks.create_endpoint(
        "fac_1", "https://a.example/h", ["payment.received"], actor_id="k", ip=None
    )
    for n in range(25):
        repository.put_event(event_of(f"txn_{n}"))
    repository.put_event(event_of("txn_x", "fac_nobody"))  # no endpoint: dropped, no delivery
    outcomes = webhooks.run(limit=10)
    assert (outcomes["fanned_out"], outcomes["deliveries_created"]) == (26, 25)
    assert outcomes["succeeded"] == 25
    assert repository.waiting_events(100) == []
    assert repository.due("9999", 100) == []
    assert len(webhooks.sender.posts) == 25


def test_a_run_stops_going_round_once_its_budget_is_used():
    webhooks, repository = service(Sender(), lambda: T0)
    ticks = iter(range(0, 1_000_000, 20))  # each look at the clock: 20 s later
    webhooks.monotonic = lambda: float(next(ticks))
    webhooks.create_endpoint(
        "fac_1", "https://a.example/h", ["payment.received"], actor_id="k", ip=None
    )
    for n in range(25):
        repository.put_event(event_of(f"txn_{n}"))
    outcomes = webhooks.run(limit=10, budget_seconds=45)
    assert outcomes["rounds"] == 1
    assert outcomes["fanned_out"] == 10
    assert len(repository.waiting_events(100)) == 15  # for the next run

"""The retry of payouts left ``requested`` (chalicelib/services/payouts.py): found through the index
(no Scan), handed to the gateway once however often and however concurrently the retry runs,
never for a payout already sent or settled, nor for a withdrawal no longer processing; and the
scheduled function that runs it."""

from __future__ import annotations

import threading

import pytest
from chalice.test import Client

from app import app
from chalicelib.adapters.crypto_gateway import CryptoGatewayError, LocalCryptoGateway, Payout
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import PayoutItem, WithdrawalItem
from chalicelib.api import dependencies
from chalicelib.api.dependencies import get_crypto_gateway
from chalicelib.services import payouts
from tests.api import test_crypto
from tests.api.helpers import balances, call
from tests.api.test_crypto import (
    approved_withdrawal,
    deliver,
    event,
    payout_status,
    status_of,
)
from tests.support import scan

people = test_crypto.people  # the same fixture: alice, bob, an admin, their tokens


class CountingGateway(LocalCryptoGateway):
    """Counts every payout request it gets (a repeat too); ``lose_answer`` records the payout and
    then fails, as a gateway whose answer never arrived."""

    def __init__(self) -> None:
        super().__init__("any")
        self.calls: list[str] = []
        self.lose_answer = False
        self.lock = threading.Lock()

    def request_payout(self, payout: Payout) -> None:
        with self.lock:
            self.calls.append(payout.withdrawal_id)
        super().request_payout(payout)
        if self.lose_answer:
            raise CryptoGatewayError("timed out")


def failed_approval(client, people) -> dict:
    """An approved withdrawal whose hand-off failed at approval."""
    get_crypto_gateway().fail = True
    w = approved_withdrawal(client, people)
    assert (status_of(w["id"]), payout_status(w["id"])) == ("processing", "requested")
    return w


def retry(gateway, limit: int = payouts.RETRY_BATCH, now: float | None = None):  # type: ignore[no-untyped-def]
    """``payouts.retry_requested`` on the repositories the scheduled function uses."""
    return payouts.retry_requested(
        gateway,
        dependencies.get_payout_repository(),
        dependencies.get_withdrawal_repository(),
        limit,
        now,
    )


def hand_off(gateway, withdrawal_id: str) -> str:  # type: ignore[no-untyped-def]
    return payouts.hand_off(
        gateway,
        dependencies.get_payout_repository(),
        dependencies.get_withdrawal_repository(),
        withdrawal_id,
    )


def queued() -> list[str]:
    """The payouts still to send, from the index."""
    return dependencies.get_payout_repository().requested(payouts.RETRY_BATCH)


def payout_item(withdrawal_id: str) -> PayoutItem:
    return PayoutItem.get(keys.payout_pk(withdrawal_id), keys.PAYOUT_SK, consistent_read=True)


def test_a_failed_hand_off_stays_requested_in_the_index_and_the_retry_sends_it_once(
    api_client, people
):
    w = failed_approval(api_client, people)
    assert queued() == [w["id"]]  # found through GSI2, not a Scan
    gateway = CountingGateway()

    first = retry(gateway)
    assert (first.count(payouts.HANDED_OVER), first.sent) == (1, [w["id"]])
    second = retry(gateway)
    assert second.outcomes == {}  # nothing left requested
    assert gateway.calls == [w["id"]]
    assert payout_status(w["id"]) == "sent"
    item = payout_item(w["id"])
    assert (item.GSI2PK, item.GSI2SK, item.claimed_until) == (None, None, None)
    assert queued() == []
    [payout] = gateway.payouts
    assert (payout.amount, payout.currency) == (25_000_000, "BTC")
    # Nothing moved: the hold waits for the gateway's webhook.
    assert balances(people["btc"]) == (100_000_000, 75_000_000)
    people["world"].check_guarantees()


def test_a_payout_handed_over_at_approval_is_not_in_the_index(api_client, people):
    w = approved_withdrawal(api_client, people)
    assert payout_status(w["id"]) == "sent"
    assert queued() == []
    gateway = CountingGateway()
    assert retry(gateway).outcomes == {}
    assert hand_off(gateway, w["id"]) == payouts.ALREADY_SENT
    assert gateway.calls == []


def test_concurrent_retries_ask_the_gateway_once(api_client, people):
    w = failed_approval(api_client, people)
    gateway = CountingGateway()
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def run() -> None:
        start.wait()
        try:
            report = retry(gateway)
            outcomes.extend(o for o, n in report.outcomes.items() for _ in range(n))
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gateway.calls == [w["id"]], outcomes
    assert outcomes.count(payouts.HANDED_OVER) == 1, outcomes
    assert set(outcomes) <= {payouts.HANDED_OVER, payouts.IN_FLIGHT, payouts.ALREADY_SENT}
    assert payout_status(w["id"]) == "sent"


def test_the_retry_never_sends_a_payout_the_gateway_settled_meanwhile(api_client, people):
    """The gateway took the payout but its answer was lost: the request stayed ``requested``.
    Its webhook then completes the withdrawal; the retry must not send it again."""
    gateway = CountingGateway()
    gateway.lose_answer = True
    w = approved_withdrawal(api_client, people)  # the app's own gateway: sent
    # Make the state of a lost answer: requested, in the index, but the gateway has it.
    item = payout_item(w["id"])
    item.update(
        actions=[
            PayoutItem.status.set("requested"),
            PayoutItem.GSI2PK.set(keys.PAYOUTS_REQUESTED_GSI_PK),
            PayoutItem.GSI2SK.set(keys.payouts_requested_gsi_sk(item.requested_at, w["id"])),
        ]
    )
    assert hand_off(gateway, w["id"]) == payouts.GATEWAY_FAILED
    assert (gateway.calls, payout_status(w["id"])) == ([w["id"]], "requested")

    completed = event("evt_c", "withdrawal.completed", withdrawal_id=w["id"], tx_hash="tx_out")
    response, body = deliver(api_client, completed)
    assert (response.status_code, body["outcome"]) == (200, "completed")
    assert payout_status(w["id"]) == "completed"
    assert queued() == []  # the settlement left the index in the same write

    gateway.lose_answer = False
    assert retry(gateway).outcomes == {}
    assert hand_off(gateway, w["id"]) == payouts.ALREADY_SENT
    assert gateway.calls == [w["id"]]
    assert balances(people["btc"]) == (75_000_000, 75_000_000)
    people["world"].check_guarantees()


def test_the_retry_never_sends_for_a_withdrawal_no_longer_processing(api_client, people):
    w = failed_approval(api_client, people)
    # Whatever moved the withdrawal on without its payout request, nothing is owed any more.
    WithdrawalItem(keys.withdrawal_pk(w["id"]), keys.WITHDRAWAL_SK).update(
        actions=[WithdrawalItem.status.set("failed")]
    )
    gateway = CountingGateway()
    report = retry(gateway)
    assert report.outcomes == {payouts.NOT_OWED: 1}
    assert gateway.calls == []
    assert queued() == []  # and the index forgets it
    assert payout_status(w["id"]) == "requested"


def test_a_gateway_still_failing_keeps_it_requested_for_the_next_run(api_client, people):
    w = failed_approval(api_client, people)
    gateway = CountingGateway()
    gateway.fail = True
    report = retry(gateway)
    assert report.outcomes == {payouts.GATEWAY_FAILED: 1}
    assert payout_item(w["id"]).claimed_until is None  # the claim was released
    assert queued() == [w["id"]]
    gateway.fail = False
    assert retry(gateway).sent == [w["id"]]
    assert gateway.payouts == [gateway.payouts[0]]


def test_a_sender_that_died_holding_the_claim_delays_the_retry_until_it_expires(api_client, people):
    w = failed_approval(api_client, people)
    now = 1_900_000_000.0
    claimed = dependencies.get_payout_repository().claim(
        w["id"], int(now), int(now) + payouts.CLAIM_SECONDS
    )
    assert claimed  # a sender claims it, then dies
    gateway = CountingGateway()
    later = now + payouts.CLAIM_SECONDS - 1
    assert retry(gateway, now=later).outcomes == {payouts.IN_FLIGHT: 1}
    assert gateway.calls == []
    expired = now + payouts.CLAIM_SECONDS + 1
    assert retry(gateway, now=expired).sent == [w["id"]]
    assert gateway.calls == [w["id"]]


def test_the_scheduled_function_runs_the_retry(api_client, people):
    w = failed_approval(api_client, people)
    get_crypto_gateway().fail = False
    with Client(app, stage_name="test") as client:
        result = client.lambda_.invoke(
            "retry_payouts",
            client.events.generate_cw_event("Scheduled Event", "aws.events", {}, []),
        )
    assert result.payload == {
        "outcomes": {payouts.HANDED_OVER: 1},
        "sent": [w["id"]],
        "given_up": [],
    }
    assert [p.withdrawal_id for p in get_crypto_gateway().payouts] == [w["id"]]
    assert payout_status(w["id"]) == "sent"


def test_the_retry_reads_no_table_scan(api_client, people, monkeypatch):
    failed_approval(api_client, people)

    def no_scan(*args, **kwargs):
        pytest.fail("the retry must not scan the table")

    monkeypatch.setattr(PayoutItem, "scan", no_scan)
    assert retry(CountingGateway()).count(payouts.HANDED_OVER) == 1
    assert [i["status"] for i in scan(people["world"].table) if i["item_type"] == "payout"] == [
        "sent"
    ]


def test_a_payout_the_gateway_keeps_failing_does_not_hold_up_the_ones_behind_it(api_client, people):
    first = failed_approval(api_client, people)  # 0.25 BTC, key w1
    body = {"amount": "0.1", "currency": "BTC", "destination": test_crypto.DESTINATION}
    alice, admin = people["tokens"]["alice"], people["tokens"]["admin"]
    _, answer = call(api_client, "POST", "/v1/withdrawals", alice, body, key="w2")
    second = answer["withdrawal"]["id"]
    response, _ = call(api_client, "POST", f"/v1/admin/withdrawals/{second}/approve", admin)
    assert response.status_code == 200
    assert queued() == [first["id"], second]

    class RefusesTheFirst(CountingGateway):
        def request_payout(self, payout: Payout) -> None:
            if payout.withdrawal_id == first["id"]:
                raise CryptoGatewayError("destination refused")
            super().request_payout(payout)

    gateway = RefusesTheFirst()
    assert retry(gateway, limit=1).sent == []  # to the back of the queue
    assert queued() == [second, first["id"]]
    assert retry(gateway, limit=1).sent == [second]
    assert payout_item(first["id"]).failed_attempts == 2  # at approval, then the retry


def test_a_payout_refused_too_many_times_fails_releases_its_hold_once_and_alerts(
    api_client, people, monkeypatch
):
    """Issue: a payout the gateway refused for good was retried every 5 minutes for ever, the
    user's money held. After ``PAYOUT_MAX_ATTEMPTS`` refusals the withdrawal fails, its hold is
    released (and the day's total given back), the request leaves the index, operators hear."""
    import json

    import boto3

    from chalicelib.api import jobs
    from chalicelib.config import get_settings

    sns, sqs = boto3.client("sns", "us-east-1"), boto3.client("sqs", "us-east-1")
    topic = sns.create_topic(Name="ledger-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
    monkeypatch.setenv("PAYOUT_MAX_ATTEMPTS", "3")
    get_settings.cache_clear()
    dependencies.reset()
    w = failed_approval(api_client, people)  # refusal 1, at approval
    get_crypto_gateway().fail = True
    assert jobs.run_payout_retry().outcomes == {payouts.GATEWAY_FAILED: 1}  # refusal 2
    assert balances(people["btc"]) == (100_000_000, 75_000_000)
    report = jobs.run_payout_retry()  # refusal 3: given up
    assert (report.outcomes, report.given_up) == ({payouts.GIVEN_UP: 1}, [w["id"]])
    assert balances(people["btc"]) == (100_000_000, 100_000_000)
    assert (status_of(w["id"]), payout_status(w["id"])) == ("failed", "failed")
    assert queued() == []
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    assert json.loads(json.loads(message["Body"])["Message"])["given_up"] == [w["id"]]
    assert jobs.run_payout_retry().outcomes == {}  # nothing left to send or release
    limits = [i for i in scan(people["world"].table) if i["item_type"] == "withdrawal_limit"]
    assert [int(i["total"]) for i in limits] == [0]
    audit = [i for i in scan(people["world"].table) if i["item_type"] == "audit"]
    assert [i["action"] for i in audit].count("withdrawal.payout_given_up") == 1
    people["world"].check_guarantees()

"""Nightly reconciliation on moto: a clean mixed day reports ok, reruns give the same report, and
data corrupted behind the API's back (direct DynamoDB writes) is reported precisely."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime

import boto3
import pytest

from chalicelib.adapters.alerts import SnsAlerts
from chalicelib.adapters.clock import parse_iso, to_iso
from chalicelib.adapters.dynamo import keys
from chalicelib.adapters.dynamo.models import AccountItem, EntryItem, TransactionItem
from chalicelib.adapters.dynamo.reconciliation_store import DynamoReconciliationStore
from chalicelib.adapters.stripe_gateway import BalanceTransaction
from chalicelib.domain.accounts import PlatformAccount, PlatformKind
from chalicelib.domain.transactions import (
    Posting,
    Transaction,
    TransactionStatus,
    TransactionType,
    derive_transaction_id,
)
from chalicelib.services import reconciliation as recon
from chalicelib.services.ledger import PostingRequest
from tests.stripe_fake import FakeStripe
from tests.support import LedgerWorld

DAY1, DAY2, DAY3 = "2026-01-10", "2026-01-11", "2026-01-12"
USD = "USD"
CLEARING = PlatformAccount(PlatformKind.STRIPE_CLEARING, USD)


class Clock:
    """The ledger's clock, set to a chosen day; every call a microsecond later."""

    def __init__(self) -> None:
        self.day = DAY1
        self._tick = itertools.count()

    def __call__(self) -> str:
        n = next(self._tick)
        return f"{self.day}T12:{n // 60 % 60:02d}:{n % 60:02d}.{n:06d}Z"


def _epoch(day: str, hour: int) -> int:
    return int(datetime.fromisoformat(f"{day}T{hour:02d}:00:00+00:00").timestamp())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(world: LedgerWorld, clock: Clock) -> LedgerWorld:
    world.ledger.clock = clock
    return world


@pytest.fixture
def store(table: str) -> DynamoReconciliationStore:
    return DynamoReconciliationStore(table)


def card_deposit(world: LedgerWorld, account: str, amount: int, pi: str) -> str:
    txn_id = derive_transaction_id("deposit", pi)
    world.ledger.record(
        transaction_id=txn_id,
        type=TransactionType.DEPOSIT,
        postings=[
            PostingRequest(CLEARING, USD, -amount),
            PostingRequest(account, USD, amount),
        ],
        metadata={"deposit_id": f"dep_{pi}", "payment_intent_id": pi},
    )
    return txn_id


def card_refund(world: LedgerWorld, account: str, amount: int, refund_id: str, pi: str) -> str:
    txn_id = derive_transaction_id("refund", refund_id)
    world.ledger.record(
        transaction_id=txn_id,
        type=TransactionType.REFUND,
        postings=[
            PostingRequest(account, USD, -amount),
            PostingRequest(CLEARING, USD, amount),
        ],
        metadata={"refund_id": refund_id, "deposit_id": f"dep_{pi}", "payment_intent_id": pi},
        pending=True,
    )
    world.ledger.post_pending(txn_id)
    return txn_id


@pytest.fixture
def two_days(ledger: LedgerWorld, clock: Clock) -> dict:
    """Day 1: deposits, transfers, a hold left pending, a hold posted. Day 2: the day-1 hold is
    posted, a reversal, a refund, more transfers."""
    alice, bob, carol = (ledger.open_user_account() for _ in range(3))
    clock.day = DAY1
    card_deposit(ledger, alice, 50_000, "pi_a1")
    card_deposit(ledger, bob, 20_000, "pi_b1")
    ledger.transfer(alice, bob, 1_000)
    posted_hold = ledger.transfer(bob, alice, 500, pending=True).transaction.id
    ledger.ledger.post_pending(posted_hold)
    open_hold = ledger.transfer(alice, carol, 2_500, pending=True).transaction.id
    clock.day = DAY2
    ledger.ledger.post_pending(open_hold)  # carol is touched on day 2 by a day-1 hold only
    to_reverse = ledger.transfer(bob, alice, 300).transaction.id
    ledger.ledger.reverse(to_reverse, memo="mistake")
    card_refund(ledger, alice, 4_000, "rf_1", "pi_a1")
    card_deposit(ledger, bob, 7_000, "pi_b2")
    stripe = FakeStripe()
    stripe.charge("pi_a1", 50_000, DAY1)
    stripe.charge("pi_b1", 20_000, DAY1)
    stripe.refund("rf_1", "pi_a1", 4_000, DAY2)
    stripe.charge("pi_b2", 7_000, DAY2)
    return {"alice": alice, "bob": bob, "carol": carol, "stripe": stripe, "hold": open_hold}


def checks(report: recon.Report) -> list[tuple[str, str]]:
    return [
        (m["check"], m.get("account_id") or m.get("transaction_id") or m.get("stripe_id") or "")
        for m in report.mismatches
    ]


# -- clean runs -----------------------------------------------------------------------------------
def test_a_clean_mixed_history_reports_ok_day_by_day(store, two_days, ledger):
    first = recon.run(DAY1, store=store, gateway=two_days["stripe"])
    assert first.status == "ok", first.mismatches
    assert first.trial_balance == {"USD": "0.00"}
    assert first.transactions_checked == 5
    assert first.stripe == {"matched": 2, "unmatched_ledger": [], "unmatched_stripe": []}

    second = recon.run(DAY2, store=store, gateway=two_days["stripe"])
    assert second.status == "ok", second.mismatches
    assert second.trial_balance == {"USD": "0.00"}
    assert second.transactions_checked == 4  # a transfer, its reversal, a refund, a deposit
    assert second.stripe["matched"] == 2
    # Carol's only day-2 entry comes from posting a day-1 hold: the carried open hold finds it.
    assert two_days["carol"] in _checked_accounts(store, DAY2)
    ledger.check_guarantees()


def _checked_accounts(store: DynamoReconciliationStore, day: str) -> set[str]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    items = client.scan(TableName=store.table_name)["Items"]
    return {
        i["account_id"]["S"]
        for i in items
        if i["item_type"]["S"] == "recon_checkpoint" and i["day"]["S"] == day
    }


def test_a_rerun_gives_the_same_report_even_after_later_days_ran(store, two_days):
    gateway = two_days["stripe"]
    first = recon.run(DAY1, store=store, gateway=gateway).as_dict()
    second = recon.run(DAY2, store=store, gateway=gateway).as_dict()
    assert recon.run(DAY1, store=store, gateway=gateway).as_dict() == first
    assert recon.run(DAY2, store=store, gateway=gateway).as_dict() == second
    assert recon.get_report(store, DAY2).as_dict() == second


def test_the_second_day_reads_only_the_accounts_it_touched(store, ledger, clock):
    quiet = [ledger.open_user_account() for _ in range(5)]
    busy = ledger.open_user_account()
    clock.day = DAY1
    for account in quiet:
        ledger.fund(account, 1_000)
    recon.run(DAY1, store=store)
    clock.day = DAY2
    ledger.fund(busy, 1_000)
    report = recon.run(DAY2, store=store)
    assert report.status == "ok", report.mismatches
    assert report.transactions_checked == 1
    touched = _checked_accounts(store, DAY2)
    assert busy in touched
    assert len(touched) == 2  # the wallet and one clearing shard
    # and the rolling sweep's share of the night: about a seventh of all accounts
    assert report.accounts_checked == len(touched | _swept_on(store, DAY2))


def _swept_on(store: DynamoReconciliationStore, day: str) -> set[str]:
    night = date.fromisoformat(day).toordinal() % recon.SWEEP_DAYS
    return {a for a in store.all_account_ids() if recon.sweep_bucket(a) == night}


def test_writes_during_the_run_cause_no_false_mismatch(store, two_days, ledger, clock):
    recon.run(DAY1, store=store)
    clock.day = DAY3  # the run of day 2 happens on day 3, while money keeps moving
    alice, bob = two_days["alice"], two_days["bob"]
    ledger.transfer(alice, bob, 100)
    seen: list[str] = []

    def between_reads(account_id: str) -> None:
        # After the account item was read, before its entries are queried.
        if account_id in (alice, bob) and account_id not in seen:
            seen.append(account_id)
            ledger.transfer(alice, bob, 10)

    report = recon.run(DAY2, store=store, on_read=between_reads)
    assert seen == [alice, bob] or seen == [bob, alice]
    assert report.status == "ok", report.mismatches
    # Day 3 starts from day 2's checkpoints, cut at the end of day 2: its own entries verify.
    later = recon.run(DAY3, store=store)
    assert later.status == "ok", later.mismatches
    assert later.transactions_checked == 3
    ledger.check_guarantees()


# -- corruption -----------------------------------------------------------------------------------
def test_an_unbalanced_transaction_is_named(store, two_days):
    recon.run(DAY1, store=store)
    forged = Transaction(
        id="txn_forged",
        type=TransactionType.TRANSFER,
        status=TransactionStatus.POSTED,
        postings=(
            Posting(two_days["alice"], USD, -100),
            Posting(two_days["bob"], USD, 150),
        ),
        created_at=f"{DAY2}T23:00:00.000000Z",
    )
    TransactionItem.from_domain(forged).save()
    report = recon.run(DAY2, store=store)
    assert report.status == "mismatch"
    unbalanced = [m for m in report.mismatches if m["check"] == "transaction_unbalanced"]
    assert unbalanced == [
        {
            "check": "transaction_unbalanced",
            "transaction_id": "txn_forged",
            "detail": "postings do not sum to zero: {'USD': '0.50'}",
            "actual": {"USD": "0.50"},
        }
    ]


def test_a_balance_that_disagrees_with_its_entries_is_named(store, two_days):
    recon.run(DAY1, store=store)
    carol = two_days["carol"]
    item = AccountItem.get(keys.account_pk(carol), keys.ACCOUNT_SK)
    item.update(actions=[AccountItem.posted.set(int(item.posted) + 1)])
    report = recon.run(DAY2, store=store)
    assert report.status == "mismatch"
    assert ("account_balance", carol) in checks(report)
    [m] = [m for m in report.mismatches if m["check"] == "account_balance"]
    assert (m["expected"], m["actual"]) == ("2500", "2501")
    # The account did not verify: no checkpoint, and the trial balance leaves it out.
    assert carol not in _checked_accounts(store, DAY2)


def test_a_missing_entry_is_named_with_its_seq(store, two_days):
    recon.run(DAY1, store=store)
    bob = two_days["bob"]
    entries = list(EntryItem.query(keys.account_pk(bob), EntryItem.SK.startswith("E#")))
    day2 = [e for e in entries if e.created_at.startswith(DAY2)]
    victim = day2[0]
    victim.delete()
    report = recon.run(DAY2, store=store)
    assert report.status == "mismatch"
    missing = [m for m in report.mismatches if m["check"] == "entry_missing"]
    assert missing == [
        {
            "check": "entry_missing",
            "account_id": bob,
            "seq": int(victim.seq),
            "detail": f"entry seq {int(victim.seq)} is missing",
        }
    ]


def test_a_missing_last_entry_is_named(store, two_days):
    carol = two_days["carol"]
    [entry] = list(EntryItem.query(keys.account_pk(carol), EntryItem.SK.startswith("E#")))
    entry.delete()
    report = recon.run(DAY2, store=store)  # first run: every account from its first entry
    assert ("entry_missing", carol) in checks(report)
    assert any(m["check"] == "trial_balance" for m in report.mismatches)


def test_money_from_nowhere_with_consistent_entries_breaks_the_trial_balance(store, two_days):
    recon.run(DAY1, store=store)
    bob = two_days["bob"]
    item = AccountItem.get(keys.account_pk(bob), keys.ACCOUNT_SK)
    seq, posted = int(item.last_seq) + 1, int(item.posted) + 100
    EntryItem(
        keys.account_pk(bob),
        keys.entry_sk(f"{DAY2}T23:59:00.000000Z", seq),
        item_type="entry",
        account_id=bob,
        seq=seq,
        transaction_id="txn_ghost",
        type="deposit",
        amount=100,
        balance_after=posted,
        created_at=f"{DAY2}T23:59:00.000000Z",
    ).save()
    item.update(
        actions=[
            AccountItem.posted.set(posted),
            AccountItem.available.set(posted - int(item.pending_out)),
            AccountItem.last_seq.set(seq),
            AccountItem.version.set(int(item.version) + 1),
        ]
    )
    report = recon.run(DAY2, store=store)
    assert report.trial_balance == {"USD": "1.00"}
    assert checks(report) == [("trial_balance", "")]
    assert report.mismatches[0]["currency"] == "USD"


def test_an_unflagged_overdraft_is_named(store, two_days):
    recon.run(DAY1, store=store)
    carol = two_days["carol"]
    item = AccountItem.get(keys.account_pk(carol), keys.ACCOUNT_SK)
    item.update(actions=[AccountItem.pending_out.set(3_000)])
    report = recon.run(DAY2, store=store)
    assert ("overdraft", carol) in checks(report)


# -- Stripe ---------------------------------------------------------------------------------------
def test_a_stripe_charge_with_no_deposit_and_a_deposit_with_no_charge(store, two_days, ledger):
    stripe = two_days["stripe"]
    stripe.items = [i for i in stripe.items if i.payment_intent_id != "pi_b1"]  # no charge
    stripe.charge("pi_stranger", 9_900, DAY1)  # a charge the ledger never credited
    stripe.charge("pi_tomorrow", 1_000, DAY2)  # another day's business: not in day 1's report
    report = recon.run(DAY1, store=store, gateway=stripe)
    assert report.status == "mismatch"
    assert report.stripe["matched"] == 1
    [ledger_side] = report.stripe["unmatched_ledger"]
    assert ledger_side["payment_intent_id"] == "pi_b1"
    assert (ledger_side["amount"], ledger_side["deposit_id"]) == ("200.00", "dep_pi_b1")
    [stripe_side] = report.stripe["unmatched_stripe"]
    assert (stripe_side["id"], stripe_side["amount"]) == ("txn_pi_stranger", "99.00")
    assert sorted(checks(report)) == [
        ("stripe_unmatched_ledger", ledger_side["transaction_id"]),
        ("stripe_unmatched_stripe", "txn_pi_stranger"),
    ]


def test_a_payment_credited_twice_is_reported_not_hidden_behind_its_first_credit(
    store, ledger, clock, two_days
):
    """Two ledger deposits for one PaymentIntent (money recorded twice, under another id): Stripe
    has one charge, so the second credit is unmatched."""
    clock.day = DAY1
    twice = derive_transaction_id("deposit-again", "pi_b1")
    ledger.ledger.record(
        transaction_id=twice,
        type=TransactionType.DEPOSIT,
        postings=[
            PostingRequest(CLEARING, USD, -20_000),
            PostingRequest(two_days["bob"], USD, 20_000),
        ],
        metadata={"deposit_id": "dep_pi_b1", "payment_intent_id": "pi_b1"},
    )
    report = recon.run(DAY1, store=store, gateway=two_days["stripe"])
    assert report.status == "mismatch"
    assert report.stripe["matched"] == 2
    assert [v["transaction_id"] for v in report.stripe["unmatched_ledger"]] == [twice]
    assert checks(report) == [("stripe_unmatched_ledger", twice)]


def test_a_refund_failed_after_it_succeeded_matches_stripes_refund_failure(
    store, ledger, clock, two_days
):
    """The ledger gives a refund's money back with a reversal of the refund (refunds.py); Stripe
    records a ``refund_failure``. They pair by our refund id; either alone is reported."""
    stripe = two_days["stripe"]
    recon.run(DAY1, store=store, gateway=stripe)
    clock.day = DAY2
    refund_txn = derive_transaction_id("refund", "rf_1")
    back = ledger.ledger.reverse(
        refund_txn, memo="failed", metadata={"refund_id": "rf_1", "payment_intent_id": "pi_a1"}
    )

    report = recon.run(DAY2, store=store, gateway=stripe)
    assert checks(report) == [("stripe_unmatched_ledger", back.id)]
    assert report.stripe["unmatched_ledger"][0]["refund_id"] == "rf_1"

    stripe.items.append(
        BalanceTransaction(
            id="txn_rf_1_failure",
            type="refund_failure",
            amount=4_000,
            currency=USD,
            created=_epoch(DAY2, 14),
            source_id="re_rf_1",
            payment_intent_id="pi_a1",
            refund_id="rf_1",
        )
    )
    report = recon.run(DAY2, store=store, gateway=stripe)
    assert report.status == "ok", report.mismatches
    assert report.stripe == {"matched": 3, "unmatched_ledger": [], "unmatched_stripe": []}


def test_a_reversal_of_money_settled_with_stripe_is_reported_as_a_double_payment(
    store, ledger, clock, two_days
):
    """Rollback refuses a provider-settled transaction (409 not_reversible). A reversal that got
    past it anyway, here of the succeeded refund rf_1, pays the user a second time: Stripe has
    no balance transaction for it, so the Stripe check reports it. An ordinary transfer's
    reversal (day 2 of ``two_days``) touches no Stripe money and is not reported."""
    stripe = two_days["stripe"]
    recon.run(DAY1, store=store, gateway=stripe)
    clock.day = DAY2
    assert recon.run(DAY2, store=store, gateway=stripe).status == "ok"
    refund_txn = derive_transaction_id("refund", "rf_1")
    paid_twice = ledger.ledger.reverse(refund_txn, memo="rolled back past the guard")
    deposit_back = ledger.ledger.reverse(
        derive_transaction_id("deposit", "pi_b2"), memo="a card deposit taken back"
    )

    report = recon.run(DAY2, store=store, gateway=stripe)
    assert report.status == "mismatch"
    assert sorted(checks(report)) == sorted(
        [
            ("stripe_unmatched_ledger", paid_twice.id),
            ("stripe_unmatched_ledger", deposit_back.id),
        ]
    )
    assert {v["type"] for v in report.stripe["unmatched_ledger"]} == {"reversal"}


def test_amounts_are_compared_and_refunds_match_by_our_refund_id(store, two_days):
    stripe = two_days["stripe"]
    recon.run(DAY1, store=store, gateway=stripe)
    stripe.items = [i for i in stripe.items if i.refund_id != "rf_1"]
    stripe.refund("rf_1", "pi_a1", 4_100, DAY2)
    report = recon.run(DAY2, store=store, gateway=stripe)
    [m] = report.mismatches
    assert m["check"] == "stripe_amount"
    assert (m["expected"], m["actual"]) == ("40.00 USD", "41.00 USD")
    assert report.stripe["matched"] == 1  # the day-2 deposit


def test_a_charge_just_before_midnight_matches_a_credit_just_after(store, ledger, clock):
    alice = ledger.open_user_account()
    ledger.ledger.clock = lambda: f"{DAY2}T00:00:20.000000Z"  # credited just after midnight
    card_deposit(ledger, alice, 2_000, "pi_midnight")
    stripe = FakeStripe()
    stripe.charge("pi_midnight", 2_000, DAY2, hour=0)
    stripe.items[0] = BalanceTransaction(
        **{**stripe.items[0].__dict__, "created": _epoch(DAY2, 0) - 30}
    )  # 23:59:30 on day 1
    first = recon.run(DAY1, store=store, gateway=stripe)
    assert first.stripe == {"matched": 0, "unmatched_ledger": [], "unmatched_stripe": []}
    assert first.status == "ok"
    second = recon.run(DAY2, store=store, gateway=stripe)  # the pair counts on the ledger's day
    assert second.stripe == {"matched": 1, "unmatched_ledger": [], "unmatched_stripe": []}
    assert second.status == "ok", second.mismatches


# -- alerts, metric, full check -------------------------------------------------------------------
def test_a_mismatch_is_published_to_the_alert_topic_and_counted(store, two_days, capsys):
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="ledger-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    alerts = SnsAlerts(topic, "us-east-1")
    clean = recon.run(DAY1, store=store, alerts=alerts)
    assert clean.status == "ok"
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)

    item = AccountItem.get(keys.account_pk(two_days["carol"]), keys.ACCOUNT_SK)
    item.update(actions=[AccountItem.posted.set(1)])
    report = recon.run(DAY2, store=store, alerts=alerts)
    assert report.status == "mismatch"
    [message] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)["Messages"]
    published = json.loads(json.loads(message["Body"])["Message"])
    assert (published["date"], published["status"]) == (DAY2, "mismatch")
    assert published["mismatches"] == len(report.mismatches)

    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    values = [m["ReconciliationMismatch"] for m in metrics]
    assert values == [[0.0], [float(len(report.mismatches))]]
    assert metrics[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Ledger"


def test_a_report_that_cannot_be_stored_still_alerts(store, two_days, monkeypatch, capsys):
    """A very bad night can make the report item too large for DynamoDB (400 KB): the run fails,
    but the alert and the metric have gone out first."""
    published: list[str] = []

    class RecordingAlerts:
        def publish(self, subject: str, message: str) -> bool:
            published.append(json.loads(message)["date"])
            return True

    def too_large(*_args) -> None:
        raise ValueError("Item size has exceeded the maximum allowed size")

    monkeypatch.setattr(store, "put_report", too_large)
    item = AccountItem.get(keys.account_pk(two_days["carol"]), keys.ACCOUNT_SK)
    item.update(actions=[AccountItem.posted.set(1)])

    with pytest.raises(ValueError, match="maximum allowed size"):
        recon.run(DAY1, store=store, alerts=RecordingAlerts())

    assert published == [DAY1]
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert [m["ReconciliationMismatch"] for m in metrics] == [[1.0]]


def test_the_run_never_changes_a_balance(store, two_days, table):
    before = _balances(table)
    recon.run(DAY1, store=store)
    recon.run(DAY2, store=store)
    assert _balances(table) == before


def _balances(table: str) -> dict[str, tuple[str, str, str]]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return {
        i["PK"]["S"]: (i["posted"]["N"], i["available"]["N"], i["version"]["N"])
        for i in client.scan(TableName=table)["Items"]
        if i["item_type"]["S"] == "account"
    }


def test_full_check_verifies_every_account_from_its_first_entry(
    table, two_days, capsys, monkeypatch
):
    from chalicelib.api import dependencies
    from infra import reconcile

    monkeypatch.setenv("TABLE_NAME", table)
    report = recon.full_report(DynamoReconciliationStore(table))
    assert report.status == "ok", report.mismatches
    assert report.transactions_checked == 9
    assert report.trial_balance == {"USD": "0.00"}
    assert reconcile.main(["--full", "--table", table]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"

    alice = two_days["alice"]
    [first, *_] = list(EntryItem.query(keys.account_pk(alice), EntryItem.SK.startswith("E#")))
    first.update(actions=[EntryItem.balance_after.set(int(first.balance_after) + 1)])
    report = recon.full_report(DynamoReconciliationStore(table))
    assert ("entry_balance_after", alice) in checks(report)
    assert reconcile.main(["--full", "--table", table]) == 1
    dependencies.reset()  # the command binds the process-wide getters


def test_full_check_reads_another_table_without_moving_the_models(table, two_days):
    client = boto3.client("dynamodb", region_name="us-east-1")
    from infra.local.table import create_table

    create_table(client, "ledger-scratch")
    report = recon.full_report(DynamoReconciliationStore("ledger-scratch"))
    assert (report.status, report.accounts_checked, report.transactions_checked) == ("ok", 0, 0)
    assert AccountItem.Meta.table_name == table


@pytest.mark.parametrize("text", ["2026-13-01", "yesterday", "2026-1-1", 20260101, None])
def test_a_bad_date_is_refused(text):
    from chalicelib.domain.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        recon.parse_day(text, datetime(2026, 11, 23, tzinfo=UTC).date())


def test_a_future_day_is_refused_today_is_not():
    from chalicelib.domain.errors import InvalidRequest

    today = datetime(2026, 11, 23, tzinfo=UTC).date()
    assert recon.parse_day("2026-11-22", today) == "2026-11-22"
    assert recon.parse_day("2026-11-23", today) == "2026-11-23"
    with pytest.raises(InvalidRequest):
        recon.parse_day("2026-11-24", today)


def test_a_partial_day_is_replaced_by_the_run_after_the_day(store, ledger, clock):
    alice, bob = ledger.open_user_account(), ledger.open_user_account()
    clock.day = DAY1
    ledger.fund(alice, 5_000)
    recon.run(DAY1, store=store)
    clock.day = DAY2
    ledger.transfer(alice, bob, 1_000)
    partial = recon.run(DAY2, store=store)  # "today", in the morning
    assert (partial.status, partial.transactions_checked) == ("ok", 1)
    ledger.transfer(bob, alice, 400)  # the afternoon
    final = recon.run(DAY2, store=store)  # after the day ended
    assert (final.status, final.transactions_checked) == ("ok", 2)
    clock.day = DAY3
    ledger.transfer(alice, bob, 1)
    assert recon.run(DAY3, store=store).status == "ok"


def test_a_rerun_that_finds_an_account_broken_drops_its_checkpoint_of_that_day(store, two_days):
    recon.run(DAY1, store=store)
    assert recon.run(DAY2, store=store).status == "ok"
    carol = two_days["carol"]
    assert carol in _checked_accounts(store, DAY2)
    item = AccountItem.get(keys.account_pk(carol), keys.ACCOUNT_SK)
    item.update(actions=[AccountItem.posted.set(7)])
    assert recon.run(DAY2, store=store).status == "mismatch"
    # Day 3 must not start from a checkpoint the totals no longer include.
    assert carol not in _checked_accounts(store, DAY2)


def test_the_shell_command_runs_a_day_and_the_full_check(table, two_days, capsys, monkeypatch):
    from chalicelib.api import dependencies
    from infra import reconcile

    monkeypatch.setenv("TABLE_NAME", table)
    request_cleanup = dependencies.reset  # the command binds the process-wide getters
    assert reconcile.main(["--date", DAY1, "--no-stripe"]) == 0
    assert json.loads(capsys.readouterr().out)["date"] == DAY1
    assert reconcile.main(["--full"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    assert reconcile.main(["--date", "2999-01-01", "--no-stripe"]) == 2
    request_cleanup()


def test_money_moving_between_two_account_reads_does_not_unbalance_the_run(
    store, two_days, ledger, clock
):
    """Accounts are read one after another: a transfer landing after Alice's entries were read
    but before Bob's would count on one side only, unless every account closes at one instant."""
    recon.run(DAY1, store=store)
    clock.day = DAY2
    started = parse_iso(clock())
    alice, bob = two_days["alice"], two_days["bob"]
    seen: list[str] = []

    def between_reads(account_id: str) -> None:
        if account_id in (alice, bob):
            seen.append(account_id)
            if len(seen) == 2:  # after the first of the two, before the second
                ledger.transfer(alice, bob, 10)

    report = recon.run(
        DAY2,
        store=store,
        on_read=between_reads,
        now=lambda: to_iso(started + recon.CUTOFF_MARGIN),
    )

    assert report.status == "ok", report.mismatches
    assert len(seen) >= 2


# -- pending amounts, the rolling sweep, missed nights and partial days ----------------------------
def _plant(account_id: str, **values: int) -> None:
    """Change an account item behind the ledger's back."""
    item = AccountItem.get(keys.account_pk(account_id), keys.ACCOUNT_SK)
    item.update(actions=[getattr(AccountItem, name).set(v) for name, v in values.items()])


def test_a_pending_amount_that_its_open_holds_do_not_give_is_named(store, ledger, clock):
    alice, bob = ledger.open_user_account(), ledger.open_user_account()
    clock.day = DAY1
    ledger.fund(alice, 5_000)
    recon.run(DAY1, store=store)
    clock.day = DAY2
    ledger.transfer(alice, bob, 1_000, pending=True)  # a hold, open at the end of day 2
    _plant(alice, pending_out=0)  # would let Alice spend the held money again
    report = recon.run(DAY2, store=store)
    assert ("pending_amount", alice) in checks(report)
    [m] = [m for m in report.mismatches if m["check"] == "pending_amount"]
    assert (m["expected"], m["actual"]) == ("1000/0", "0/0")
    assert ("pending_amount", bob) not in checks(report)  # Bob's 1000 incoming is right


def test_a_negative_pending_amount_is_named(store, ledger, clock):
    alice = ledger.open_user_account()
    clock.day = DAY1
    ledger.fund(alice, 5_000)
    recon.run(DAY1, store=store)
    clock.day = DAY2
    ledger.fund(alice, 1)
    _plant(alice, pending_in=-5)
    assert ("pending_sign", alice) in checks(recon.run(DAY2, store=store))


def test_holds_made_and_posted_while_the_run_reads_cause_no_false_pending_mismatch(
    store, two_days, ledger, clock, monkeypatch
):
    """The run reads the transactions, then the accounts: holds made, posted and voided in
    between are in the accounts' pending amounts but not in what the run read."""
    recon.run(DAY1, store=store)
    alice, bob = two_days["alice"], two_days["bob"]
    clock.day = DAY2
    held = ledger.transfer(alice, bob, 20, pending=True).transaction.id  # read as pending
    clock.day = DAY3  # the run of day 2 happens on day 3, while money keeps moving
    moves: list[str] = []
    read_accounts = store.accounts

    def accounts_after_moves(account_ids):
        if not moves:
            moves.append(ledger.transfer(alice, bob, 10, pending=True).transaction.id)
            moves.append(ledger.transfer(bob, alice, 5, pending=True).transaction.id)
            ledger.ledger.post_pending(moves[1])
            ledger.ledger.void_pending(held)
        return read_accounts(account_ids)

    monkeypatch.setattr(store, "accounts", accounts_after_moves)
    report = recon.run(DAY2, store=store)
    assert moves
    assert not [m for m in report.mismatches if m["check"].startswith("pending")]


def test_tampering_with_an_untouched_account_is_found_within_seven_nights(store, ledger, clock):
    quiet = [ledger.open_user_account() for _ in range(8)]
    busy = ledger.open_user_account()
    clock.day = DAY1
    for account in quiet:
        ledger.fund(account, 1_000)
    recon.run(DAY1, store=store)
    victim = quiet[3]
    _plant(victim, posted=100_000_000, available=100_000_000)  # +1,000,000.00, no entry
    _plant(quiet[5], pending_out=700)  # a hold that does not exist
    found: dict[str, str] = {}
    for n in range(1, 8):
        day = date.fromisoformat(DAY1).toordinal() + n
        clock.day = date.fromordinal(day).isoformat()
        ledger.fund(busy, 1)  # the night has activity, none on the quiet accounts
        report = recon.run(clock.day, store=store)
        for check, subject in checks(report):
            found.setdefault(f"{check} {subject}", clock.day)
    assert f"account_balance {victim}" in found
    assert f"pending_amount {quiet[5]}" in found


def test_a_missed_night_is_checked_by_the_next_run_stripe_included(store, ledger, clock):
    alice = ledger.open_user_account()
    clock.day = DAY1
    card_deposit(ledger, alice, 1_000, "pi_1")
    stripe = FakeStripe()
    stripe.charge("pi_1", 1_000, DAY1)
    assert recon.run(DAY1, store=store, gateway=stripe).status == "ok"
    clock.day = DAY2  # the night of day 2 never ran
    card_deposit(ledger, alice, 2_000, "pi_2")
    stripe.charge("pi_2", 2_000, DAY2)
    stripe.charge("pi_lost", 3_000, DAY2)  # Stripe took money the ledger never credited
    card_deposit(ledger, alice, 4_000, "pi_nocharge")  # and the ledger credited a ghost
    clock.day = DAY3
    card_deposit(ledger, alice, 5_000, "pi_3")
    stripe.charge("pi_3", 5_000, DAY3)
    report = recon.run(DAY3, store=store, gateway=stripe)
    assert report.transactions_checked == 3
    assert report.stripe["matched"] == 2
    assert [v["id"] for v in report.stripe["unmatched_stripe"]] == ["txn_pi_lost"]
    assert [v["payment_intent_id"] for v in report.stripe["unmatched_ledger"]] == ["pi_nocharge"]
    assert stripe.calls[-1][0] == _epoch(DAY2, 0) - 3600  # from the missed day, with slack


def test_a_partial_day_is_never_the_start_of_the_next_run(store, ledger, clock):
    alice, bob = ledger.open_user_account(), ledger.open_user_account()
    clock.day = DAY1
    ledger.fund(alice, 5_000)
    recon.run(DAY1, store=store)
    clock.day = DAY2
    ledger.transfer(alice, bob, 1_000)
    partial = recon.run(DAY2, store=store, now=lambda: f"{DAY2}T12:30:00.000000Z")
    assert partial.status == "ok"
    assert _checked_accounts(store, DAY2) == set()  # a partial day writes no checkpoint
    forged = Transaction(  # written after the partial run's cut-off
        id="txn_late_forged",
        type=TransactionType.TRANSFER,
        status=TransactionStatus.POSTED,
        postings=(Posting(alice, USD, -100), Posting(bob, USD, 150)),
        created_at=f"{DAY2}T23:00:00.000000Z",
    )
    TransactionItem.from_domain(forged).save()
    clock.day = DAY3  # the night of day 2 never ran
    ledger.transfer(bob, alice, 1)
    report = recon.run(DAY3, store=store)
    assert ("transaction_unbalanced", "txn_late_forged") in checks(report)
    assert report.transactions_checked == 3  # day 2's two (the forged one too), day 3's one

"""The local stack's scheduler (infra/local/scheduler.py): every job on its own interval, a
failing run does not stop the others, and it stops with its parent."""

from __future__ import annotations

from infra.local import scheduler


def test_jobs_run_on_their_intervals_and_a_failure_does_not_stop_the_loop(monkeypatch, capsys):
    calls: list[str] = []

    def mail() -> None:
        calls.append("mail")

    def hooks() -> None:
        calls.append("hooks")
        raise RuntimeError("the table is restarting")

    monkeypatch.setattr(scheduler, "_function", lambda name: {"mail": mail, "hooks": hooks}[name])
    now = [0.0]
    ticks = iter(range(10))

    def sleep(_seconds: float) -> None:
        now[0] += 0.5

    scheduler.run(
        0,
        (scheduler.Job("mail", 1.0), scheduler.Job("hooks", 2.0)),
        alive=lambda: next(ticks, None) is not None,
        clock=lambda: now[0],
        sleep=sleep,
    )
    # ten ticks of 0.5 s: mail at 0, 1, 2, 3, 4 s; hooks at 0, 2, 4 s
    assert calls.count("mail") == 5
    assert calls.count("hooks") == 3
    assert "the table is restarting" in capsys.readouterr().err


def test_the_stack_runs_mail_and_webhooks_every_second_and_the_expiries_and_checks_too():
    import chalicelib.api.jobs as jobs

    assert {(job.name, job.interval) for job in scheduler.JOBS} == {
        ("deliver_waiting_mail", 1.0),
        ("run_webhook_delivery", 1.0),
        ("run_payment_request_expiry", 30.0),
        ("run_review_expiry", 30.0),
        ("run_hold_sweeper", 30.0),
        ("run_balance_monitors", 30.0),
        ("run_payroll_finisher", 30.0),
    }
    for job in scheduler.JOBS:
        assert callable(getattr(jobs, job.name))

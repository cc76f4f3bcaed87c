"""The operator console in a real browser, on a local stack: the seeded admin signs in with a
TOTP code, suspends and unsuspends a user, approves a withdrawal, rolls back a transfer after the
confirmation that names its amount, and runs a reconciliation whose report and 30-day chart appear.
The tests share one browser and its one sign-in (``signed_in``), and run in file order."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pyotp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.test_local_stack import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ADMIN_TOTP_SECRET,
    HOST,
    Stack,
    require_running,
)
from tests.e2e.test_races_http import call, deliver, deposit_to, post, sign_up_and_log_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.xdist_group("browser-console")]

# Generous: the stack's API shares two cores with the browser and other tests. Waiting ends as
# soon as the page shows what is awaited.
PATIENCE_SECONDS = 60


def console_url(stack: Stack) -> str:
    return f"http://{HOST}:{stack.api}/console"


def wait(browser: WebDriver) -> WebDriverWait:
    return WebDriverWait(browser, PATIENCE_SECONDS)


def shown(browser: WebDriver, css: str) -> WebElement:
    return wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def text_in(browser: WebDriver, css: str, text: str) -> None:
    wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))


def go(browser: WebDriver, page: str) -> None:
    browser.execute_script("location.hash = arguments[0]", page)
    shown(browser, f'main[data-page="{page}"]')


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.fixture(scope="module")
def signed_in(driver: WebDriver, stack: Stack) -> dict[str, str]:
    """The console, signed in as the seeded admin: once with a wrong code (refused, with the
    API's message and request id), then with the current one."""
    require_running(stack)
    driver.get(console_url(stack) + "/")  # sent on to /console, where its files are found
    wait(driver).until(ec.url_to_be(console_url(stack)))
    code = pyotp.TOTP(ADMIN_TOTP_SECRET).now()
    refused = ""
    for attempt in (other_code(code), code):
        email = shown(driver, 'input[name="email"]')
        email.clear()
        email.send_keys(ADMIN_EMAIL)
        password = driver.find_element(By.NAME, "password")
        password.clear()
        password.send_keys(ADMIN_PASSWORD)
        totp = driver.find_element(By.NAME, "totp_code")
        totp.clear()
        totp.send_keys(attempt)
        driver.find_element(By.CSS_SELECTOR, "form.sign-in button[type=submit]").click()
        if attempt != code:
            text_in(driver, ".error .meta", "401 invalid_totp")
            refused = driver.find_element(By.CSS_SELECTOR, ".error").text
    shown(driver, "#nav")
    text_in(driver, "#who", ADMIN_EMAIL)
    return {"refused": refused}


def test_the_admin_signs_in_with_password_and_totp(signed_in, browser):
    assert browser.find_element(By.ID, "who").text == ADMIN_EMAIL
    shown(browser, 'main[data-page="users"] article.user')
    # The tokens are in the page's memory only.
    stored = browser.execute_script(
        "return [localStorage.length, sessionStorage.length, document.cookie]"
    )
    assert stored == [0, 0, ""]
    entries = browser.get_log("browser")
    assert [e for e in entries if e["level"] == "SEVERE" and e["source"] != "network"] == []


def test_a_refused_login_shows_the_apis_message_and_request_id(signed_in):
    """The wrong code tried first by ``signed_in``: the API's own words, code and request id."""
    message, meta = signed_in["refused"].splitlines()[:2]
    assert message == "the code is wrong or was already used"
    assert meta.startswith("401 invalid_totp · request id ")


def test_suspend_and_unsuspend_a_user(signed_in, browser, stack):
    email = f"suspend-{uuid.uuid4().hex[:8]}@example.com"
    tokens = sign_up_and_log_in(stack, email)
    go(browser, "users")

    search = shown(browser, 'form.search-users input[name="email"]')
    search.clear()
    search.send_keys(email)
    search.submit()
    user = shown(browser, "article.user h3")
    text_in(browser, "article.user h3", email)
    assert user.text == email

    browser.find_element(By.CSS_SELECTOR, 'form.suspend input[name="reason"]').send_keys(
        "chargeback fraud <script>alert(1)</script>"
    )
    browser.find_element(By.CSS_SELECTOR, "form.suspend button").click()
    shown(browser, 'article.user[data-status="suspended"]')
    text_in(browser, "article.user", "chargeback fraud <script>alert(1)</script>")  # as text
    status, body = call(stack, "/v1/me", tokens["access_token"])
    assert (status, body["error"]["code"]) == (403, "account_suspended")

    browser.find_element(By.CSS_SELECTOR, "button.unsuspend").click()
    shown(browser, 'article.user[data-status="active"]')
    text_in(browser, "article.user .outcome", "is active")


def funded_user(stack: Stack, amount: str) -> dict:
    email = f"funded-{uuid.uuid4().hex[:8]}@example.com"
    tokens = sign_up_and_log_in(stack, email)
    token = tokens["access_token"]
    event = deposit_to(stack, token, amount, f"evt_{uuid.uuid4().hex}", f"tx_{uuid.uuid4().hex}")
    assert deliver(stack, event)[0] == 200
    return {"email": email, "token": token}


def test_approve_a_withdrawal(signed_in, browser, stack):
    user = funded_user(stack, "25")  # the local stage's USDT minimum is 10
    request = {"amount": "12", "currency": "USDT", "destination": "0xconsole-destination-1"}
    status, body = call(stack, "/v1/withdrawals", user["token"], request, uuid.uuid4().hex)
    assert status == 201, body
    withdrawal_id = body["withdrawal"]["id"]

    go(browser, "withdrawals")
    card = f'article.withdrawal[data-withdrawal-id="{withdrawal_id}"]'
    shown(browser, f'{card}[data-status="pending_review"]')
    browser.find_element(By.CSS_SELECTOR, f"{card} button.approve").click()

    shown(browser, f'{card}[data-status="processing"]')
    text_in(browser, f"{card} .outcome", "Approved")
    status, body = call(stack, f"/v1/withdrawals/{withdrawal_id}", user["token"])
    assert (status, body["withdrawal"]["status"]) == (200, "processing")


def test_roll_back_a_transfer_after_confirming_its_amount(signed_in, browser, stack):
    payer = funded_user(stack, "10")
    payee = sign_up_and_log_in(stack, f"payee-{uuid.uuid4().hex[:8]}@example.com")
    payee_email = call(stack, "/v1/me", payee["access_token"])[1]["user"]["email"]
    transfer = {"amount": "3", "currency": "USDT", "to_email": payee_email}
    status, body = call(stack, "/v1/transfers", payer["token"], transfer, uuid.uuid4().hex)
    assert status == 201, body
    transaction = body["transaction"]
    moved = next(p["amount"] for p in transaction["postings"] if not p["amount"].startswith("-"))

    go(browser, "transactions")
    lookup = shown(browser, 'form.lookup input[name="transaction_id"]')
    lookup.send_keys(transaction["id"])
    lookup.submit()
    shown(browser, f'.transaction[data-transaction-id="{transaction["id"]}"]')
    browser.find_element(By.CSS_SELECTOR, '.rollback input[name="reason"]').send_keys(
        "sent to the wrong person"
    )
    browser.find_element(By.CSS_SELECTOR, ".rollback form button[type=submit]").click()

    confirm = shown(browser, "button.confirm-rollback")
    assert confirm.text == f"Confirm: roll back {moved} USDT"
    assert "Idempotency-Key console-" in browser.find_element(By.CSS_SELECTOR, ".confirmation").text
    confirm.click()

    text_in(browser, ".rollback .outcome", "Rolled back")
    status, body = call(stack, f"/v1/transactions/{transaction['id']}", payer["token"])
    assert status == 200
    assert body["transaction"]["reversed_by"]
    reversal = browser.find_element(By.CSS_SELECTOR, ".rollback .outcome .transaction")
    assert reversal.get_attribute("data-transaction-id") == body["transaction"]["reversed_by"]


def test_a_reconciliation_report_and_its_30_day_chart(signed_in, browser, stack):
    funded_user(stack, "10")  # a deposit today: the day has a transaction to check
    go(browser, "reconciliation")
    shown(browser, "svg.chart")
    today = datetime.now(UTC).date().isoformat()
    day = shown(browser, 'form.run-reconciliation input[name="date"]')
    browser.execute_script("arguments[0].value = arguments[1]", day, today)
    browser.find_element(By.CSS_SELECTOR, "form.run-reconciliation button").click()

    text_in(browser, ".panel .outcome", f"Reconciled {today}")
    report = shown(browser, f'article.report[data-date="{today}"]')
    assert "Mismatches (" in report.text
    wait(browser).until(
        lambda b: b.find_elements(
            By.CSS_SELECTOR, f'svg.chart g.day[data-date="{today}"] rect.checked'
        )
    )
    days = browser.find_elements(By.CSS_SELECTOR, "svg.chart g.day")
    assert len(days) == 30
    assert days[-1].get_attribute("data-date") == today
    bar = browser.find_element(By.CSS_SELECTOR, f'g.day[data-date="{today}"] rect.checked')
    assert float(bar.get_attribute("height")) > 0  # the day's transactions were checked


def test_a_facility_and_its_api_key_shown_once_then_revoked(signed_in, browser, stack):
    name = f"Clinic {uuid.uuid4().hex[:6]}"
    go(browser, "facilities")
    field = shown(browser, 'form.create-facility input[name="facility_name"]')
    field.send_keys(name)
    field.submit()
    text_in(browser, ".panel .outcome", f"Created {name}")
    card = wait(browser).until(
        lambda b: next(
            (c for c in b.find_elements(By.CSS_SELECTOR, "article.facility") if name in c.text),
            None,
        )
    )
    card.find_element(By.CSS_SELECTOR, "button.show-keys").click()
    key_name = wait(browser).until(
        lambda b: card.find_element(By.CSS_SELECTOR, 'input[name="key_name"]')
    )
    key_name.send_keys("payments server")
    card.find_element(By.CSS_SELECTOR, "form.create-key button[type=submit]").click()

    secret = wait(browser).until(lambda b: card.find_element(By.CSS_SELECTOR, "input.secret"))
    value = secret.get_attribute("value")
    assert value.startswith("fk_")
    status, _ = call(stack, "/v1/facility", value)
    assert status == 200  # the key works
    key = wait(browser).until(
        lambda b: card.find_element(By.CSS_SELECTOR, '.key[data-status="active"]')
    )
    key.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait(browser).until(
        lambda b: card.find_element(By.CSS_SELECTOR, "button.confirm-revoke")
    ).click()
    wait(browser).until(lambda b: card.find_element(By.CSS_SELECTOR, '.key[data-status="revoked"]'))
    status, body = call(stack, "/v1/facility", value)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")


def test_adjustments_post_below_the_threshold_and_wait_for_four_eyes_above(
    signed_in, browser, stack
):
    user = funded_user(stack, "10")
    account = next(
        a for a in call(stack, "/v1/accounts", user["token"])[1]["data"] if a["currency"] == "USDT"
    )
    go(browser, "adjustments")

    def create(amount: str) -> None:
        for name, value in (("account_id", account["id"]), ("amount", amount)):
            box = shown(browser, f'form.create-adjustment input[name="{name}"]')
            box.clear()
            box.send_keys(value)
        reason = browser.find_element(
            By.CSS_SELECTOR, 'form.create-adjustment input[name="reason"]'
        )
        reason.clear()
        reason.send_keys("goodwill credit")
        browser.find_element(By.CSS_SELECTOR, "form.create-adjustment button").click()

    create("2.5")
    text_in(browser, ".panel .outcome", "Posted: transaction")
    create("5000")
    pending = shown(browser, '.adjustment[data-status="pending_approval"]')
    adjustment_id = pending.get_attribute("data-adjustment-id")

    approve = browser.find_element(
        By.CSS_SELECTOR, 'form.approve-adjustment input[name="adjustment_id"]'
    )
    approve.send_keys(adjustment_id)
    approve.submit()
    # Four eyes: the admin who asked cannot approve; the page shows the API's refusal.
    text_in(browser, "form.approve-adjustment + .outcome .error .meta", "403 forbidden")
    balance = next(
        a for a in call(stack, "/v1/accounts", user["token"])[1]["data"] if a["currency"] == "USDT"
    )
    assert balance["posted"] == "12.500000"


def test_a_long_list_pages_with_more(signed_in, browser, stack):
    """21 users whose emails start alike: the API's first page (20), then "More" fetches the
    rest with the cursor, and the button goes away at the end."""
    tag = uuid.uuid4().hex[:8]
    signup = f"http://{HOST}:{stack.api}/v1/auth/signup"

    def sign_up(i: int) -> int:
        body = {"email": f"{tag}-{i:02d}@example.com", "password": "correct horse battery"}
        return post(signup, {**body, "accept_terms": True})[0]

    with ThreadPoolExecutor(max_workers=2) as pool:  # waits up to 60 s for an answer
        assert set(pool.map(sign_up, range(21))) == {201}
    go(browser, "users")
    search = shown(browser, 'form.search-users input[name="email"]')
    search.clear()
    search.send_keys(tag)
    search.submit()
    more = shown(browser, "button.more")
    assert len(browser.find_elements(By.CSS_SELECTOR, "article.user")) == 20
    more.click()
    wait(browser).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "article.user")) == 21)
    wait(browser).until(ec.invisibility_of_element_located((By.CSS_SELECTOR, "button.more")))
    emails = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "article.user h3")]
    assert sorted(emails) == [f"{tag}-{i:02d}@example.com" for i in range(21)]


def test_the_audit_log_by_action_and_the_chains_verification(signed_in, browser):
    go(browser, "audit")
    since = shown(browser, 'form.audit-filters input[name="from"]')
    # An hour ago on the browser's clock, as a datetime-local field holds it.
    browser.execute_script(
        """
        const d = new Date(Date.now() - 3600e3);
        const p = (n) => String(n).padStart(2, "0");
        arguments[0].value = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}` +
          `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
        """,
        since,
    )
    action = shown(browser, 'form.audit-filters input[name="action"]')
    action.send_keys("auth.login_failed")  # the wrong code tried by signed_in
    action.submit()
    shown(browser, 'article.audit-event[data-action="auth.login_failed"]')
    events = browser.find_elements(By.CSS_SELECTOR, "article.audit-event")
    assert {e.get_attribute("data-action") for e in events} == {"auth.login_failed"}

    browser.find_element(By.CSS_SELECTOR, "form.verify-chain button").click()
    text_in(browser, "form.verify-chain + .outcome", "days checked")
    verdict = browser.find_element(By.CSS_SELECTOR, "form.verify-chain + .outcome .done").text
    assert verdict.startswith("The chain verifies")


def test_the_console_works_at_phone_width(signed_in, browser):
    """At 375 CSS pixels (a phone; emulated: a headless window is never that narrow) no page is
    wider than the screen."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True},
    )
    try:
        assert browser.execute_script("return window.innerWidth") == 375
        for page in (
            "users",
            "withdrawals",
            "transactions",
            "reconciliation",
            "audit",
            "facilities",
        ):
            go(browser, page)
            shown(browser, "main .panel")
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= 375, page
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_no_page_breaks_the_content_security_policy(signed_in, browser):
    # What the browser logged since the sign-in test read its log: every earlier page included.
    for page in ("users", "withdrawals", "reviews", "transactions", "adjustments", "audit"):
        go(browser, page)
    go(browser, "facilities")
    shown(browser, "article.facility, .list-state .note")
    entries = browser.get_log("browser")
    messages = [e["message"] for e in entries]
    assert [m for m in messages if "Content Security Policy" in m or "Refused" in m] == []
    # Nothing but the network's own lines (the review queue's answer, say) is an error.
    assert [e for e in entries if e["level"] == "SEVERE" and e["source"] != "network"] == []


def test_parallel_calls_after_expiry_share_one_token_renewal(signed_in, browser):
    """api.js in the page, with a fake network: an access token refused with 401 is renewed
    once, however many calls meet it at once, and each call is answered after the renewal."""
    result = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import(new URL("console/api.js", location.href)).then(async ({ createClient }) => {
          const sent = [];
          const answer = (status, body) => new Response(JSON.stringify(body), { status });
          const pair = (n) => ({ access_token: "a" + n, refresh_token: "r" + n,
                                  token_type: "Bearer", expires_in: 900 });
          const fetchImpl = async (url, init) => {
            const path = new URL(url).pathname;
            const sender = init.headers.Authorization || JSON.parse(init.body || "{}");
            sent.push([path, typeof sender === "string" ? sender : sender.refresh_token]);
            if (path.endsWith("/v1/auth/login")) return answer(200, pair(1));
            if (path.endsWith("/v1/auth/refresh")) return answer(200, pair(2));
            if (init.headers.Authorization === "Bearer a1")
              return answer(401, {
                error: { code: "unauthenticated", message: "expired", request_id: "r" },
              });
            return answer(200, { ok: path });
          };
          const client = createClient({ fetchImpl });
          await client.signIn("a@example.com", "pw", "123456");
          const answers = await Promise.all([client.get("v1/me"), client.get("v1/accounts")]);
          done(JSON.stringify({ sent, answers }));
        }).catch((error) => done(JSON.stringify({ error: String(error) })));
        """
    )
    outcome = json.loads(result)
    assert "error" not in outcome, outcome
    refreshes = [s for s in outcome["sent"] if s[0].endswith("/v1/auth/refresh")]
    assert refreshes == [[refreshes[0][0], "r1"]]
    assert outcome["answers"] == [{"ok": "/v1/me"}, {"ok": "/v1/accounts"}]
    assert sorted(s[1] for s in outcome["sent"] if s[0] in ("/v1/me", "/v1/accounts")) == [
        "Bearer a1",
        "Bearer a1",
        "Bearer a2",
        "Bearer a2",
    ]


def test_an_access_token_near_its_expiry_is_renewed_before_the_call(signed_in, browser):
    result = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        import(new URL("console/api.js", location.href)).then(async ({ createClient }) => {
          let clock = 0;
          const sent = [];
          const pair = (n) => ({ access_token: "a" + n, refresh_token: "r" + n,
                                  token_type: "Bearer", expires_in: 900 });
          const fetchImpl = async (url, init) => {
            const path = new URL(url).pathname;
            sent.push(path + " " + (init.headers.Authorization || ""));
            const body =
              path.endsWith("/login") ? pair(1) : path.endsWith("/refresh") ? pair(2) : {};
            return new Response(JSON.stringify(body), { status: 200 });
          };
          const client = createClient({ fetchImpl, now: () => clock });
          await client.signIn("a@example.com", "pw", "123456");
          await client.get("v1/me");
          clock = 880_000;  // 20 s before the 900 s expiry
          await client.get("v1/me");
          done(JSON.stringify(sent));
        }).catch((error) => done(JSON.stringify([String(error)])));
        """
    )
    assert json.loads(result) == [
        "/v1/auth/login ",
        "/v1/me Bearer a1",
        "/v1/auth/refresh ",
        "/v1/me Bearer a2",
    ]


# The review queue's page, given a client that answers as API.md "Risk" states: the routes are
# served by another part of the API, so the page is tested here against the contract's shapes.
REVIEWS_AGAINST_THE_CONTRACT = """
const done = arguments[arguments.length - 1];
import(new URL("console/page-reviews.js", location.href)).then(({ render }) => {
  const review = (n, status) => ({
    id: "rev_" + n, status, user_id: "usr_" + n, operation: "transfer", amount: "500.00",
    currency: "USD", rule: { id: "big", kind: "amount_over", action: "review", amount: "100" },
    created_at: "2026-12-02T10:00:00.000000Z", transaction_id: "txn_" + n,
  });
  const calls = (window.reviewCalls = []);
  const client = {
    get: async (path, params) => {
      calls.push(["GET", path, params]);
      return params.cursor
        ? { data: [review(3, "open")], next_cursor: null }
        : { data: [review(1, "open"), review(2, "open")], next_cursor: "page2" };
    },
    post: async (path, body) => {
      calls.push(["POST", path, body]);
      return {};
    },
  };
  const main = document.createElement("main");
  main.id = "reviews-under-test";
  document.body.replaceChildren(main);
  render(main, client);
  done(true);
}).catch((error) => done(String(error)));
"""


def test_the_review_queue_against_the_contract(signed_in, browser, stack):
    try:
        assert browser.execute_async_script(REVIEWS_AGAINST_THE_CONTRACT) is True
        root = "#reviews-under-test"
        shown(browser, f'{root} article.review[data-review-id="rev_2"]')
        browser.find_element(By.CSS_SELECTOR, f"{root} button.more").click()
        shown(browser, f'{root} article.review[data-review-id="rev_3"]')
        text_in(browser, f'{root} [data-review-id="rev_1"]', "kind: amount_over")

        browser.find_element(By.CSS_SELECTOR, f'{root} [data-review-id="rev_1"] .approve').click()
        shown(browser, f'{root} article.review[data-review-id="rev_1"][data-status="approved"]')
        card = f'{root} [data-review-id="rev_2"]'
        browser.find_element(By.CSS_SELECTOR, f'{card} input[name="reason"]').send_keys("mule")
        browser.find_element(By.CSS_SELECTOR, f"{card} form.reject button").click()
        shown(browser, f'{root} article.review[data-review-id="rev_2"][data-status="rejected"]')

        calls = browser.execute_script("return window.reviewCalls")
        assert calls == [
            ["GET", "v1/admin/reviews", {"status": "open", "cursor": None}],
            ["GET", "v1/admin/reviews", {"status": "open", "cursor": "page2"}],
            ["POST", "v1/admin/reviews/rev_1/approve", {}],
            ["POST", "v1/admin/reviews/rev_2/reject", {"reason": "mule"}],
        ]
    finally:
        # The real console again; signed out, as after any reload: this test runs last.
        browser.get(console_url(stack))

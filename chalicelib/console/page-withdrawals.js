// The withdrawal queue: withdrawals by status, oldest first as the API lists them; a withdrawal
// in review is approved (the payout goes to the crypto gateway) or rejected with a reason (its
// hold is released). GET /v1/admin/withdrawals, POST .../{id}/approve | reject. A decision sends
// an Idempotency-Key, kept for a retry after a "safe to retry" answer.

import { Attempt } from "./api.js";
import { act, facts, field, form, h, outcome, pagedList, section, showDone, when } from "./dom.js";

const STATUSES = ["pending_review", "processing", "completed", "rejected", "cancelled", "failed", "expired"];

export function render(main, client) {
  const results = h("div", { className: "results" });
  const status = h(
    "select",
    { name: "status" },
    ...STATUSES.map((s) => h("option", { value: s, text: s })),
    h("option", { value: "", text: "any status" }),
  );
  const list = () =>
    results.replaceChildren(
      pagedList({
        load: (cursor) => client.get("v1/admin/withdrawals", { status: status.value, cursor }),
        render: (withdrawal) => withdrawalCard(client, withdrawal),
        empty: "No withdrawal in this state.",
      }),
    );
  status.addEventListener("change", list);
  main.append(
    section(
      "Withdrawal queue",
      form("inline", list, field("Status", status), h("button", { type: "submit", text: "Refresh" })),
      results,
    ),
  );
  list();
}

function withdrawalCard(client, withdrawal) {
  const card = h("article", { className: "card withdrawal", dataset: { withdrawalId: withdrawal.id } });
  fill(card, client, withdrawal, new Attempt());
  return card;
}

function fill(card, client, w, attempt) {
  const answer = outcome();
  card.dataset.status = w.status;
  const decided = (fresh, text) => {
    fill(card, client, fresh, new Attempt());
    showDone(card.querySelector(".outcome"), text);
  };
  const path = `v1/admin/withdrawals/${encodeURIComponent(w.id)}`;
  const decide = (button, label, verb, body, text) =>
    act(button, answer, label, async () => {
      try {
        const answered = await client.post(`${path}/${verb}`, body, attempt.keyFor({ verb, ...body }));
        attempt.settle(null);
        decided(answered.withdrawal, text);
      } catch (error) {
        attempt.settle(error);
        throw error;
      }
    });
  const actions = [];
  if (w.status === "pending_review") {
    const approve = h("button", { type: "button", className: "primary approve", text: "Approve" });
    approve.addEventListener("click", () =>
      decide(approve, "Approving…", "approve", {}, "Approved: the payout is on its way."),
    );
    const reason = h("input", { name: "reason", required: true, maxlength: "500" });
    const reject = h("button", { type: "submit", className: "danger", text: "Reject" });
    actions.push(
      h("div", { className: "actions" }, approve),
      form(
        "inline reject",
        () => decide(reject, "Rejecting…", "reject", { reason: reason.value.trim() }, "Rejected: the hold is released."),
        field("Reason for rejecting", reason),
        reject,
      ),
    );
  }
  card.replaceChildren(
    h("h3", { text: `${w.amount} ${w.currency}` }),
    facts([
      ["id", w.id],
      ["status", w.status],
      ["user", w.user_id],
      ["destination", w.destination],
      ["transaction", w.transaction_id],
      ["requested", when(w.created_at)],
      ["decided", w.decided_at ? when(w.decided_at) : null],
      ["reason", w.reason],
    ]),
    ...actions,
    answer,
  );
}

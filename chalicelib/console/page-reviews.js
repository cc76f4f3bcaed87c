// The risk review queue (API.md, "Risk"): operations a rule sent to review, their money held.
// Approving posts the held transaction; rejecting (with a reason) voids it and releases the hold.
// GET /v1/admin/reviews, POST /v1/admin/reviews/{id}/approve | reject.

import { act, facts, field, form, h, outcome, pagedList, section, showDone, when } from "./dom.js";

const STATUSES = ["open", "approved", "rejected", "expired"];

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
        load: (cursor) => client.get("v1/admin/reviews", { status: status.value, cursor }),
        render: (review) => reviewCard(client, review),
        empty: "No review in this state.",
      }),
    );
  status.addEventListener("change", list);
  main.append(
    section(
      "Risk reviews",
      form("inline", list, field("Status", status), h("button", { type: "submit", text: "Refresh" })),
      results,
    ),
  );
  list();
}

function ruleText(rule) {
  if (rule === null || rule === undefined) return null;
  if (typeof rule !== "object") return String(rule);
  return Object.entries(rule)
    .map(([name, value]) => `${name}: ${value}`)
    .join(", ");
}

function reviewCard(client, review) {
  const card = h("article", { className: "card review", dataset: { reviewId: review.id } });
  fill(card, client, review);
  return card;
}

function fill(card, client, review) {
  const answer = outcome();
  card.dataset.status = review.status;
  const path = `v1/admin/reviews/${encodeURIComponent(review.id)}`;
  const decide = (button, label, verb, body, status, text) =>
    act(button, answer, label, async () => {
      const answered = await client.post(`${path}/${verb}`, body);
      fill(card, client, answered.review || { ...review, status });
      showDone(card.querySelector(".outcome"), text);
    });
  const actions = [];
  if (review.status === "open") {
    const approve = h("button", { type: "button", className: "primary approve", text: "Approve" });
    approve.addEventListener("click", () =>
      decide(approve, "Approving…", "approve", {}, "approved", "Approved: the held money moved."),
    );
    const reason = h("input", { name: "reason", required: true, maxlength: "500" });
    const reject = h("button", { type: "submit", className: "danger", text: "Reject" });
    actions.push(
      h("div", { className: "actions" }, approve),
      form(
        "inline reject",
        () =>
          decide(reject, "Rejecting…", "reject", { reason: reason.value.trim() }, "rejected", "Rejected: the hold is released."),
        field("Reason for rejecting", reason),
        reject,
      ),
    );
  }
  card.replaceChildren(
    h("h3", { text: `${review.operation}: ${review.amount} ${review.currency}` }),
    facts([
      ["id", review.id],
      ["status", review.status],
      ["user", review.user_id],
      ["rule", ruleText(review.rule)],
      ["transaction", review.transaction_id],
      ["opened", when(review.created_at)],
    ]),
    ...actions,
    answer,
  );
}

// Adjustments: a signed amount into or out of an account against the platform's adjustment
// account (POST /v1/admin/adjustments, with an Idempotency-Key). Below the four-eyes threshold
// it posts at once (201, the transaction); at or above it waits as pending_approval (202) until a
// second admin approves it by id (POST /v1/admin/adjustments/{id}/approve).

import { Attempt } from "./api.js";
import { act, facts, field, form, h, outcome, section, showDone, when } from "./dom.js";
import { transactionView } from "./ledger-view.js";

export function render(main, client) {
  main.append(createSection(client), approveSection(client));
}

function adjustmentView(adjustment) {
  return h(
    "div",
    { className: "adjustment", dataset: { adjustmentId: adjustment.id, status: adjustment.status } },
    h("h3", { text: `Adjustment ${adjustment.amount} ${adjustment.currency}` }),
    facts([
      ["id", adjustment.id],
      ["status", adjustment.status],
      ["account", adjustment.account_id],
      ["reason", adjustment.reason],
      ["requested by", adjustment.requested_by],
      ["requested", when(adjustment.requested_at)],
      ["approved by", adjustment.approved_by],
      ["transaction", adjustment.transaction_id],
    ]),
  );
}

function createSection(client) {
  const account = h("input", { name: "account_id", required: true, maxlength: "128" });
  const amount = h("input", {
    name: "amount",
    required: true,
    pattern: "-?[0-9]+(\\.[0-9]+)?",
    inputmode: "decimal",
    placeholder: "-12.50",
  });
  const reason = h("input", { name: "reason", required: true, maxlength: "500" });
  const submit = h("button", { type: "submit", className: "primary", text: "Create adjustment" });
  const answer = outcome();
  const attempt = new Attempt();
  return section(
    "New adjustment",
    h("p", {
      className: "note",
      text: "A negative amount takes money out of the account. Amounts at or above the four-eyes threshold wait for a second admin.",
    }),
    form(
      "stacked create-adjustment",
      () =>
        act(submit, answer, "Creating…", async () => {
          const body = { account_id: account.value.trim(), amount: amount.value.trim(), reason: reason.value.trim() };
          try {
            const made = await client.post("v1/admin/adjustments", body, attempt.keyFor(body));
            attempt.settle(null);
            if (made.adjustment) {
              showDone(answer, `Waiting for a second admin: adjustment ${made.adjustment.id} is ${made.adjustment.status}.`);
              answer.append(adjustmentView(made.adjustment));
            } else {
              showDone(answer, `Posted: transaction ${made.transaction.id}.`);
              answer.append(transactionView(made.transaction));
            }
          } catch (error) {
            attempt.settle(error);
            throw error;
          }
        }),
      field("Account id", account),
      field("Amount", amount, "signed decimal in the account's currency"),
      field("Reason", reason),
      submit,
    ),
    answer,
  );
}

function approveSection(client) {
  const id = h("input", { name: "adjustment_id", required: true });
  const submit = h("button", { type: "submit", className: "primary", text: "Approve" });
  const answer = outcome();
  return section(
    "Approve an adjustment",
    h("p", {
      className: "note",
      text: "An adjustment waiting for approval is approved by an admin other than the one who asked for it.",
    }),
    form(
      "inline approve-adjustment",
      () =>
        act(submit, answer, "Approving…", async () => {
          const made = await client.post(`v1/admin/adjustments/${encodeURIComponent(id.value.trim())}/approve`);
          showDone(answer, `Approved and posted: transaction ${made.transaction.id}.`);
          answer.append(transactionView(made.transaction));
        }),
      field("Adjustment id", id),
      submit,
    ),
    answer,
  );
}

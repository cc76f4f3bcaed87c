// Transaction lookup and rollback. GET /v1/admin/transactions/{id}; a posted transaction can be
// rolled back (POST .../rollback: reason, force?) after a confirmation that names the amount.
// The Idempotency-Key is made when the confirmation opens: a retry of that confirmation after a
// "safe to retry" answer sends it again, a new confirmation gets a new one.

import { Attempt } from "./api.js";
import { act, errorBox, field, form, h, outcome, section, showDone, showProgress } from "./dom.js";
import { movedAmount, transactionView } from "./ledger-view.js";

export function render(main, client) {
  const id = h("input", { name: "transaction_id", required: true, placeholder: "transaction id" });
  const shown = h("div", { className: "results" });
  const lookup = async (transactionId) => {
    id.value = transactionId;
    showProgress(shown, "Looking up…");
    try {
      const body = await client.get(`v1/admin/transactions/${encodeURIComponent(transactionId)}`);
      shown.replaceChildren(detail(client, body.transaction, lookup));
    } catch (error) {
      shown.replaceChildren(errorBox(error));
    }
  };
  main.append(
    section(
      "Transaction lookup",
      form(
        "inline lookup",
        () => lookup(id.value.trim()),
        field("Transaction id", id),
        h("button", { type: "submit", className: "primary", text: "Look up" }),
      ),
      shown,
    ),
  );
}

function reversible(transaction) {
  return transaction.status === "posted" && !transaction.reversed_by && transaction.type !== "reversal";
}

function detail(client, transaction, lookup) {
  return h(
    "article",
    { className: "card" },
    transactionView(transaction, { onOpen: lookup }),
    reversible(transaction) ? rollbackForm(client, transaction, lookup) : null,
  );
}

function rollbackForm(client, transaction, lookup) {
  const reason = h("input", { name: "reason", required: true, maxlength: "500" });
  const force = h("input", { name: "force", type: "checkbox" });
  const start = h("button", { type: "submit", className: "danger", text: "Roll back…" });
  const confirmation = h("div", { className: "confirmation" });
  const answer = outcome();
  const attempt = new Attempt();
  const amount = movedAmount(transaction);

  const ask = () => {
    const body = { reason: reason.value.trim(), force: force.checked };
    const key = attempt.keyFor(body);
    const confirm = h("button", {
      type: "button",
      className: "danger confirm-rollback",
      text: `Confirm: roll back ${amount}`,
    });
    const cancel = h("button", { type: "button", text: "Cancel" });
    cancel.addEventListener("click", () => {
      attempt.settle(null);
      confirmation.replaceChildren();
      start.disabled = false;
    });
    confirm.addEventListener("click", () =>
      act(confirm, answer, "Rolling back…", async () => {
        try {
          const made = await client.post(
            `v1/admin/transactions/${encodeURIComponent(transaction.id)}/rollback`,
            body,
            key,
          );
          attempt.settle(null);
          confirmation.replaceChildren();
          showDone(answer, `Rolled back: reversal ${made.transaction.id} moved ${movedAmount(made.transaction)} back.`);
          answer.append(transactionView(made.transaction, { onOpen: lookup }));
        } catch (error) {
          attempt.settle(error);
          if (!error.retryable) {
            confirmation.replaceChildren();
            start.disabled = false;
          }
          throw error;
        }
      }),
    );
    start.disabled = true;
    confirmation.replaceChildren(
      h("p", {
        className: "warning",
        text:
          `Roll back ${transaction.type} ${transaction.id}: a reversal moves ${amount} back to where it came from` +
          (body.force ? ", even if an account goes negative (flagged)." : ".") +
          ` Reason: “${body.reason}”.`,
      }),
      h("p", { className: "meta", text: `Idempotency-Key ${key}` }),
      h("div", { className: "actions" }, confirm, cancel),
    );
  };

  return h(
    "div",
    { className: "rollback" },
    h("h3", { text: "Roll back" }),
    form(
      "inline",
      ask,
      field("Reason", reason),
      field("Force", force, "let an account go negative if it must (flagged)"),
      start,
    ),
    confirmation,
    answer,
  );
}

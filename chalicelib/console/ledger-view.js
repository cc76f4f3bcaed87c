// How a transaction is shown, wherever it appears (lookup, rollback, adjustment).

import { facts, h, when } from "./dom.js";

// What a transaction moves, per currency: the sum of its positive postings ("10.00 USDT").
export function movedAmount(transaction) {
  const totals = new Map();
  for (const posting of transaction.postings) {
    if (posting.amount.startsWith("-")) continue;
    const [whole, fraction = ""] = posting.amount.split(".");
    const current = totals.get(posting.currency) || { units: 0n, decimals: fraction.length };
    const decimals = Math.max(current.decimals, fraction.length);
    const scale = (value, from) => value * 10n ** BigInt(decimals - from);
    const units =
      scale(current.units, current.decimals) +
      scale(BigInt(whole + fraction), fraction.length);
    totals.set(posting.currency, { units, decimals });
  }
  return [...totals.entries()]
    .map(([currency, { units, decimals }]) => `${formatUnits(units, decimals)} ${currency}`)
    .join(" + ");
}

function formatUnits(units, decimals) {
  const text = units.toString().padStart(decimals + 1, "0");
  if (decimals === 0) return text;
  return `${text.slice(0, -decimals)}.${text.slice(-decimals)}`;
}

export function transactionView(transaction, { onOpen } = {}) {
  const link = (id) => {
    if (!id) return null;
    if (!onOpen) return id;
    return h("button", { type: "button", className: "link", text: id, on: { click: () => onOpen(id) } });
  };
  const postings = h(
    "table",
    { className: "postings" },
    h("thead", {}, h("tr", {}, h("th", { text: "account" }), h("th", { text: "amount" }))),
    h(
      "tbody",
      {},
      transaction.postings.map((p) =>
        h(
          "tr",
          {},
          h("td", { text: p.account_id }),
          h("td", { className: p.amount.startsWith("-") ? "num out" : "num in", text: `${p.amount} ${p.currency}` }),
        ),
      ),
    ),
  );
  const linked = h(
    "dl",
    { className: "facts" },
    h("dt", { text: "reverses" }),
    h("dd", {}, link(transaction.reverses) || "—"),
    h("dt", { text: "reversed by" }),
    h("dd", {}, link(transaction.reversed_by) || "—"),
  );
  const metadata = Object.entries(transaction.metadata || {});
  return h(
    "div",
    { className: "transaction", dataset: { transactionId: transaction.id } },
    h("h3", { text: `${transaction.type} · ${movedAmount(transaction)}` }),
    facts([
      ["id", transaction.id],
      ["type", transaction.type],
      ["status", transaction.status],
      ["created", when(transaction.created_at)],
      ["resolved", transaction.resolved_at ? when(transaction.resolved_at) : null],
      ["memo", transaction.memo || null],
      ["forced", transaction.forced ? "yes: an account went negative" : undefined],
    ]),
    linked,
    postings,
    metadata.length ? facts(metadata) : null,
  );
}

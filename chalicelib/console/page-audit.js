// The audit log: events by time range, actor and action (GET /v1/admin/audit), and whether the
// daily digest chain still verifies over a range of days (GET /v1/admin/audit/chain).

import { act, facts, field, form, h, outcome, pagedList, section, showDone, when } from "./dom.js";

// A datetime-local value (the operator's own clock) as an ISO-8601 UTC instant.
function instant(value) {
  return value ? new Date(value).toISOString() : "";
}

function describe(value) {
  return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
}

function eventCard(event) {
  return h(
    "article",
    { className: "card audit-event", dataset: { action: event.action } },
    h("h3", { text: `${event.action}` }),
    facts([
      ["at", when(event.at)],
      ["actor", event.actor_id],
      ["target", event.target],
      ["ip", event.ip],
      ["id", event.id],
      ...Object.entries(event.details || {}).map(([name, value]) => [name, describe(value)]),
    ]),
  );
}

export function render(main, client) {
  main.append(chainSection(client), eventsSection(client));
}

function eventsSection(client) {
  const from = h("input", { name: "from", type: "datetime-local", step: "1" });
  const to = h("input", { name: "to", type: "datetime-local", step: "1" });
  const actor = h("input", { name: "actor_id", placeholder: "user id" });
  const action = h("input", { name: "action", placeholder: "e.g. user.suspended" });
  const results = h("div", { className: "results" });
  const search = () => {
    const filters = {
      from: instant(from.value),
      to: instant(to.value),
      actor_id: actor.value.trim(),
      action: action.value.trim(),
    };
    results.replaceChildren(
      pagedList({
        load: (cursor) => client.get("v1/admin/audit", { ...filters, cursor }),
        render: eventCard,
        empty: "No event matches.",
      }),
    );
  };
  search();
  return section(
    "Audit events",
    h("p", { className: "note", text: "Oldest first. Without a range: the last 24 hours." }),
    form(
      "filters audit-filters",
      search,
      field("From", from),
      field("To", to),
      field("Actor id", actor),
      field("Action", action),
      h("button", { type: "submit", className: "primary", text: "Search" }),
    ),
    results,
  );
}

function chainSection(client) {
  const from = h("input", { name: "chain_from", type: "date" });
  const to = h("input", { name: "chain_to", type: "date" });
  const verify = h("button", { type: "submit", className: "primary", text: "Verify the chain" });
  const answer = outcome();
  return section(
    "Audit chain",
    h("p", {
      className: "note",
      text: "Each past UTC day of audit events is sealed into a digest chain. Verifying recomputes it and names the first day that no longer matches. Without dates: the 31 days up to yesterday.",
    }),
    form(
      "inline verify-chain",
      () =>
        act(verify, answer, "Verifying the chain (a few round trips per day)…", async () => {
          const { verification: v } = await client.get("v1/admin/audit/chain", { from: from.value, to: to.value });
          const verdict = v.ok
            ? `The chain verifies: ${v.days_checked} days from ${v.first_day} to ${v.last_day}.`
            : `The chain is broken at ${v.broken_day}: ${v.problem}`;
          showDone(answer, verdict);
          answer.firstChild.classList.add(v.ok ? "ok" : "broken");
          answer.append(
            facts([
              ["verifies", v.ok ? "yes" : "no"],
              ["first day", v.first_day],
              ["last day", v.last_day],
              ["days checked", v.days_checked],
              ["broken day", v.broken_day],
              ["problem", v.problem],
              ["not sealed yet from", v.unsealed_from],
            ]),
          );
        }),
      field("From", from),
      field("To", to),
      verify,
    ),
    answer,
  );
}

// Facilities and their API keys: create a facility (POST /v1/admin/facilities); list them
// (GET /v1/facilities); a facility's keys (GET /v1/admin/facilities/{id}/api-keys); issue a key
// (POST ...: its secret is in that answer only, shown once here and kept nowhere); revoke one
// (POST .../{key_id}/revoke, after a confirmation).

import { act, facts, field, form, h, outcome, pagedList, section, showDone, when } from "./dom.js";

const SCOPES = ["read", "payment_requests", "payouts", "webhooks"];

export function render(main, client) {
  const results = h("div", { className: "results" });
  const list = () =>
    results.replaceChildren(
      pagedList({
        load: (cursor) => client.get("v1/facilities", { cursor }),
        render: (facility) => facilityCard(client, facility),
        empty: "No facility yet.",
      }),
    );
  main.append(createSection(client, list), section("Facilities", results));
  list();
}

function createSection(client, relist) {
  const name = h("input", { name: "facility_name", required: true, maxlength: "200" });
  const submit = h("button", { type: "submit", className: "primary", text: "Create facility" });
  const answer = outcome();
  return section(
    "New facility",
    form(
      "inline create-facility",
      () =>
        act(submit, answer, "Creating…", async () => {
          const made = await client.post("v1/admin/facilities", { name: name.value.trim() });
          showDone(answer, `Created ${made.facility.name} (${made.facility.id}), with one account per currency.`);
          name.value = "";
          relist();
        }),
      field("Name", name),
      submit,
    ),
    answer,
  );
}

function facilityCard(client, facility) {
  const keys = h("div", { className: "keys" });
  const show = h("button", { type: "button", className: "show-keys", text: "API keys" });
  show.addEventListener("click", () => {
    show.hidden = true;
    keys.replaceChildren(keysPanel(client, facility));
  });
  return h(
    "article",
    { className: "card facility", dataset: { facilityId: facility.id } },
    h("h3", { text: facility.name }),
    facts([["id", facility.id]]),
    h("div", { className: "actions" }, show),
    keys,
  );
}

function keysPanel(client, facility) {
  const base = `v1/admin/facilities/${encodeURIComponent(facility.id)}/api-keys`;
  const listBox = h("div", { className: "key-list" });
  const list = () =>
    listBox.replaceChildren(
      pagedList({
        load: () => client.get(base),
        render: (key) => keyRow(client, base, key),
        empty: "No API key yet.",
      }),
    );
  list();
  return h("div", { className: "keys-panel" }, newKeyForm(client, base, list), listBox);
}

function newKeyForm(client, base, relist) {
  const name = h("input", { name: "key_name", required: true, maxlength: "100" });
  const scopes = SCOPES.map((scope) => h("input", { type: "checkbox", name: "scope", value: scope, checked: true }));
  const limit = h("input", { name: "rate_limit_per_minute", type: "number", min: "1", placeholder: "default" });
  const submit = h("button", { type: "submit", className: "primary", text: "Create API key" });
  const answer = outcome();
  return h(
    "div",
    { className: "new-key" },
    form(
      "inline create-key",
      () =>
        act(submit, answer, "Creating the key…", async () => {
          const body = { name: name.value.trim(), scopes: scopes.filter((s) => s.checked).map((s) => s.value) };
          if (limit.value) body.rate_limit_per_minute = Number(limit.value);
          const made = await client.post(base, body);
          name.value = "";
          showDone(answer, `Created key ${made.api_key.name} (${made.api_key.prefix}). Its secret is shown this once: copy it now, it cannot be read again.`);
          const secret = h("input", { className: "secret", readonly: true, value: made.secret, "aria-label": "API key secret" });
          secret.addEventListener("focus", () => secret.select());
          const hide = h("button", { type: "button", text: "I have copied it: hide" });
          hide.addEventListener("click", () => answer.replaceChildren());
          answer.append(h("div", { className: "secret-box" }, secret, hide));
          relist();
        }),
      field("Key name", name),
      h(
        "fieldset",
        { className: "scopes" },
        h("legend", { text: "Scopes" }),
        scopes.map((box) => h("label", { className: "check" }, box, box.value)),
      ),
      field("Requests per minute", limit),
      submit,
    ),
    answer,
  );
}

function keyRow(client, base, key) {
  const row = h("div", { className: "key", dataset: { keyId: key.id, status: key.status } });
  const answer = outcome();
  const actions = h("div", { className: "actions" });
  if (key.status === "active") {
    const revoke = h("button", { type: "button", className: "danger", text: "Revoke" });
    revoke.addEventListener("click", () => {
      revoke.hidden = true;
      const confirm = h("button", { type: "button", className: "danger confirm-revoke", text: `Confirm: revoke ${key.prefix}` });
      const cancel = h("button", { type: "button", text: "Cancel" });
      cancel.addEventListener("click", () => {
        actions.replaceChildren(revoke);
        revoke.hidden = false;
      });
      confirm.addEventListener("click", () =>
        act(confirm, answer, "Revoking…", async () => {
          const done = await client.post(`${base}/${encodeURIComponent(key.id)}/revoke`);
          row.replaceWith(keyRow(client, base, done.api_key));
        }),
      );
      actions.replaceChildren(
        h("span", { className: "warning", text: "The key stops working at once." }),
        confirm,
        cancel,
      );
    });
    actions.append(revoke);
  }
  row.append(
    h("h4", { text: `${key.name} · ${key.prefix}` }),
    facts([
      ["status", key.status],
      ["scopes", key.scopes.join(", ")],
      ["requests per minute", key.rate_limit_per_minute],
      ["created", when(key.created_at)],
      ["last used", when(key.last_used_at)],
      ["revoked", key.revoked_at ? when(key.revoked_at) : null],
    ]),
    actions,
    answer,
  );
  return row;
}

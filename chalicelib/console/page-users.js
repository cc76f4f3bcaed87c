// Users: find by email; suspend (with a reason) or unsuspend; change the role.
// GET /v1/admin/users, POST /v1/admin/users/{id}/suspend | unsuspend | role.

import { act, facts, field, form, h, outcome, pagedList, section, showDone, when } from "./dom.js";

export function render(main, client) {
  const results = h("div", { className: "results" });
  const email = h("input", { name: "email", type: "search", placeholder: "the start of an email, or all of it" });
  const search = () =>
    results.replaceChildren(
      pagedList({
        load: (cursor) => client.get("v1/admin/users", { email: email.value.trim(), cursor }),
        render: (user) => userCard(client, user),
        empty: "No user matches.",
      }),
    );
  main.append(
    section(
      "Users",
      form(
        "inline search-users",
        search,
        field("Email", email),
        h("button", { type: "submit", className: "primary", text: "Search" }),
      ),
      results,
    ),
  );
  search();
}

function userCard(client, user) {
  const card = h("article", { className: "card user", dataset: { userId: user.id } });
  fill(card, client, user);
  return card;
}

function fill(card, client, user) {
  const answer = outcome();
  const replace = (fresh) => {
    fill(card, client, fresh);
    showDone(card.querySelector(".outcome"), `Saved: ${fresh.email} is ${fresh.status}, role ${fresh.role}.`);
  };
  card.dataset.status = user.status;
  card.replaceChildren(
    h("h3", { text: user.email }),
    facts([
      ["id", user.id],
      ["status", user.status],
      ["role", user.role],
      ["MFA", user.mfa_enabled ? "on" : "off"],
      ["email verified", user.email_verified ? "yes" : "no"],
      ["created", when(user.created_at)],
      ...(user.status === "suspended"
        ? [
            ["suspended", when(user.suspended_at)],
            ["suspended by", user.suspended_by],
            ["reason", user.suspension_reason],
          ]
        : []),
    ]),
    user.status === "active" ? suspendForm(client, user, answer, replace) : unsuspendButton(client, user, answer, replace),
    roleForm(client, user, answer, replace),
    answer,
  );
}

function suspendForm(client, user, answer, replace) {
  const reason = h("input", { name: "reason", required: true, maxlength: "500" });
  const button = h("button", { type: "submit", className: "danger", text: "Suspend" });
  return form(
    "inline suspend",
    () =>
      act(button, answer, "Suspending…", async () => {
        const body = await client.post(`v1/admin/users/${encodeURIComponent(user.id)}/suspend`, {
          reason: reason.value.trim(),
        });
        replace(body.user);
      }),
    field("Reason for suspending", reason),
    button,
  );
}

function unsuspendButton(client, user, answer, replace) {
  const button = h("button", { type: "button", className: "unsuspend", text: "Unsuspend" });
  button.addEventListener("click", () =>
    act(button, answer, "Unsuspending…", async () => {
      const body = await client.post(`v1/admin/users/${encodeURIComponent(user.id)}/unsuspend`);
      replace(body.user);
    }),
  );
  return h("div", { className: "actions" }, button);
}

function roleForm(client, user, answer, replace) {
  const role = h(
    "select",
    { name: "role" },
    h("option", { value: "user", text: "user", selected: user.role === "user" }),
    h("option", { value: "admin", text: "admin", selected: user.role === "admin" }),
  );
  const button = h("button", { type: "submit", text: "Set role" });
  return form(
    "inline role",
    () =>
      act(button, answer, "Changing the role…", async () => {
        const body = await client.post(`v1/admin/users/${encodeURIComponent(user.id)}/role`, {
          role: role.value,
        });
        replace(body.user);
      }),
    field("Role", role),
    button,
  );
}

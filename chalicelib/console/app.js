// The console's entry point: sign-in, the navigation between pages (the address's #fragment),
// and sign-out. Each page is a module whose render(main, client) builds it from API calls.

import { createClient } from "./api.js";
import { act, field, form, h, section, showError } from "./dom.js";
import * as adjustments from "./page-adjustments.js";
import * as audit from "./page-audit.js";
import * as facilities from "./page-facilities.js";
import * as reconciliation from "./page-reconciliation.js";
import * as reviews from "./page-reviews.js";
import * as transactions from "./page-transactions.js";
import * as users from "./page-users.js";
import * as withdrawals from "./page-withdrawals.js";

const PAGES = {
  users,
  withdrawals,
  reviews,
  transactions,
  adjustments,
  reconciliation,
  audit,
  facilities,
};
const FIRST_PAGE = "users";

const client = createClient();
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOutButton = document.getElementById("sign-out");
let operator = null;

function pageName() {
  const name = location.hash.replace(/^#/, "");
  return Object.hasOwn(PAGES, name) ? name : FIRST_PAGE;
}

function show() {
  if (!client.signedIn) {
    showSignIn();
    return;
  }
  const name = pageName();
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  main.dataset.page = name;
  PAGES[name].render(main, client);
}

function showSignIn(reason) {
  operator = null;
  nav.hidden = true;
  signOutButton.hidden = true;
  who.textContent = "";
  main.dataset.page = "sign-in";
  const answer = h("div", { className: "outcome", role: "status" });
  if (reason) showError(answer, reason);
  const email = h("input", { name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const code = h("input", {
    name: "totp_code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    minlength: "6",
    maxlength: "64",
    required: true,
  });
  const submit = h("button", { type: "submit", className: "primary", text: "Sign in" });
  const signIn = form(
    "sign-in",
    () =>
      act(submit, answer, "Signing in…", async () => {
        await client.signIn(email.value.trim(), password.value, code.value.trim());
        password.value = "";
        code.value = "";
        const me = await client.get("v1/me");
        if (me.user.role !== "admin") {
          await client.signOut();
          throw new Error("This account is not an operator (role admin): the console is for admins.");
        }
        operator = me.user;
        enterConsole();
      }),
    field("Email", email),
    field("Password", password),
    field("Authenticator code", code, "The 6-digit code of your authenticator app (or a recovery code)."),
    submit,
  );
  main.replaceChildren(
    section(
      "Sign in",
      h("p", {
        className: "note",
        text: "Operators sign in with their password and a code from their authenticator: every admin action needs a login that passed MFA.",
      }),
      signIn,
      answer,
    ),
  );
  email.focus();
}

function enterConsole() {
  nav.hidden = false;
  signOutButton.hidden = false;
  who.textContent = operator.email;
  show();
}

signOutButton.addEventListener("click", async () => {
  signOutButton.disabled = true;
  try {
    await client.signOut();
  } catch {
    // Signed out here whatever the API answered: the tokens are gone from memory.
  } finally {
    signOutButton.disabled = false;
    showSignIn();
  }
});

client.onSignedOut((reason) => showSignIn(reason));
window.addEventListener("hashchange", show);
show();

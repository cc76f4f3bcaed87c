// Building the page. Everything shown goes in as text (textContent, text nodes, attributes set
// one by one): no HTML is ever parsed from data, and nothing here writes a style attribute,
// which the console's Content-Security-Policy would refuse anyway.

import { ApiError } from "./api.js";

// h("button", {className: "primary", type: "submit", on: {click: f}}, "Save")
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") element.className = value;
    else if (name === "text") element.textContent = String(value);
    else if (name === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && typeof value !== "string") element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function section(title, ...children) {
  return h("section", { className: "panel" }, h("h2", { text: title }), ...children);
}

// A labelled input: field("Email", h("input", {...})).
export function field(label, control, hint) {
  return h(
    "label",
    { className: "field" },
    h("span", { className: "label", text: label }),
    control,
    hint ? h("span", { className: "hint", text: hint }) : null,
  );
}

// Name/value pairs of one record, as a definition list.
export function facts(pairs) {
  const list = h("dl", { className: "facts" });
  for (const [name, value] of pairs) {
    if (value === undefined) continue;
    list.append(h("dt", { text: name }), h("dd", { text: value === null ? "—" : String(value) }));
  }
  return list;
}

// Where an action's answer appears: its error (the API's message and request id), its
// progress, or what it did.
export function outcome() {
  return h("div", { className: "outcome", role: "status", "aria-live": "polite" });
}

export function showError(target, error) {
  target.replaceChildren(errorBox(error));
}

export function errorBox(error) {
  const box = h("div", { className: "error", role: "alert" });
  if (error instanceof ApiError) {
    box.append(h("p", { className: "message", text: error.message }));
    const meta = [`${error.status || "no answer"} ${error.code}`];
    if (error.requestId) meta.push(`request id ${error.requestId}`);
    box.append(h("p", { className: "meta", text: meta.join(" · ") }));
    for (const detail of error.details) {
      box.append(h("p", { className: "meta", text: `${detail.field}: ${detail.message}` }));
    }
  } else {
    box.append(h("p", { className: "message", text: String(error && error.message) }));
  }
  return box;
}

export function showDone(target, text) {
  target.replaceChildren(h("p", { className: "done", text }));
}

export function showProgress(target, text, value, max) {
  const bar = h("progress", max === undefined ? {} : { max: String(max), value: String(value) });
  target.replaceChildren(h("div", { className: "progress" }, bar, h("span", { text })));
}

// Run an action from a button: the button is disabled and the target shows progress until the
// answer is in; an error is shown with the API's message and request id.
export async function act(button, target, label, action) {
  button.disabled = true;
  showProgress(target, label);
  try {
    return await action();
  } catch (error) {
    showError(target, error);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

// A list the API pages with cursors: the first page at once, each next one on "More".
// load(cursor) answers {data, next_cursor}; render(item) answers the item's element.
export function pagedList({ load, render, empty = "Nothing here." }) {
  const items = h("div", { className: "items" });
  const state = h("div", { className: "list-state" });
  const more = h("button", { type: "button", className: "more", text: "More", hidden: true });
  let cursor = null;
  let shown = 0;

  async function next() {
    more.disabled = true;
    showProgress(state, "Loading…");
    try {
      const page = await load(cursor);
      for (const item of page.data) items.append(render(item));
      shown += page.data.length;
      cursor = page.next_cursor || null;
      more.hidden = cursor === null;
      state.replaceChildren(shown === 0 ? h("p", { className: "note", text: empty }) : "");
    } catch (error) {
      showError(state, error);
    } finally {
      more.disabled = false;
    }
  }

  more.addEventListener("click", next);
  next();
  return h("div", { className: "paged" }, items, state, more);
}

// A form whose submit runs `onSubmit(form)`; the browser's own checks (required, pattern) run
// first. Nothing is ever submitted to a URL (the CSP has form-action 'none').
export function form(className, onSubmit, ...children) {
  const element = h("form", { className }, ...children);
  element.addEventListener("submit", (event) => {
    event.preventDefault();
    onSubmit(element);
  });
  return element;
}

export function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—";
}

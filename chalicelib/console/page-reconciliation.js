// Reconciliation reports: start a run of a day (POST /v1/admin/reconciliations; a run that does
// not finish within the request answers 202 and is polled), the chart of the last 30 days (one
// GET /v1/admin/reconciliations/{date} per day; 404 = no run that day), and a day's report with
// its mismatches.

import { ApiError } from "./api.js";
import { act, errorBox, facts, field, form, h, outcome, section, showDone, showProgress } from "./dom.js";
import { mismatches, reconciliationChart } from "./chart.js";

const DAYS = 30;
const PARALLEL = 5;
const POLL_MS = 2000;

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function lastDays(count) {
  const today = new Date();
  const days = [];
  for (let back = count - 1; back >= 0; back -= 1) {
    days.push(isoDay(new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - back))));
  }
  return days;
}

async function reportOf(client, day) {
  try {
    return (await client.get(`v1/admin/reconciliations/${day}`)).report;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function render(main, client) {
  const chartBox = h("div", { className: "chart-box" });
  const reportBox = h("div", { className: "report-box" });
  const open = async (day) => {
    showProgress(reportBox, `Loading the report of ${day}…`);
    try {
      const report = await reportOf(client, day);
      reportBox.replaceChildren(report ? reportView(report) : h("p", { className: "note", text: `No reconciliation of ${day} has run.` }));
    } catch (error) {
      reportBox.replaceChildren(errorBox(error));
    }
  };
  const drawChart = async () => {
    const days = lastDays(DAYS);
    const found = new Array(days.length).fill(null);
    let done = 0;
    showProgress(chartBox, `Loading reports: 0 of ${DAYS} days`, 0, DAYS);
    try {
      for (let start = 0; start < days.length; start += PARALLEL) {
        const batch = days.slice(start, start + PARALLEL);
        const reports = await Promise.all(batch.map((day) => reportOf(client, day)));
        reports.forEach((report, offset) => {
          found[start + offset] = report;
        });
        done += batch.length;
        showProgress(chartBox, `Loading reports: ${done} of ${DAYS} days`, done, DAYS);
      }
    } catch (error) {
      chartBox.replaceChildren(errorBox(error));
      return;
    }
    const series = days.map((date, index) => ({ date, report: found[index] }));
    const ran = series.filter((d) => d.report && d.report.status !== "running");
    chartBox.replaceChildren(
      reconciliationChart(series, open),
      h(
        "p",
        { className: "legend" },
        h("span", { className: "swatch checked" }),
        " transactions checked ",
        h("span", { className: "swatch mismatches" }),
        " mismatches · ",
        `${ran.length} of ${DAYS} days reconciled, ${ran.reduce((n, d) => n + mismatches(d.report), 0)} mismatches. Pick a day to open its report.`,
      ),
    );
  };

  const yesterday = isoDay(new Date(Date.now() - 86_400_000));
  const runDay = h("input", { name: "date", type: "date", value: yesterday, max: isoDay(new Date()), required: true });
  const run = h("button", { type: "submit", className: "primary", text: "Run reconciliation" });
  const runAnswer = outcome();
  const runForm = form(
    "inline run-reconciliation",
    () =>
      act(run, runAnswer, `Starting the reconciliation of ${runDay.value}…`, async () => {
        const day = runDay.value;
        let report = (await client.post("v1/admin/reconciliations", { date: day })).report;
        const started = Date.now();
        while (report.status === "running") {
          showProgress(runAnswer, `Reconciling ${day}: running for ${Math.round((Date.now() - started) / 1000)} s…`);
          await wait(POLL_MS);
          report = await reportOf(client, day);
          if (report === null) throw new Error(`The run of ${day} disappeared.`);
        }
        showDone(runAnswer, `Reconciled ${day}: ${report.status}, ${report.transactions_checked} transactions checked, ${mismatches(report)} mismatches.`);
        reportBox.replaceChildren(reportView(report));
        await drawChart();
      }),
    field("Day", runDay),
    run,
  );

  const openDay = h("input", { name: "open_date", type: "date", required: true });
  const openForm = form(
    "inline open-report",
    () => open(openDay.value),
    field("Day", openDay),
    h("button", { type: "submit", text: "Open report" }),
  );

  main.append(
    section("Run a reconciliation", runForm, runAnswer),
    section(`Last ${DAYS} days`, chartBox, openForm, reportBox),
  );
  drawChart();
}

function describe(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "object") return String(value);
  return JSON.stringify(value);
}

function reportView(report) {
  const list = h("ul", { className: "mismatches" });
  for (const mismatch of report.mismatches || []) {
    list.append(
      h(
        "li",
        { className: "mismatch" },
        Object.entries(mismatch).map(([name, value]) =>
          h("span", { className: "pair" }, h("b", { text: `${name}: ` }), describe(value)),
        ),
      ),
    );
  }
  const stripe = report.stripe || {};
  return h(
    "article",
    { className: `card report ${report.status}`, dataset: { date: report.date, status: report.status } },
    h("h3", { text: `Report of ${report.date}: ${report.status}` }),
    facts([
      ["status", report.status],
      ["transactions checked", report.transactions_checked],
      ["accounts checked", report.accounts_checked],
      ...Object.entries(report.trial_balance || {}).map(([currency, sum]) => [`trial balance ${currency}`, sum]),
      ["Stripe matched", stripe.matched],
      ["Stripe unmatched (ledger)", stripe.unmatched_ledger ? stripe.unmatched_ledger.length : undefined],
      ["Stripe unmatched (Stripe)", stripe.unmatched_stripe ? stripe.unmatched_stripe.length : undefined],
    ]),
    h("h4", { text: `Mismatches (${mismatches(report)})` }),
    mismatches(report) ? list : h("p", { className: "note", text: "None: every check agreed." }),
  );
}

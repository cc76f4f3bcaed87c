// The reconciliation chart: one group of bars per day (transactions checked, mismatches), drawn
// as SVG elements one by one. A day with no report gets a grey mark instead of bars, a day
// reconciled with nothing to check a blue one.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 900;
const HEIGHT = 260;
const TOP = 16;
const BOTTOM = 40;
const LEFT = 44;
const RIGHT = 8;

function svg(tag, attributes = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

// days: [{date, report | null}] oldest first; onPick(date) when a day is clicked.
export function reconciliationChart(days, onPick) {
  const most = Math.max(1, ...days.map((d) => (d.report ? d.report.transactions_checked || 0 : 0)));
  const mostMismatches = Math.max(1, ...days.map((d) => mismatches(d.report)));
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const slot = (WIDTH - LEFT - RIGHT) / days.length;
  const bar = Math.max(2, slot / 2 - 2);
  const chart = svg("svg", {
    class: "chart",
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": `Transactions checked and mismatches per day, ${days.length} days`,
  });
  chart.append(
    svg("title", {}, "Reconciliation: transactions checked and mismatches per day"),
    svg("line", { class: "axis", x1: LEFT, y1: TOP + plotHeight, x2: WIDTH - RIGHT, y2: TOP + plotHeight }),
    svg("text", { class: "tick", x: LEFT - 4, y: TOP + 4, "text-anchor": "end" }, String(most)),
    svg("text", { class: "tick", x: LEFT - 4, y: TOP + plotHeight, "text-anchor": "end" }, "0"),
  );
  days.forEach((day, index) => {
    const x = LEFT + index * slot;
    const group = svg("g", { class: "day", "data-date": day.date, tabindex: "0" });
    const report = day.report;
    if (report && report.status !== "running") {
      const checked = report.transactions_checked || 0;
      const wrong = mismatches(report);
      const checkedHeight = (checked / most) * plotHeight;
      const wrongHeight = wrong ? Math.max(3, (wrong / mostMismatches) * plotHeight) : 0;
      group.append(
        svg("rect", {
          class: "bar checked",
          x: x + 1,
          y: TOP + plotHeight - checkedHeight,
          width: bar,
          height: checkedHeight,
        }),
        svg("rect", {
          class: "bar mismatches",
          x: x + 1 + bar + 1,
          y: TOP + plotHeight - wrongHeight,
          width: bar,
          height: wrongHeight,
        }),
        svg("title", {}, `${day.date}: ${checked} transactions checked, ${wrong} mismatches (${report.status})`),
      );
      // A day reconciled with nothing to check still shows that it ran.
      if (checked === 0) {
        group.append(svg("rect", { class: "bar zero", x: x + 1, y: TOP + plotHeight - 2, width: bar, height: 2 }));
      }
      if (report.status === "mismatch") group.classList.add("has-mismatch");
    } else {
      group.classList.add(report ? "running" : "none");
      group.append(
        svg("rect", { class: "bar empty", x: x + 1, y: TOP + plotHeight - 2, width: bar * 2 + 1, height: 2 }),
        svg("title", {}, `${day.date}: ${report ? "still running" : "no reconciliation ran"}`),
      );
    }
    // An invisible target the whole height of the slot, so a day with no bars can be picked too.
    group.append(svg("rect", { class: "hit", x, y: TOP, width: slot, height: plotHeight }));
    if (index % 5 === 0 || index === days.length - 1) {
      group.append(
        svg("text", { class: "tick", x: x + slot / 2, y: HEIGHT - BOTTOM + 16, "text-anchor": "middle" }, day.date.slice(5)),
      );
    }
    group.addEventListener("click", () => onPick(day.date));
    group.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") onPick(day.date);
    });
    chart.append(group);
  });
  return chart;
}

export function mismatches(report) {
  return report && Array.isArray(report.mismatches) ? report.mismatches.length : 0;
}

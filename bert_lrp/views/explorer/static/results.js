// An explanation on the page: its heading (the explained text), the comparison grid (methods x
// words, prediction first, rows by agreement), the rank agreement and the server's heatmaps (per
// method the words, the word pieces and the relevance after each layer).
import { $, element, paint, relevanceColour, signed, symmetricScale, visible } from "./dom.js";
import { methodTitle } from "./form.js";

/** One flat record per explained label (target "all": one per label), as the server's label_views. */
export function labelViews(record) {
  if (record.target !== "all" || !record.labels) return [record];
  return Object.entries(record.labels).map(([name, entry]) => ({ ...record, ...entry, target: name }));
}

/** The view of the predicted label (target "all"), else the record itself. */
export function mainView(record) {
  const views = labelViews(record);
  return views.find((v) => v.target === record.prediction) || views[0];
}

const MERGED = ["scores", "conservation", "embedding_shares", "layer_scores"];

/** The records of the groups finished so far as one record (every method's scores so far). */
export function mergeRecords(records) {
  const merged = structuredClone(records[0]);
  for (const record of records.slice(1)) {
    merged.methods = [...merged.methods, ...record.methods.filter((m) => !merged.methods.includes(m))];
    const into = (target, source) => {
      for (const key of MERGED) if (source[key]) target[key] = { ...(target[key] || {}), ...source[key] };
    };
    into(merged, record);
    for (const [name, entry] of Object.entries(record.labels || {})) {
      if (merged.labels && merged.labels[name]) into(merged.labels[name], entry);
    }
  }
  return merged;
}

/** "text" or "text ‖ pair", shortened for a heading. */
export function headingOf(text, pair) {
  const cut = (s) => (s.length > 300 ? `${s.slice(0, 300)}…` : s);
  return pair ? `${cut(text)} ‖ ${cut(pair)}` : cut(text);
}

/**
 * The server's heatmaps into `box`, each block headed by its own title (`title(label)`, label:
 * the explained label of the block) instead of the component's numbered heading.
 */
export function showHeatmaps(box, html, title) {
  box.innerHTML = html;  // the server's escaping component
  for (const heading of box.querySelectorAll("h2")) {
    const meta = heading.nextElementSibling && heading.nextElementSibling.matches("table.meta")
      ? [...heading.nextElementSibling.querySelectorAll("tr")] : [];
    const explained = meta.find((row) => row.cells[0].textContent === "explained");
    heading.textContent = visible(title(explained ? explained.cells[1].textContent : null));
  }
}

function meanAgreement(agreement, method) {
  if (!agreement) return null;
  const i = agreement.methods.indexOf(method);
  if (i < 0) return null;
  const others = agreement.spearman[i].filter((value, j) => j !== i && value !== null);
  return others.length ? others.reduce((a, b) => a + b, 0) / others.length : null;
}

function probabilities(record) {
  const line = element("p", null, { class: "prediction" });
  line.append(element("b", "Prediction: "), element("span", record.prediction, { class: "label-name" }));
  const sorted = Object.entries(record.probabilities || {}).sort((a, b) => b[1] - a[1]);
  for (const [label, probability] of sorted) {
    line.append(" · ", element("span", label, { class: "label-name" }), ` ${probability.toFixed(3)}`);
  }
  const view = mainView(record);
  if (view.target !== undefined && view.target !== record.prediction) line.append(" · explained: ", element("span", view.target));
  return line;
}

/**
 * The comparison grid into `box`: the prediction and probabilities first, then a row per method
 * (ordered by its mean rank agreement with the others, best first) and a column per word; each
 * cell the word's score divided by the method's largest absolute score, coloured by it.
 */
export function showGrid(box, session, record, agreement) {
  box.replaceChildren();
  const view = mainView(record);
  const methods = (view.methods || record.methods).filter((m) => view.scores && view.scores[m]);
  if (!methods.length) return;
  const ranked = methods.map((method, i) => ({ method, i, mean: meanAgreement(agreement, method) }))
    .sort((a, b) => (b.mean ?? -Infinity) - (a.mean ?? -Infinity) || a.i - b.i);
  box.append(element("h3", "Comparison grid"), probabilities(record));
  const table = element("table", null, { class: "grid" });
  table.append(element("caption", `Word scores per method, each divided by the method's largest absolute score: `
    + `red for “${view.target}”, blue against. Rows by agreement with the other methods (mean Spearman), best first.`));
  const head = element("tr");
  head.append(element("th", "method", { scope: "col" }), element("th", "agreement", { scope: "col" }));
  const pairStart = view.words.findIndex((word) => word.sequence === 1);  // the second text's first word
  view.words.forEach((word, j) => {
    head.append(element("th", word.word, { scope: "col", class: j === pairStart ? "grid-word pair-start" : "grid-word" }));
  });
  table.append(element("thead"));
  table.tHead.append(head);
  const body = element("tbody");
  for (const { method, mean } of ranked) {
    const scores = view.scores[method].words;
    const scale = symmetricScale(scores);
    const row = element("tr", null, { "data-method": method });
    row.append(element("th", methodTitle(session, method), { scope: "row" }));
    const agree = element("td", mean === null ? "–" : signed(mean), { class: "agreement-cell score",
                                                                       title: "mean Spearman with the other methods" });
    if (mean !== null) paint(agree, relevanceColour(mean, 1));
    row.append(agree);
    view.words.forEach((word, j) => {
      const cell = element("td", signed(scores[j] / scale), { class: j === pairStart ? "score pair-start" : "score",
                                                              title: `${word.word}: ${scores[j]}` });
      row.append(paint(cell, relevanceColour(scores[j], scale)));
    });
    body.append(row);
  }
  table.append(body);
  const scroll = element("div", null, { class: "scroll" });
  scroll.append(table);
  box.append(scroll);
}

/** The Spearman matrix of the methods, coloured (+1 red, -1 blue). */
export function showAgreement(box, session, agreement) {
  box.replaceChildren();
  if (!agreement || agreement.methods.length < 2) return;
  box.append(element("h3", "Rank agreement of the word scores (Spearman)"));
  const table = element("table", null, { class: "agreement" });
  const head = element("tr");
  head.append(element("th", ""));
  for (const method of agreement.methods) head.append(element("th", methodTitle(session, method), { scope: "col" }));
  table.append(head);
  agreement.methods.forEach((method, i) => {
    const row = element("tr");
    row.append(element("th", methodTitle(session, method), { scope: "row" }));
    for (const value of agreement.spearman[i]) {
      const cell = element("td", value === null ? "–" : value.toFixed(2), { class: "score" });
      row.append(value === null ? cell : paint(cell, relevanceColour(value, 1)));
    }
    table.append(row);
  });
  box.append(table);
}

/** Clear every part of the result. */
export function clearResult() {
  for (const id of ["grid", "agreement", "heatmaps"]) $(id).replaceChildren();
  $("result-title").hidden = true;
}

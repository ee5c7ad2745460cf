// The data-set tab: metrics (accuracy, a confusion matrix and a confidence histogram whose cells and
// bars filter the table), the rows (sortable, filterable; a clicked row's explanation opens right
// under it), the words that push toward each label, uploads with their own methods, deleting.
import { api } from "./api.js";
import { $, activateOnKeys, announce, element, paint, purple, setText, showError } from "./dom.js";
import { checkedMethods, currentModel } from "./form.js";
import { headingOf, showHeatmaps } from "./results.js";

const UPLOAD_POLL_MS = 300;
const COUNT_DELAY_MS = 300;  // typing a minimum count: the words are asked for once it rests

/** The data-set tab; `load(select)` (re)reads the list of data sets and shows `select` or the current one;
 * `open()` when the tab is opened. */
export function setupDataset(session) {
  const view = { sort: "index", order: "asc", extra: null, job: null, shown: null, asked: 0, countTimer: null,
                 cancelling: false };
  // view.extra: the metrics' filter {gold, label} or {confidence_min, confidence_max} with its description

  function id() { return $("dataset").value; }
  const path = (suffix) => `/api/datasets/${encodeURIComponent(id())}${suffix}`;

  async function load(select) {
    let info;
    try { info = await api("/api/datasets"); } catch (error) { showError(error.message); return; }
    const keep = select || id();
    $("dataset").replaceChildren(...info.datasets.map((d) => element("option", `${d.name} (${d.rows})`, { value: d.id })));
    if (keep && info.datasets.some((d) => d.id === keep)) $("dataset").value = keep;
    const current = info.datasets.find((d) => d.id === id());
    $("delete-dataset").disabled = !current;
    if (view.shown !== id()) {  // another data set: nothing of the previous one stays
      view.shown = id();
      view.extra = null;
      showFilter();
      $("filter-word").value = "";
      $("filter-correct").value = "";
    }
    $("filter-label").replaceChildren(element("option", "any", { value: "" }),
      ...((current && current.labels) || []).map((l) => element("option", l, { value: l })));
    $("words-method").replaceChildren(...((current && current.methods) || []).map((m) => element("option", m, { value: m })));
    $("rows").tBodies[0].replaceChildren();
    $("rows-total").textContent = current ? "" : "No data set: upload a file of texts below.";
    for (const box of ["accuracy", "confusion", "histogram", "words"]) $(box).replaceChildren();
    if (current) await Promise.all([loadRows(), loadWords(), loadMetrics()]);
  }

  // ---------------------------------------------------------------- metrics
  async function loadMetrics() {
    const shown = id();
    let metrics;
    try { metrics = await api(path("/metrics")); } catch (error) { showError(error.message); return; }
    if (shown !== id()) return;
    const summary = `${metrics.rows.toLocaleString()} rows, ${metrics.errors} not explained`
      + (metrics.accuracy === null ? "; no gold labels, so no accuracy"
        : `; accuracy ${(100 * metrics.accuracy).toFixed(1)} % on the ${metrics.with_gold.toLocaleString()} rows with a gold label`);
    $("accuracy").textContent = summary;
    drawConfusion(metrics.confusion);
    drawHistogram(metrics.histogram);
  }

  function drawConfusion(confusion) {
    const box = $("confusion");
    box.replaceChildren();
    if (!confusion || !confusion.gold.length) return;
    const table = element("table", null, { class: "confusion" });
    table.append(element("caption", "Confusion matrix: gold label (rows) × predicted (columns); click a cell to list its rows"));
    const head = element("tr");
    head.append(element("th", "gold \\ predicted", { scope: "col" }));
    for (const label of confusion.predicted) head.append(element("th", label, { scope: "col" }));
    table.append(head);
    const top = Math.max(1, ...confusion.counts.flat());
    confusion.gold.forEach((gold, i) => {
      const row = element("tr");
      row.append(element("th", gold, { scope: "row" }));
      confusion.predicted.forEach((predicted, j) => {
        const count = confusion.counts[i][j];
        const button = element("button", count, { type: "button", class: "cell", "data-gold": gold,
                                                  "data-predicted": predicted,
                                                  "aria-label": `${count} rows of gold ${gold} predicted ${predicted}` });
        paint(button, purple(0.85 * count / top));
        button.addEventListener("click", () => filterBy({ gold, label: predicted },
                                                        `gold ${gold}, predicted ${predicted}`));
        const cell = element("td");
        cell.append(button);
        row.append(cell);
      });
      table.append(row);
    });
    box.append(table);
  }

  function drawHistogram(histogram) {
    const box = $("histogram");
    box.replaceChildren();
    if (!histogram || !histogram.edges.length) return;
    const figure = element("div", null, { class: "histogram", role: "group",
                                           "aria-label": "Confidence histogram: click a bar to list its rows" });
    const totals = histogram.correct.map((_, i) => histogram.correct[i] + histogram.wrong[i] + histogram.no_gold[i]);
    const top = Math.max(1, ...totals);
    totals.forEach((total, i) => {
      const [low, high] = [histogram.edges[i], histogram.edges[i + 1]];
      const button = element("button", null, { type: "button", class: "bar-button", "data-min": low, "data-max": high,
        "aria-label": `confidence ${low.toFixed(2)} to ${high.toFixed(2)}: ${histogram.correct[i]} correct, `
                      + `${histogram.wrong[i]} wrong, ${histogram.no_gold[i]} without gold` });
      const stack = element("span", null, { class: "stack" });
      for (const [part, count] of [["no-gold", histogram.no_gold[i]], ["wrong", histogram.wrong[i]], ["correct", histogram.correct[i]]]) {
        const piece = element("span", null, { class: `piece ${part}` });
        piece.style.height = `${Math.round(120 * count / top)}px`;
        stack.append(piece);
      }
      button.append(stack, element("span", `${low.toFixed(2)}`, { class: "edge" }), element("span", total, { class: "count" }));
      button.title = button.getAttribute("aria-label");
      button.addEventListener("click", () => filterBy({ confidence_min: low, confidence_max: high },
                                                      `confidence ${low.toFixed(2)}–${high.toFixed(2)}`));
      figure.append(button);
    });
    box.append(element("p", "Confidence (the predicted label's probability): correct, wrong, no gold label",
                       { class: "small histogram-title" }), figure);
    const legend = element("p", null, { class: "small" });
    for (const [part, name] of [["correct", "correct"], ["wrong", "wrong"], ["no-gold", "no gold label"]]) {
      legend.append(element("span", null, { class: `piece swatch-box ${part}` }), ` ${name} `);
    }
    box.append(legend);
  }

  function filterBy(extra, description) {
    view.extra = { query: extra, description };
    showFilter();
    loadRows().then(() => announce(`Rows filtered: ${description}.`));
  }

  function showFilter() {
    $("filter-chip").hidden = !view.extra;
    setText($("filter-chip-text"), view.extra ? `Filtered: ${view.extra.description}` : "");
  }

  // ---------------------------------------------------------------- rows
  async function loadRows() {
    if (!id()) return;
    const mine = ++view.asked;  // only the latest request's rows are shown
    const query = new URLSearchParams({ sort: view.sort, order: view.order, limit: "200" });
    if ($("filter-label").value) query.set("label", $("filter-label").value);
    if ($("filter-correct").value) query.set("correct", $("filter-correct").value);
    if ($("filter-word").value.trim()) query.set("word", $("filter-word").value.trim());
    for (const [name, value] of Object.entries(view.extra ? view.extra.query : {})) query.set(name, String(value));
    try {
      const page = await api(`${path("/rows")}?${query}`);
      if (mine !== view.asked) return;
      const body = $("rows").tBodies[0];
      body.replaceChildren();
      for (const row of page.rows) {
        const line = element("tr", null, { "data-index": row.index, tabindex: 0, class: "row",
                                           "aria-label": `row ${row.index}: ${row.text.slice(0, 80)}` });
        line.append(element("td", row.index), element("td", row.text),
                    element("td", row.error ? `error: ${row.error}` : row.prediction),
                    element("td", row.confidence === null ? "" : row.confidence.toFixed(3)),
                    element("td", row.gold === null ? "" : row.gold));
        line.addEventListener("click", () => showRow(row.index, line));
        activateOnKeys(line, () => showRow(row.index, line));
        body.append(line);
      }
      $("rows-total").textContent = `${page.total} rows` + (page.total > page.rows.length ? ` (the first ${page.rows.length} shown)` : "");
    } catch (error) { showError(error.message); }
  }

  async function showRow(index, line) {
    const body = $("rows").tBodies[0];
    for (const other of body.querySelectorAll("tr.selected")) other.classList.remove("selected");
    for (const old of body.querySelectorAll("tr.detail")) old.remove();
    line.classList.add("selected");
    const detail = element("tr", null, { class: "detail" });
    const cell = element("td", null, { colspan: 5, id: "row-detail" });
    cell.append(element("p", "loading…", { class: "small" }));
    detail.append(cell);
    line.after(detail);
    const shown = id();
    try {
      const row = await api(`${path("/rows")}/${index}`);
      if (shown !== id() || !detail.isConnected) return;
      if (row.record.error) {
        cell.replaceChildren(element("h2", `Row ${index}: ${headingOf(row.record.text, row.record.pair)}`),
                             element("p", `Not explained: ${row.record.error}`, { class: "error" }));
      } else {
        showHeatmaps(cell, row.views.html, (label) => `Row ${index}: ${headingOf(row.record.text, row.record.pair)}`
                     + (row.record.target === "all" && label ? ` — for ${label}` : ""));
      }
      const close = element("button", "Close", { type: "button", class: "close-detail" });
      close.addEventListener("click", () => { detail.remove(); line.classList.remove("selected"); line.focus(); });
      cell.prepend(close);
      line.scrollIntoView({ block: "start" });  // the row at the top, its explanation right under it
      announce(`Row ${index} shown under its line.`);
    } catch (error) { showError(error.message); }
  }

  function sortBy(header) {
    view.order = view.sort === header.dataset.sort && view.order === "asc" ? "desc" : "asc";
    view.sort = header.dataset.sort;
    for (const other of $("rows").querySelectorAll("th[data-sort]")) {
      other.setAttribute("aria-sort", other === header ? (view.order === "asc" ? "ascending" : "descending") : "none");
    }
    loadRows();
  }

  // ---------------------------------------------------------------- words
  async function loadWords() {
    const method = $("words-method").value;
    const box = $("words");
    box.replaceChildren();
    if (!id() || !method) return;
    const shown = id();
    const query = new URLSearchParams({ method, top: "15" });
    const hide = [["hide-stopwords", "stopwords"], ["hide-punctuation", "punctuation"]]
      .filter(([box]) => $(box).checked).map(([, name]) => name);
    if (hide.length) query.set("hide", hide.join(","));
    if ($("min-count").value) query.set("min_count", $("min-count").value);
    try {
      const result = await api(`${path("/words")}?${query}`);
      if (shown !== id()) return;
      box.replaceChildren();
      for (const [label, words] of Object.entries(result.labels)) {
        box.append(element("h3", `toward ${label}`));
        const table = element("table", null, { class: "words", "data-label": label });
        const head = element("tr");
        head.append(element("th", "word"), element("th", "times it pushes"), element("th", "mean"), element("th", "total"));
        table.append(head);
        for (const word of words) {
          const row = element("tr");
          row.append(element("td", word.word), element("td", word.count), element("td", word.mean.toFixed(4)),
                     element("td", word.total.toFixed(4)));
          table.append(row);
        }
        if (!words.length) {
          const none = element("tr");
          none.append(element("td", "no word", { colspan: 4, class: "small" }));
          table.append(none);
        }
        box.append(table);
      }
    } catch (error) { showError(error.message); }
  }

  // ---------------------------------------------------------------- upload and delete
  async function upload(event) {
    event.preventDefault();
    const file = $("upload").files[0];
    if (!file) { showError("Choose a text file to explain"); return; }
    showError("");
    const body = { model: currentModel(session).name, name: file.name, text: await file.text(),
                   methods: checkedMethods($("upload-methods")), options: { rule: $("upload-preset").value } };
    $("upload-button").disabled = true;
    try {
      let job = await api("/api/datasets", body);
      view.job = job.job;
      $("upload-cancel").disabled = false;
      announce(`Explaining ${file.name}…`);
      const bar = $("upload-progress");
      while (!job.finished) {
        bar.max = job.total;
        bar.value = job.done;
        await new Promise((resolve) => setTimeout(resolve, UPLOAD_POLL_MS));
        job = await api(`/api/jobs/${encodeURIComponent(job.job)}`);
      }
      bar.value = bar.max;
      if (job.error && view.cancelling) {
        announce(`Upload of ${file.name} cancelled: nothing stored.`);
        return;
      }
      if (job.error) throw new Error(job.error);
      if (job.dataset) {
        await load(job.dataset);
        announce(`${file.name} explained: data set ${job.dataset}.`);
      }
    } catch (error) {
      showError(error.message);
    } finally {
      view.job = null;
      view.cancelling = false;
      $("upload-button").disabled = false;
      $("upload-cancel").disabled = true;
    }
  }

  async function cancelUpload() {
    if (!view.job) return;
    try {
      view.cancelling = true;
      $("upload-cancel").disabled = true;
      await api(`/api/jobs/${encodeURIComponent(view.job)}`, undefined, { method: "DELETE" });
      announce("Cancelling the upload…");
    } catch (error) { showError(error.message); }
  }

  async function remove() {
    if (!id()) return;
    const name = $("dataset").selectedOptions[0].textContent;
    try {
      await api(path(""), undefined, { method: "DELETE" });
      announce(`Data set ${name} deleted.`);
      view.shown = null;
      await load(null);
    } catch (error) { showError(error.message); }
  }

  $("dataset").addEventListener("change", () => load(id()));
  for (const box of ["filter-label", "filter-correct"]) $(box).addEventListener("change", loadRows);
  $("filter-word").addEventListener("input", loadRows);
  $("filter-clear").addEventListener("click", () => { view.extra = null; showFilter(); loadRows(); });
  for (const box of ["words-method", "hide-stopwords", "hide-punctuation"]) $(box).addEventListener("change", loadWords);
  $("min-count").addEventListener("input", () => {
    clearTimeout(view.countTimer);
    view.countTimer = setTimeout(loadWords, COUNT_DELAY_MS);
  });
  for (const header of $("rows").querySelectorAll("th[data-sort]")) {
    header.addEventListener("click", () => sortBy(header));
    activateOnKeys(header, () => sortBy(header));
  }
  $("upload-form").addEventListener("submit", upload);
  $("upload-cancel").addEventListener("click", cancelUpload);
  $("delete-dataset").addEventListener("click", remove);
  /** The tab opened: the data sets read the first time; later, what was shown stays (an open row too). */
  function open() {
    if (view.shown === null) load();
  }

  return { load, open };
}

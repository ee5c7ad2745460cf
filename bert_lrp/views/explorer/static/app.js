// The explorer's page: plain JavaScript, no framework, no build step.
// Everything a user or a data file provides is put into the page with textContent; the only HTML
// inserted as HTML is the server's heatmap component (views.html), which escapes every text.

const $ = (id) => document.getElementById(id);
const state = { models: [], methods: [], record: null, attention: null, focus: null, sort: "index", order: "asc" };

// Control characters and bidi controls shown as visible escapes (\x1b, \u202e), as the command
// line and the server's component show them: a text can neither hide characters nor reorder a line.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u2028\u2029]/g;
function visible(text) {
  return String(text).replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = visible(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function showError(message) { $("error").textContent = visible(message || ""); }

async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const type = response.headers.get("Content-Type") || "";
  const payload = type.includes("application/json") ? await response.json() : await response.text();
  if (!response.ok) {
    const field = payload && payload.field ? ` (${payload.field})` : "";
    throw new Error((payload && payload.error ? payload.error : `HTTP ${response.status}`) + field);
  }
  return payload;
}

function currentModel() { return state.models.find((m) => m.name === $("model").value) || state.models[0]; }

// ------------------------------------------------------------------ the form
function fillModels(info) {
  state.models = info.models;
  for (const model of info.models) $("model").append(element("option", model.name, { value: model.name }));
  $("model").value = info.default;
  $("model").addEventListener("change", modelChanged);
}

function fillMethods(info) {
  state.methods = info.methods;
  const shown = info.methods.filter((m) => !m.name.startsWith("lrp:"));
  for (const method of shown) {
    const box = element("input", null, { type: "checkbox", value: method.name, id: `method-${method.name}` });
    box.checked = info.defaults.includes(method.name);
    const label = element("label", null, { title: method.title });
    label.append(box, " " + method.name);
    $("methods").append(label);
  }
  const rule = info.methods.flatMap((m) => m.options).find((o) => o.name === "rule");
  for (const preset of (rule && rule.choices) || []) $("preset").append(element("option", preset, { value: preset }));
  if (rule) $("preset").value = rule.default;
  const seen = new Set(["rule"]);
  for (const method of info.methods) {
    for (const option of method.options) {
      if (seen.has(option.name)) continue;
      seen.add(option.name);
      const label = element("label", `${option.name} `, { title: option.help });
      let input;
      if (option.choices) {
        input = element("select");
        for (const choice of option.choices) input.append(element("option", choice, { value: choice }));
      } else if (option.kind === "bool") {
        input = element("input", null, { type: "checkbox" });
      } else {
        input = element("input", null, { type: "number" });
        if (option.minimum !== null) input.min = option.minimum;
        if (option.maximum !== null) input.max = option.maximum;
        input.step = option.kind === "int" ? "1" : "any";
      }
      input.dataset.option = option.name;
      input.dataset.kind = option.kind;
      if (option.kind === "bool") input.checked = Boolean(option.default); else input.value = option.default;
      input.dataset.default = String(option.default);
      label.append(input);
      $("options").append(label);
    }
  }
}

function modelChanged() {
  const model = currentModel();
  const target = $("target");
  target.replaceChildren(element("option", "predicted label", { value: "" }), element("option", "all labels", { value: "all" }));
  for (const label of model.labels) target.append(element("option", label, { value: label }));
  $("word-box").hidden = model.task !== "token";
  const masked = model.task === "masked_lm";
  $("mask-tab").hidden = !masked;
  for (const id of ["methods", "preset", "target", "save-report"]) $(id).disabled = masked;
  $("explain-button").textContent = masked ? "Show words" : "Explain";
  // the tuned composite only for a model with an lrp_composite.json (bert-lrp tune-lrp)
  const tuned = [...$("preset").options].find((option) => option.value === "tuned");
  if (tuned) {
    tuned.disabled = !model.tuned_lrp;
    if (tuned.disabled && $("preset").value === "tuned") $("preset").value = "attnlrp";
  }
}

function changedOptions() {
  const options = {};
  for (const input of $("options").querySelectorAll("[data-option]")) {
    const value = input.dataset.kind === "bool" ? input.checked : input.value;
    if (String(value) === input.dataset.default) continue;
    options[input.dataset.option] = input.dataset.kind === "int" ? Number.parseInt(value, 10)
      : input.dataset.kind === "float" ? Number.parseFloat(value) : value;
  }
  options.rule = $("preset").value;
  return options;
}

function request() {
  const methods = [...$("methods").querySelectorAll("input:checked")].map((box) => box.value);
  const body = { model: currentModel().name, text: $("text").value, methods, options: changedOptions(),
                 target: $("target").value || null };
  if ($("pair").value.trim()) body.pair = $("pair").value;
  if (currentModel().task === "token") body.word = $("word").value || null;
  return body;
}

// ------------------------------------------------------------------ explain
async function explain(event) {
  event.preventDefault();
  showError("");
  if (currentModel().task === "masked_lm") { showMaskWords(); return; }
  $("status").textContent = "explaining…";
  try {
    const payload = await api("/api/explain", request());
    state.record = payload.examples[0];
    $("heatmaps").innerHTML = payload.views.html;  // the server's escaping component
    showAgreement(payload.views.agreement);
    $("save-report").disabled = false;
    $("status").textContent = "";
    await loadAttention();
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
  }
}

function showAgreement(agreement) {
  const box = $("agreement");
  box.replaceChildren();
  if (!agreement || agreement.methods.length < 2) return;
  box.append(element("h3", "Rank agreement of the word scores (Spearman)"));
  const table = element("table", null, { class: "agreement" });
  const head = element("tr");
  head.append(element("th", ""));
  for (const method of agreement.methods) head.append(element("th", method));
  table.append(head);
  agreement.methods.forEach((method, i) => {
    const row = element("tr");
    row.append(element("th", method));
    for (const value of agreement.spearman[i]) row.append(element("td", value === null ? "–" : value.toFixed(2)));
    table.append(row);
  });
  box.append(table);
}

async function saveReport() {
  if (!state.record) return;
  try {
    const response = await fetch("/api/report", { method: "POST", headers: { "Content-Type": "application/json" },
                                                   body: JSON.stringify({ examples: [state.record] }) });
    if (!response.ok) throw new Error((await response.json()).error);
    const link = element("a", null, { download: "bert-lrp-report.html" });
    link.href = URL.createObjectURL(await response.blob());
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (error) { showError(error.message); }
}

// ------------------------------------------------------------------ attention
async function loadAttention() {
  const body = { model: currentModel().name, text: $("text").value };
  if ($("pair").value.trim()) body.pair = $("pair").value;
  try {
    state.attention = await api("/api/attention", body);
  } catch (error) {  // a text longer than one window has no single attention map
    state.attention = null;
    $("attention-view").hidden = true;
    return;
  }
  const { layers, heads } = state.attention;
  for (const [id, count] of [["layer", layers], ["head", heads]]) {
    const keep = $(id).value;
    $(id).replaceChildren(...Array.from({ length: count }, (_, i) => element("option", i + 1, { value: i })));
    if (keep && Number(keep) < count) $(id).value = keep;
  }
  state.focus = null;
  $("attention-view").hidden = false;
  drawAttention();
}

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = visible(text);
  return node;
}

function drawAttention() {
  const data = state.attention;
  if (!data) return;
  const matrix = data.attention[Number($("layer").value)][Number($("head").value)];
  const tokens = data.tokens;
  const box = $("attention");
  box.replaceChildren();
  if ($("attention-mode").value === "matrix") {
    const cell = 14, left = 90, top = 90;
    const image = svg("svg", { width: left + cell * tokens.length, height: top + cell * tokens.length });
    tokens.forEach((token, i) => {
      image.append(svg("text", { x: left - 4, y: top + cell * i + 11, "text-anchor": "end", "font-size": 11 }, token));
      image.append(svg("text", { x: 0, y: 0, "font-size": 11,
        transform: `translate(${left + cell * i + 10},${top - 4}) rotate(-60)` }, token));
      matrix[i].forEach((value, j) => {
        const shade = Math.round(255 * (1 - value));
        const rect = svg("rect", { x: left + cell * j, y: top + cell * i, width: cell - 1, height: cell - 1,
                                   fill: `rgb(${shade},${shade},255)` });
        rect.append(svg("title", {}, `${token} → ${tokens[j]}: ${value.toFixed(3)}`));
        image.append(rect);
      });
    });
    box.append(image);
    return;
  }
  const row = 18, width = 420;
  const image = svg("svg", { width, height: row * tokens.length + 10 });
  tokens.forEach((token, i) => {
    const from = svg("text", { x: 110, y: row * i + 14, "text-anchor": "end", "font-size": 12, class: "attention-from",
                               "data-index": i, style: "cursor: pointer" }, token);
    from.addEventListener("click", () => { state.focus = state.focus === i ? null : i; drawAttention(); });
    if (state.focus === i) from.setAttribute("font-weight", "bold");
    image.append(from, svg("text", { x: width - 110, y: row * i + 14, "font-size": 12 }, token));
  });
  tokens.forEach((_, i) => {
    if (state.focus !== null && state.focus !== i) return;
    matrix[i].forEach((value, j) => {
      if (value < 0.02) return;
      image.append(svg("line", { x1: 116, y1: row * i + 10, x2: width - 116, y2: row * j + 10,
                                 stroke: "#1f5fbf", "stroke-opacity": Math.min(1, value).toFixed(3),
                                 "stroke-width": (1 + 3 * value).toFixed(2) }));
    });
  });
  box.append(image);
}

// ------------------------------------------------------------------ masked words
function showMaskWords() {
  const box = $("mask-words");
  box.replaceChildren();
  $("mask-result").replaceChildren();
  const words = $("text").value.split(/\s+/).filter((w) => w);
  words.forEach((word, i) => {
    const span = element("span", word, { class: "mask-word", "data-index": i });
    span.addEventListener("click", () => maskWord(words, i));
    box.append(span, " ");
  });
}

async function maskWord(words, index) {
  const mask = currentModel().mask_token;
  const text = words.map((w, i) => (i === index ? mask : w)).join(" ");
  showError("");
  try {
    const report = await api("/api/mask", { model: currentModel().name, text, top_k: 5 });
    const box = $("mask-result");
    box.replaceChildren(element("p", `Masked: ${text}`, { class: "small" }));
    for (const masked of report.masks) {
      box.append(element("h3", `Predictions at token ${masked.position}`));
      const list = element("ol", null, { class: "mask-top" });
      for (const top of masked.output) list.append(element("li", `${top.token}  ${top.probability.toFixed(3)}`));
      box.append(list);
      const table = element("table");
      const head = element("tr");
      head.append(element("th", "layer"), element("th", "best tokens (probability)"),
                  element("th", "output's best token: probability, rank"));
      table.append(head);
      for (const lens of masked.logit_lens) {
        const row = element("tr");
        const best = lens.top.slice(0, 3).map((t) => `${t.token} ${t.probability.toFixed(3)}`).join(" | ");
        row.append(element("td", lens.layer), element("td", best),
                   element("td", `${lens.output_top_probability.toFixed(3)}, #${lens.output_top_rank}`));
        table.append(row);
      }
      box.append(element("h3", "Logit lens: the best tokens after each layer"), table);
    }
  } catch (error) { showError(error.message); }
}

// ------------------------------------------------------------------ data sets
async function loadDatasets(select) {
  const info = await api("/api/datasets");
  const keep = select || $("dataset").value;
  $("dataset").replaceChildren(...info.datasets.map((d) => element("option", `${d.name} (${d.rows})`, { value: d.id })));
  if (keep && info.datasets.some((d) => d.id === keep)) $("dataset").value = keep;
  const current = info.datasets.find((d) => d.id === $("dataset").value);
  $("filter-label").replaceChildren(element("option", "any", { value: "" }),
    ...((current && current.labels) || []).map((l) => element("option", l, { value: l })));
  $("words-method").replaceChildren(...((current && current.methods) || []).map((m) => element("option", m, { value: m })));
  if (current) { await loadRows(); await loadWords(); }
}

async function loadRows() {
  const id = $("dataset").value;
  if (!id) return;
  const query = new URLSearchParams({ sort: state.sort, order: state.order, limit: "200" });
  if ($("filter-label").value) query.set("label", $("filter-label").value);
  if ($("filter-correct").value) query.set("correct", $("filter-correct").value);
  if ($("filter-word").value.trim()) query.set("word", $("filter-word").value.trim());
  try {
    const page = await api(`/api/datasets/${encodeURIComponent(id)}/rows?${query}`);
    const body = $("rows").querySelector("tbody");
    body.replaceChildren();
    for (const row of page.rows) {
      const line = element("tr", null, { "data-index": row.index });
      line.append(element("td", row.index), element("td", row.text),
                  element("td", row.error ? `error: ${row.error}` : row.prediction),
                  element("td", row.confidence === null ? "" : row.confidence.toFixed(3)),
                  element("td", row.gold === null ? "" : row.gold));
      line.addEventListener("click", () => showRow(id, row.index, line));
      body.append(line);
    }
    $("rows-total").textContent = `${page.total} rows`;
  } catch (error) { showError(error.message); }
}

async function showRow(id, index, line) {
  for (const other of $("rows").querySelectorAll("tr.selected")) other.classList.remove("selected");
  line.classList.add("selected");
  try {
    const row = await api(`/api/datasets/${encodeURIComponent(id)}/rows/${index}`);
    const box = $("row-detail");
    box.innerHTML = row.views.html;  // the server's escaping component
    if (row.record.error) box.replaceChildren(element("p", `Not explained: ${row.record.error}`, { class: "error" }));
  } catch (error) { showError(error.message); }
}

async function loadWords() {
  const id = $("dataset").value;
  const method = $("words-method").value;
  const box = $("words");
  box.replaceChildren();
  if (!id || !method) return;
  try {
    const result = await api(`/api/datasets/${encodeURIComponent(id)}/words?method=${encodeURIComponent(method)}&top=15`);
    for (const [label, words] of Object.entries(result.labels)) {
      box.append(element("h3", `toward ${label}`));
      const table = element("table");
      const head = element("tr");
      head.append(element("th", "word"), element("th", "times it pushes"), element("th", "mean"), element("th", "total"));
      table.append(head);
      for (const word of words) {
        const row = element("tr");
        row.append(element("td", word.word), element("td", word.count), element("td", word.mean.toFixed(4)),
                   element("td", word.total.toFixed(4)));
        table.append(row);
      }
      box.append(table);
    }
  } catch (error) { showError(error.message); }
}

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  showError("");
  const body = { model: currentModel().name, name: file.name, text: await file.text(),
                 methods: request().methods, options: changedOptions() };
  try {
    let job = await api("/api/datasets", body);
    const bar = $("upload-progress");
    bar.hidden = false;
    while (!job.finished) {
      bar.max = job.total;
      bar.value = job.done;
      await new Promise((resolve) => setTimeout(resolve, 300));
      job = await api(`/api/jobs/${job.job}`);
    }
    bar.hidden = true;
    if (job.error) throw new Error(job.error);
    await loadDatasets(job.dataset);
  } catch (error) { showError(error.message); }
}

// ------------------------------------------------------------------ start
function switchTab(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.tab === name);
  $("explain-tab").hidden = name !== "explain";
  $("data-tab").hidden = name !== "data";
  if (name === "data") loadDatasets();
}

async function start() {
  try {
    const [models, methods] = await Promise.all([api("/api/models"), api("/api/methods")]);
    fillModels(models);
    fillMethods(methods);
    modelChanged();
  } catch (error) { showError(error.message); return; }
  $("explain-form").addEventListener("submit", explain);
  $("save-report").addEventListener("click", saveReport);
  for (const id of ["layer", "head", "attention-mode"]) $(id).addEventListener("change", drawAttention);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => switchTab(tab.dataset.tab));
  $("dataset").addEventListener("change", () => loadDatasets($("dataset").value));
  for (const id of ["filter-label", "filter-correct"]) $(id).addEventListener("change", loadRows);
  $("filter-word").addEventListener("input", loadRows);
  $("words-method").addEventListener("change", loadWords);
  $("upload").addEventListener("change", upload);
  for (const header of $("rows").querySelectorAll("th[data-sort]")) {
    header.addEventListener("click", () => {
      state.order = state.sort === header.dataset.sort && state.order === "asc" ? "desc" : "asc";
      state.sort = header.dataset.sort;
      loadRows();
    });
  }
  document.body.dataset.ready = "true";
}

start();

// Attention of the EXPLAINED text (kept with the result, not the text now in the box): one head at
// a time from /api/attention (lines, exBERT's view, or the matrix), and every layer x head at a
// glance from /api/attention/overview (bertviz's model view); one purple scale throughout.
import { api } from "./api.js";
import { $, PURPLE, activateOnKeys, announce, css, element, paint, purple, setText, svg } from "./dom.js";

const THUMB_PIXELS = 64;  // a thumbnail's width and height

/** The attention view; `show(result)` after every finished explanation. */
export function setupAttention(session) {
  let explained = null;  // {model, text, pair} of the result shown
  let head = null;       // the /api/attention answer drawn
  let focus = null;      // the token whose lines alone are drawn
  let asked = 0;         // the latest head request (older answers are dropped)

  function body(extra = {}) {
    const request = { model: explained.model, text: explained.text, ...extra };
    if (explained.pair) request.pair = explained.pair;
    return request;
  }

  function fill(id, count) {
    const keep = $(id).value;
    $(id).replaceChildren(...Array.from({ length: count }, (_, i) => element("option", i + 1, { value: i })));
    if (keep && Number(keep) < count) $(id).value = keep;
  }

  function show(result) {
    explained = { model: result.model, text: result.text, pair: result.pair };
    const model = session.models.find((m) => m.name === result.model);
    fill("layer", model.layers);
    fill("head", model.heads);
    focus = null;
    session.attentionShown = null;
    $("attention-view").hidden = false;
    $("attention-note").textContent = "";
    $("overview").replaceChildren();
    $("attention").replaceChildren();
    if (result.record.tokens && result.record.tokens.length > model.max_positions) {  // no one attention map
      head = null;
      setText($("attention-note"), `The attention view needs a text that fits the model's ${model.max_positions} `
              + `positions; this one has ${result.record.tokens.length} tokens.`);
      return;
    }
    loadHead().then((ok) => { if (ok) loadOverview(); });
  }

  async function loadHead() {
    if (!explained) return false;
    const layer = Number($("layer").value);
    const index = Number($("head").value);
    const mine = ++asked;
    try {
      const answer = await api("/api/attention", body({ layer, head: index }));
      if (mine !== asked) return false;
      head = answer;
      session.attentionShown = { layer, head: index, tokens: answer.tokens, attention: answer.attention };
      draw();
      return true;
    } catch (error) {  // e.g. a text longer than the model's positions has no single attention map
      if (mine !== asked) return false;
      head = null;
      session.attentionShown = null;
      $("attention").replaceChildren();
      setText($("attention-note"), error.reason || error.message);
      return false;
    }
  }

  function choose(i) {
    focus = focus === i ? null : i;
    draw();
    const token = $("attention").querySelector(`text.attention-from[data-index='${i}']`);
    if (token) token.focus();
  }

  function draw() {
    const box = $("attention");
    box.replaceChildren();
    if (!head) return;
    const { tokens, attention: matrix } = head;
    box.dataset.layer = String(head.layer);
    box.dataset.head = String(head.head);
    if ($("attention-mode").value === "matrix") {
      const cell = 16, left = 100, top = 100;
      const image = svg("svg", { width: left + cell * tokens.length, height: top + cell * tokens.length,
                                 role: "img", "aria-label": `attention of layer ${head.layer + 1}, head ${head.head + 1}` });
      tokens.forEach((token, i) => {
        image.append(svg("text", { x: left - 4, y: top + cell * i + 12, "text-anchor": "end", "font-size": 12 }, token));
        image.append(svg("text", { x: 0, y: 0, "font-size": 12,
          transform: `translate(${left + cell * i + 11},${top - 4}) rotate(-60)` }, token));
        matrix[i].forEach((value, j) => {
          const rect = svg("rect", { x: left + cell * j, y: top + cell * i, width: cell - 1, height: cell - 1,
                                     fill: css(purple(value)), class: "attention-cell" });
          rect.append(svg("title", {}, `${token} → ${tokens[j]}: ${value.toFixed(3)}`));
          image.append(rect);
        });
      });
      box.append(image);
      return;
    }
    const row = 20, width = 460;
    const image = svg("svg", { width, height: row * tokens.length + 10 });
    tokens.forEach((token, i) => {
      const from = svg("text", { x: 120, y: row * i + 15, "text-anchor": "end", "font-size": 13, class: "attention-from",
                                 "data-index": i, tabindex: 0, role: "button",
                                 "aria-pressed": String(focus === i) }, token);
      from.addEventListener("click", () => choose(i));
      activateOnKeys(from, () => choose(i));
      if (focus === i) from.setAttribute("font-weight", "bold");
      image.append(from, svg("text", { x: width - 120, y: row * i + 15, "font-size": 13 }, token));
    });
    tokens.forEach((_, i) => {
      if (focus !== null && focus !== i) return;
      matrix[i].forEach((value, j) => {
        if (value < 0.02) return;
        image.append(svg("line", { x1: 126, y1: row * i + 11, x2: width - 126, y2: row * j + 11,
                                   stroke: css(PURPLE), "stroke-opacity": Math.min(1, value).toFixed(3),
                                   "stroke-width": (1 + 3 * value).toFixed(2) }));
      });
    });
    box.append(image);
  }

  async function loadOverview() {
    if (!explained) return;
    const box = $("overview");
    box.replaceChildren(element("p", "loading every head…", { class: "small" }));
    const mine = explained;
    try {
      const overview = await api("/api/attention/overview", body());
      if (mine !== explained) return;
      drawOverview(overview);
    } catch (error) {
      if (mine === explained) box.replaceChildren(element("p", error.reason || error.message, { class: "small" }));
    }
  }

  function thumbnail(matrix, size) {
    const canvas = element("canvas", null, { width: THUMB_PIXELS, height: THUMB_PIXELS });
    const context = canvas.getContext("2d");
    const cell = THUMB_PIXELS / size;
    context.fillStyle = "#fff";
    context.fillRect(0, 0, THUMB_PIXELS, THUMB_PIXELS);
    matrix.forEach((row, i) => row.forEach((value, j) => {
      context.fillStyle = css(purple(value));
      context.fillRect(j * cell, i * cell, Math.ceil(cell), Math.ceil(cell));
    }));
    return canvas;
  }

  function open(layer, index) {
    $("layer").value = String(layer);
    $("head").value = String(index);
    focus = null;
    loadHead().then(() => {
      $("attention-view").scrollIntoView({ block: "start" });
      announce(`Layer ${layer + 1}, head ${index + 1} opened.`);
    });
  }

  function drawOverview(overview) {
    const box = $("overview");
    box.replaceChildren();
    const table = element("table", null, { class: "overview" });
    table.append(element("caption", `${overview.layers} layers × ${overview.heads} heads; each thumbnail `
      + `${overview.size} × ${overview.size}` + (overview.size < overview.tokens.length ? " (token spans pooled)" : "")));
    const head = element("tr");
    head.append(element("th", "layer \\ head", { scope: "col" }));
    for (let h = 0; h < overview.heads; h += 1) head.append(element("th", h + 1, { scope: "col" }));
    table.append(head);
    overview.thumbnails.forEach((heads, layer) => {
      const row = element("tr");
      row.append(element("th", layer + 1, { scope: "row" }));
      heads.forEach((matrix, index) => {
        const button = element("button", null, { type: "button", class: "thumb", "data-layer": layer,
                                                 "data-head": index, "aria-label": `layer ${layer + 1}, head ${index + 1}`,
                                                 title: `layer ${layer + 1}, head ${index + 1}` });
        button.append(thumbnail(matrix, overview.size));
        button.addEventListener("click", () => open(layer, index));
        const cell = element("td");
        cell.append(button);
        row.append(cell);
      });
      table.append(row);
    });
    const scroll = element("div", null, { class: "scroll" });
    scroll.append(table);
    box.append(scroll);
    const legend = element("p", null, { class: "small" });
    legend.append("attention weight: ", paint(element("span", "0", { class: "swatch" }), purple(0)), " ",
                  paint(element("span", "0.5", { class: "swatch" }), purple(0.5)), " ",
                  paint(element("span", "1", { class: "swatch" }), purple(1)));
    box.append(legend);
  }

  for (const id of ["layer", "head"]) $(id).addEventListener("change", () => { focus = null; loadHead(); });
  $("attention-mode").addEventListener("change", draw);
  return { show };
}

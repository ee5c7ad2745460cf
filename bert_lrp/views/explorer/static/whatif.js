// The what-if: change the explained text (type, or click a word to remove or replace it) and see the
// prediction and relevance of the change next to the original's, the changed words outlined.
import { api } from "./api.js";
import { $, announce, setText, element, paint, relevanceColour, showError, symmetricScale } from "./dom.js";
import { methodTitle } from "./form.js";
import { mainView } from "./results.js";

/** Which words of `after` are not in a longest common subsequence with `before` (and vice versa). */
export function changedWords(before, after) {
  const a = before.map((w) => w.toLowerCase()), b = after.map((w) => w.toLowerCase());
  const table = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i -= 1) {
    for (let j = b.length - 1; j >= 0; j -= 1) {
      table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
    }
  }
  const removed = new Set(a.map((_, i) => i)), added = new Set(b.map((_, j) => j));
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) { removed.delete(i); added.delete(j); i += 1; j += 1; }
    else if (table[i + 1][j] >= table[i][j + 1]) i += 1;
    else j += 1;
  }
  return { removed, added };
}

/** The what-if view; `show(result)` after every finished explanation. */
export function setupWhatIf(session) {
  let original = null;  // the result the changes are compared with
  let chosen = null;    // {start, end, word} of the word clicked in the changed text
  let running = false;

  function show(result) {
    original = result;
    $("whatif").hidden = false;
    $("whatif-text").value = result.text;
    $("whatif-pair").value = result.pair || "";
    $("whatif-pair-box").hidden = !result.pair;
    $("whatif-result").replaceChildren();
    closeEditor();
    drawWords();
  }

  function drawWords() {
    const box = $("whatif-words");
    box.replaceChildren();
    for (const match of $("whatif-text").value.matchAll(/\S+/g)) {
      const word = { start: match.index, end: match.index + match[0].length, word: match[0] };
      const button = element("button", match[0], { type: "button", class: "whatif-word", "data-start": word.start });
      button.addEventListener("click", () => openEditor(word));
      box.append(button, " ");
    }
  }

  function openEditor(word) {
    chosen = word;
    setText($("whatif-chosen"), word.word);
    $("whatif-replacement").value = word.word;
    $("whatif-editor").hidden = false;
    $("whatif-replacement").focus();
    $("whatif-replacement").select();
  }

  function closeEditor() {
    chosen = null;
    $("whatif-editor").hidden = true;
  }

  function edit(replacement) {
    if (!chosen) return;
    const text = $("whatif-text").value;
    let { start, end } = chosen;
    if (!replacement) {  // remove the word and one space next to it
      if (text[end] === " ") end += 1; else if (start > 0 && text[start - 1] === " ") start -= 1;
    }
    $("whatif-text").value = text.slice(0, start) + replacement + text.slice(end);
    closeEditor();
    drawWords();
    compare();
  }

  async function compare() {
    if (!original || running) return;
    running = true;
    $("whatif-run").disabled = true;
    showError("");
    const body = { ...original.body, text: $("whatif-text").value };
    if ($("whatif-pair").value.trim()) body.pair = $("whatif-pair").value; else delete body.pair;
    announce("Explaining the changed text…");
    try {
      const changed = await api("/api/explain", body);
      drawComparison(original.record, changed.examples[0]);
      const record = changed.examples[0];
      announce(`Changed text: ${record.prediction} (${record.probabilities[record.prediction].toFixed(3)}); `
               + `original: ${original.record.prediction}.`);
    } catch (error) {
      showError(error.message);
      announce("The changed text was not explained.");
    } finally {
      running = false;
      $("whatif-run").disabled = false;
    }
  }

  function side(title, record, view, marked, markClass, scales) {
    const column = element("div", null, { class: "side", "data-side": markClass === "changed" ? "changed" : "original" });
    column.append(element("h3", title));
    const prediction = element("p", null, { class: "prediction" });
    prediction.append(element("b", "Prediction: "), element("span", record.prediction, { class: "label-name" }));
    column.append(prediction);
    for (const [label, probability] of Object.entries(record.probabilities)) {
      const bar = element("div", null, { class: "prob" });
      const name = element("span", label, { class: "prob-label" });
      const fill = element("span", null, { class: "bar" });
      fill.style.width = `${Math.max(1, Math.round(probability * 200))}px`;
      bar.append(name, fill, probability.toFixed(3));
      column.append(bar);
    }
    for (const [method, scale] of Object.entries(scales)) {
      if (!view.scores[method]) continue;
      column.append(element("h4", methodTitle(session, method)));
      const line = element("div", null, { class: "text" });
      view.words.forEach((word, i) => {
        const score = view.scores[method].words[i];
        const span = element("span", word.word, { class: "w", title: `${score >= 0 ? "+" : ""}${score.toFixed(4)}` });
        if (marked.has(i)) {
          span.classList.add(markClass);
          span.title += markClass === "changed" ? " (changed)" : " (removed in the change)";
        }
        line.append(paint(span, relevanceColour(score, scale)), " ");
      });
      column.append(line);
    }
    return column;
  }

  function drawComparison(before, after) {
    const a = mainView(before), b = mainView(after);
    const { removed, added } = changedWords(a.words.map((w) => w.word), b.words.map((w) => w.word));
    const scales = {};  // each method on one scale over both texts, so that the colours compare
    for (const method of a.methods || before.methods) {
      if (!a.scores[method] || !b.scores[method]) continue;
      scales[method] = symmetricScale([...a.scores[method].words, ...b.scores[method].words]);
    }
    const columns = element("div", null, { class: "side-by-side" });
    columns.append(side("Original", before, a, removed, "removed", scales),
                   side("Changed", after, b, added, "changed", scales));
    const delta = (after.probabilities[before.prediction] ?? 0) - before.probabilities[before.prediction];
    const summary = element("p", `${before.prediction}: ${before.probabilities[before.prediction].toFixed(3)} → `
      + `${(after.probabilities[before.prediction] ?? 0).toFixed(3)} (${delta >= 0 ? "+" : ""}${delta.toFixed(3)})`
      + (after.prediction !== before.prediction ? `; the prediction flips to ${after.prediction}` : ""),
      { class: "whatif-summary" });
    $("whatif-result").replaceChildren(summary, columns);
  }

  $("whatif-text").addEventListener("input", () => { closeEditor(); drawWords(); });
  $("whatif-run").addEventListener("click", compare);
  $("whatif-replace").addEventListener("click", () => edit($("whatif-replacement").value.trim()));
  $("whatif-remove").addEventListener("click", () => edit(""));
  $("whatif-close").addEventListener("click", closeEditor);
  $("whatif-replacement").addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); edit($("whatif-replacement").value.trim()); }
    if (event.key === "Escape") closeEditor();
  });
  return { show, compare };
}

// Masked words (a masked LM): click a word to mask it; the top predictions there, at the output
// and after every layer (the logit lens).
import { api } from "./api.js";
import { $, activateOnKeys, announce, element, showError } from "./dom.js";
import { currentModel } from "./form.js";

/** The text's words, each clickable (and focusable: Enter or Space masks it). */
export function showMaskWords(session) {
  const box = $("mask-words");
  box.replaceChildren();
  $("mask-result").replaceChildren();
  const words = $("text").value.split(/\s+/).filter((w) => w);
  words.forEach((word, i) => {
    const span = element("span", word, { class: "mask-word", "data-index": i, tabindex: 0, role: "button" });
    span.addEventListener("click", () => maskWord(session, words, i));
    activateOnKeys(span, () => maskWord(session, words, i));
    box.append(span, " ");
  });
  announce(`${words.length} words: pick one to mask.`);
}

async function maskWord(session, words, index) {
  const mask = currentModel(session).mask_token;
  const text = words.map((w, i) => (i === index ? mask : w)).join(" ");
  showError("");
  try {
    const report = await api("/api/mask", { model: currentModel(session).name, text, top_k: 5 });
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
    announce(`Predictions for word ${index + 1} shown.`);
  } catch (error) { showError(error.message); }
}

// The explorer's page: plain JavaScript modules, no framework, no build step.
// Everything a user or a data file provides is put into the page with textContent (dom.js); the only
// HTML inserted as HTML is the server's heatmap component (views.html), which escapes every text.
// The modules: form (the explain form), explain (plan, streamed run, cancel, report), results (grid,
// agreement, heatmaps), whatif, attention (one head, all heads), mask, dataset, tabs; api and dom
// under them all.
import { api } from "./api.js";
import { $, showError } from "./dom.js";
import { setupAttention } from "./attention.js";
import { setupDataset } from "./dataset.js";
import { setupExplain } from "./explain.js";
import { currentModel, fillMethods, fillModels, methodBoxes, modelChanged, presetChoices } from "./form.js";
import { showMaskWords } from "./mask.js";
import { setupTabs } from "./tabs.js";
import { setupWhatIf } from "./whatif.js";

async function start() {
  // what the page knows: the models and methods, the result shown, the run under way, the head shown
  const session = { models: [], methods: [], result: null, running: null, attentionShown: null };
  try {
    const [models, methods] = await Promise.all([api("/api/models"), api("/api/methods")]);
    fillModels(session, models);
    fillMethods(session, methods);
    methodBoxes($("upload-methods"), methods, "upload-method-", methods.defaults);  // the upload's own choice
    presetChoices($("upload-preset"), methods);
    modelChanged(session);
  } catch (error) { showError(error.message); return; }

  const attention = setupAttention(session);
  const whatIf = setupWhatIf(session);
  const explain = setupExplain(session, (result) => { attention.show(result); whatIf.show(result); });
  const dataset = setupDataset(session);
  setupTabs($("tabs"), (name) => { if (name === "data") dataset.open(); });

  function submit() {
    if (currentModel(session).task === "masked_lm") showMaskWords(session); else explain.run();
  }
  $("explain-form").addEventListener("submit", (event) => { event.preventDefault(); submit(); });
  $("model").addEventListener("change", () => modelChanged(session));
  document.addEventListener("keydown", (event) => {  // Ctrl+Enter (Cmd+Enter on a Mac) explains
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || $("explain-tab").hidden) return;
    event.preventDefault();
    if ($("whatif").contains(event.target)) whatIf.compare(); else submit();
  });
  explain.preview();
  document.body.dataset.ready = "true";
}

start();

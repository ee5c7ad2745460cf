// Explaining the form's text: the estimated cost before (/api/plan), the run streamed group by group
// (/api/explain/stream) with a progress bar, remaining time and Cancel; the result and its report.
import { ApiError, api, download, stream } from "./api.js";
import { $, announce, element, setText, showError } from "./dom.js";
import { currentModel, explainBody } from "./form.js";
import { clearResult, headingOf, mergeRecords, showAgreement, showGrid, showHeatmaps } from "./results.js";

const PLAN_DELAY_MS = 400;

/** The heading of a block of the server's heatmaps under the result's own heading (the text). */
const heatmapTitle = (label) => (label ? `Relevance for “${label}”, per method` : "Relevance per method");

function seconds(value) {
  if (value === null || value === undefined) return null;
  return value < 1 ? "under a second" : value < 90 ? `about ${Math.round(value)} s` : `about ${Math.round(value / 60)} min`;
}

/** The estimated cost of a plan (/api/plan's answer) as one line, and a warning over the budget. */
export function showPlan(plan, refusal = null) {
  const box = $("plan");
  box.replaceChildren();
  box.classList.toggle("warning", Boolean(refusal) || (plan && !plan.within_budget));
  if (!plan && !refusal) return;
  if (plan) {
    const time = seconds(plan.seconds);
    const groups = plan.groups.length === 1 ? "one pass" : `${plan.groups.length} runs`;
    box.append(`Estimated cost: ${plan.rows.toLocaleString()} forward rows × ${plan.tokens.toLocaleString()} tokens `
               + `= ${plan.cost.toLocaleString()} (budget ${plan.budget.toLocaleString()}), ${groups}, `
               + (time ? `${time}.` : "time not known before the first run."));
    if (!plan.within_budget) {
      box.append(element("br"), element("strong", "Over the server's budget: "),
                 plan.message || plan.error || "the server will refuse this request; choose fewer methods, samples or steps.");
    }
  }
  if (refusal) box.append(element("br"), element("strong", "Refused: "), refusal);
}

/** The explain view: plan preview, streamed run, cancel, report. `onResult(result)` after a finished run. */
export function setupExplain(session, onResult) {
  let planTimer = null;
  let planAsked = 0;
  let lastPlan = null;  // the latest estimate shown (a refusal is shown with it)

  async function preview() {
    const model = currentModel(session);
    if (model.task === "masked_lm" || !$("text").value.trim()) { showPlan(null); return; }
    const asked = ++planAsked;
    try {
      const plan = await api("/api/plan", explainBody(session));
      if (asked === planAsked && !session.running) showPlan(lastPlan = plan);
    } catch (error) {
      if (asked === planAsked && !session.running) showPlan(lastPlan = null, error.message);
    }
  }

  function schedulePreview() {
    clearTimeout(planTimer);
    planTimer = setTimeout(preview, PLAN_DELAY_MS);
  }

  function begin(body) {
    const controller = new AbortController();
    session.running = controller;
    $("explain-button").disabled = true;
    $("cancel").disabled = false;
    $("save-report").disabled = true;
    $("progress-box").hidden = false;
    $("progress").value = 0;
    $("remaining").textContent = "starting…";
    $("result").dataset.state = "running";
    $("result").setAttribute("aria-busy", "true");
    clearResult();
    session.result = null;
    $("result-title").hidden = false;
    setText($("result-title"), headingOf(body.text, body.pair));
    announce("Explaining…");
    return controller;
  }

  function end(state) {
    session.running = null;
    $("explain-button").disabled = false;
    $("cancel").disabled = true;
    $("progress-box").hidden = true;
    $("result").dataset.state = state;
    $("result").removeAttribute("aria-busy");
  }

  function progress(done, total, started, plan) {
    $("progress").max = Math.max(1, total);
    $("progress").value = done;
    const elapsed = (performance.now() - started) / 1000;
    const left = done > 0 ? elapsed / done * (total - done)
      : plan && plan.seconds !== null ? Math.max(0, plan.seconds - elapsed) : null;
    $("remaining").textContent = `${done.toLocaleString()} of ${total.toLocaleString()} rows`
      + (left === null ? "" : `, ${seconds(left)} left`);
  }

  function showPartial(explained, payloads) {
    const record = mergeRecords(payloads.map((p) => p.examples[0]));
    showGrid($("grid"), session, record, null);
    const box = $("heatmaps");
    box.replaceChildren();
    for (const payload of payloads) {
      const group = element("div", null, { class: "group" });
      showHeatmaps(group, payload.views.html, heatmapTitle);
      box.append(group);
    }
  }

  function showDone(explained, payload) {
    const record = payload.examples[0];
    const views = payload.views || {};
    showGrid($("grid"), session, record, views.agreement);
    showAgreement($("agreement"), session, views.agreement);
    showHeatmaps($("heatmaps"), views.html || "", heatmapTitle);
    session.result = { ...explained, payload, record };
    $("save-report").disabled = false;
    const probability = record.probabilities ? record.probabilities[record.prediction] : null;
    announce(`Explained: ${record.prediction}${probability ? ` (${probability.toFixed(3)})` : ""}.`);
    onResult(session.result);
  }

  async function run() {
    if (session.running) return;  // a second click while running does nothing
    showError("");
    const body = explainBody(session);
    const explained = { model: body.model, text: body.text, pair: body.pair || null, body };
    const controller = begin(body);
    const started = performance.now();
    const payloads = [];
    let plan = null;
    let state = "failed";
    try {
      await stream("/api/explain/stream", body, (event) => {
        if (event.event === "plan") {
          plan = lastPlan = event;
          showPlan(event);
          progress(0, event.rows, started, plan);
        } else if (event.event === "progress") {
          progress(event.rows_done, event.rows_total, started, plan);
        } else if (event.event === "group") {
          payloads.push(event.payload);
          showPartial(explained, payloads);
          announce(`Explaining… ${event.methods.join(", ")} done.`);
        } else if (event.event === "done") {
          showDone(explained, event.payload);
          state = "done";
        } else if (event.event === "error") {
          showError(new ApiError(event.error, event.status, event.field).message);
        } else if (event.event === "cancelled") {
          state = "cancelled";
        }
      }, controller.signal);
    } catch (error) {
      if (error.name === "AbortError") {
        state = "cancelled";
      } else {
        showError(error.message);
        if (error.status === 413) showPlan(lastPlan, error.message);
      }
    } finally {
      end(state);
    }
    if (state === "cancelled") {
      announce(`Cancelled${payloads.length ? ` after ${payloads.length} of ${plan ? plan.groups.length : "?"} runs` : ""}.`);
    } else if (state === "failed") {
      announce("Not explained.");
    }
  }

  function cancel() {
    if (session.running) session.running.abort();
  }

  async function saveReport() {
    const result = session.result;
    if (!result) return;
    const views = result.payload.views || {};
    const body = {
      examples: [result.record],
      views: [{ layers: views.layers && Object.keys(views.layers).length ? views.layers : null,
                agreement: views.agreement || null, attention: session.attentionShown || null }],
      title: `bert-lrp: ${headingOf(result.text, result.pair).slice(0, 120)}`,
    };
    try {
      const blob = await download("/api/report", body);
      const link = element("a", null, { download: "bert-lrp-report.html" });
      link.href = URL.createObjectURL(blob);
      link.click();
      URL.revokeObjectURL(link.href);
      announce("Report saved.");
    } catch (error) { showError(error.message); }
  }

  $("explain-form").addEventListener("input", schedulePreview);
  $("explain-form").addEventListener("change", schedulePreview);
  $("model").addEventListener("change", schedulePreview);
  $("cancel").addEventListener("click", cancel);
  $("save-report").addEventListener("click", saveReport);
  return { run, cancel, preview };
}

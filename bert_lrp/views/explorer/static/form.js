// The explain form: the model, the methods and their options (generated from /api/methods), the
// LRP preset, the target; and the request body they make.
import { $, element } from "./dom.js";

/** The chosen model's entry of /api/models. */
export function currentModel(session) {
  return session.models.find((m) => m.name === $("model").value) || session.models[0];
}

/** The method's title from /api/methods ("LRP", "GI (gradient x input)"), else its name. */
export function methodTitle(session, name) {
  const method = session.methods.find((m) => m.name === name);
  return method ? method.title : name;
}

export function fillModels(session, info) {
  session.models = info.models;
  for (const model of info.models) $("model").append(element("option", model.name, { value: model.name }));
  $("model").value = info.default;
}

/** One labelled check box per method (the LRP presets are chosen apart) into `fieldset`. */
export function methodBoxes(fieldset, info, prefix, checked) {
  for (const method of info.methods.filter((m) => !m.name.startsWith("lrp:"))) {
    const box = element("input", null, { type: "checkbox", value: method.name, id: `${prefix}${method.name}` });
    box.checked = checked.includes(method.name);
    const label = element("label", null, { title: method.title, for: box.id });
    label.append(" " + method.name);
    fieldset.append(box, label);
  }
}

/** The LRP presets of the "rule" option into `select`, its default chosen. */
export function presetChoices(select, info) {
  const rule = info.methods.flatMap((m) => m.options).find((o) => o.name === "rule");
  for (const preset of (rule && rule.choices) || []) select.append(element("option", preset, { value: preset }));
  if (rule) select.value = rule.default;
}

export function fillMethods(session, info) {
  session.methods = info.methods;
  methodBoxes($("methods"), info, "method-", info.defaults);
  presetChoices($("preset"), info);
  const seen = new Set(["rule"]);
  for (const method of info.methods) {
    for (const option of method.options) {
      if (seen.has(option.name)) continue;
      seen.add(option.name);
      $("options").append(optionInput(option));
    }
  }
}

function optionInput(option) {
  const id = `option-${option.name}`;
  let input;
  if (option.choices) {
    input = element("select", null, { id });
    for (const choice of option.choices) input.append(element("option", choice, { value: choice }));
  } else if (option.kind === "bool") {
    input = element("input", null, { type: "checkbox", id });
  } else {
    input = element("input", null, { type: "number", id });
    if (option.minimum !== null) input.min = option.minimum;
    if (option.maximum !== null) input.max = option.maximum;
    input.step = option.kind === "int" ? "1" : "any";
  }
  input.dataset.option = option.name;
  input.dataset.kind = option.kind;
  if (option.kind === "bool") input.checked = Boolean(option.default); else input.value = option.default;
  input.dataset.default = String(option.default);
  const row = element("div", null, { class: "option" });
  row.append(element("label", option.name, { for: id, title: option.help }), " ", input);
  return row;
}

/** Called when another model is picked: its labels as targets, the views its task has. */
export function modelChanged(session) {
  const model = currentModel(session);
  const target = $("target");
  target.replaceChildren(element("option", "predicted label", { value: "" }), element("option", "all labels", { value: "all" }));
  for (const label of model.labels) target.append(element("option", label, { value: label }));
  $("word-box").hidden = model.task !== "token";
  const masked = model.task === "masked_lm";
  $("mask-tab").hidden = !masked;
  for (const id of ["methods", "preset", "target"]) $(id).disabled = masked;
  $("explain-button").textContent = masked ? "Show words" : "Explain";
  // the tuned composite only for a model with an lrp_composite.json (bert-lrp tune-lrp)
  for (const select of [$("preset"), $("upload-preset")]) {
    const tuned = [...select.options].find((option) => option.value === "tuned");
    if (!tuned) continue;
    tuned.disabled = !model.tuned_lrp;
    if (tuned.disabled && select.value === "tuned") select.value = "attnlrp";
  }
}

/** The method options that differ from their defaults, and the LRP preset. */
export function changedOptions() {
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

/** The checked methods of a fieldset, in its order. */
export function checkedMethods(fieldset) {
  return [...fieldset.querySelectorAll("input:checked")].map((box) => box.value);
}

/** The explain body of the form (`text`/`pair` override the boxes: the what-if's changed text). */
export function explainBody(session, text = $("text").value, pair = $("pair").value) {
  const model = currentModel(session);
  const body = { model: model.name, text, methods: checkedMethods($("methods")), options: changedOptions(),
                 target: $("target").value || null };
  if (pair && pair.trim()) body.pair = pair;
  if (model.task === "token") body.word = $("word").value || null;
  return body;
}

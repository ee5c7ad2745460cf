// Building the page safely: everything a user or a data file provides goes in with textContent,
// control and bidi characters shown as visible escapes; the colour scales of the page.

export const $ = (id) => document.getElementById(id);

// Control characters and bidi controls shown as visible escapes (\x1b, \u202e), as the command
// line and the server's component show them: a text can neither hide characters nor reorder a line.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u2028\u2029]/g;

/** The text with control and bidi characters replaced by visible escapes. */
export function visible(text) {
  return String(text).replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** A new HTML element with its text (as text, never markup) and attributes. */
export function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = visible(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

/** A new SVG element with its attributes and text. */
export function svg(tag, attributes = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = visible(text);
  return node;
}

/** Set a node's text (as text, with visible escapes). */
export function setText(node, text) { node.textContent = visible(text); }

/** Announce a message in the live status region (read out by screen readers). */
export function announce(message) { $("status").textContent = visible(message || ""); }

/** Show (or clear, with no message) the page's one error line. */
export function showError(message) { $("error").textContent = visible(message || ""); }

/** Enter and Space on a focusable non-button element do what a click does. */
export function activateOnKeys(node, action) {
  node.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      action(event);
    }
  });
}

/** A number with a sign and `digits` decimals: +0.57, -0.01. */
export function signed(value, digits = 2) { return `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(digits)}`; }

// ------------------------------------------------------------------ colours
// Relevance: red for the explained label, blue against, white at 0 (the server's heatmaps' scale).
// Attention: one purple, rgba(106, 61, 154, w) over white. The text on a coloured background is
// black or white, whichever has the higher contrast ratio (>= 4.5:1 for every colour of both scales).

function channel(value) {
  const c = value / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
}

/** WCAG relative luminance of an [r, g, b] colour (0..255 channels). */
export function luminance([r, g, b]) { return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b); }

/** WCAG contrast ratio of two [r, g, b] colours (1..21). */
export function contrast(a, b) {
  const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (light + 0.05) / (dark + 0.05);
}

/** Black or white, whichever reads better on `background` ([r, g, b]). */
export function textColour(background) {
  return contrast(background, [0, 0, 0]) >= contrast(background, [255, 255, 255]) ? [0, 0, 0] : [255, 255, 255];
}

/** The relevance colour of `score` on a symmetric scale of +-`scale`. */
export function relevanceColour(score, scale) {
  const x = Math.min(1, Math.abs(score) / (scale || 1));
  const fade = Math.round(255 * (1 - x));
  return score >= 0 ? [255, fade, fade] : [fade, fade, 255];
}

export const PURPLE = [106, 61, 154];

/** The attention colour of weight `w` (0..1): PURPLE with opacity w, over white. */
export function purple(w) {
  const a = Math.max(0, Math.min(1, w));
  return PURPLE.map((c) => Math.round(255 + (c - 255) * a));
}

export const css = ([r, g, b]) => `rgb(${r}, ${g}, ${b})`;

/** Colour a node's background and pick its text colour from it. */
export function paint(node, background) {
  node.style.backgroundColor = css(background);
  node.style.color = css(textColour(background));
  return node;
}

/** The largest absolute value (1 when every value is 0). */
export function symmetricScale(values) {
  const top = Math.max(0, ...values.filter(Number.isFinite).map(Math.abs));
  return top > 0 ? top : 1;
}

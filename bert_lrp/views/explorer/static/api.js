// The explorer's JSON API, as the page calls it: JSON bodies (always Content-Type: application/json),
// refusals as ApiError (status, one line, the field at fault), streamed answers read line by line.

/** A refused request: the server's one line, its HTTP status and the field at fault (or null). */
export class ApiError extends Error {
  constructor(message, status, field) {
    super(field ? `${message} (${field})` : message);
    this.status = status;
    this.field = field || null;
    this.reason = message;
  }
}

async function refusal(response) {
  const type = response.headers.get("Content-Type") || "";
  const payload = type.includes("application/json") ? await response.json() : null;
  return new ApiError(payload && payload.error ? payload.error : `HTTP ${response.status}`, response.status,
                      payload && payload.field);
}

function options(body, method, signal) {
  const init = { method: method || (body === undefined ? "GET" : "POST"), signal };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  return init;
}

/** GET `path` (no body) or POST `body` as JSON; the JSON answer (null for 204). */
export async function api(path, body, { method, signal } = {}) {
  const response = await fetch(path, options(body, method, signal));
  if (!response.ok) throw await refusal(response);
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("application/json") ? response.json() : response.text();
}

/** POST `body` and read the answer as a file (a Blob), e.g. the HTML report. */
export async function download(path, body) {
  const response = await fetch(path, options(body));
  if (!response.ok) throw await refusal(response);
  return response.blob();
}

/**
 * POST `body` to a streaming endpoint (application/x-ndjson) and call `onEvent(event)` for every
 * line, in order, as it arrives. A refusal before the stream starts (a 4xx JSON answer) is an
 * ApiError; aborting `signal` stops reading (the server sees the disconnect and cancels).
 */
export async function stream(path, body, onEvent, signal) {
  const response = await fetch(path, options(body, "POST", signal));
  if (!response.ok) throw await refusal(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    pending += decoder.decode(value || new Uint8Array(), { stream: !done });
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines) if (line.trim()) onEvent(JSON.parse(line));
    if (done) break;
  }
  if (pending.trim()) onEvent(JSON.parse(pending));
}

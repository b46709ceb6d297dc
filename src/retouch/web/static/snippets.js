// The request as code to run elsewhere: a curl command and the Python SDK. The key is
// written as the RETOUCH_API_KEY variable, never as itself.

import { apiUrl } from "./api.js";
import { byId, replace, show } from "./dom.js";
import { toJson } from "./schema_form.js";

/** `text` inside single quotes for a POSIX shell: each ' becomes '\''. */
export function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

/** A Python literal of a JSON value (True/False/None; BigInts as their digits). */
export function pythonLiteral(value, indent = 0) {
  const pad = "    ".repeat(indent);
  const inner = "    ".repeat(indent + 1);
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  if (typeof value === "string") return JSON.stringify(value); // its escapes are Python's too
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((item) => `${inner}${pythonLiteral(item, indent + 1)},`).join("\n")}\n${pad}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  const lines = entries.map(
    ([key, item]) => `${inner}${JSON.stringify(key)}: ${pythonLiteral(item, indent + 1)},`,
  );
  return `{\n${lines.join("\n")}\n${pad}}`;
}

/** The server's base URL as a client needs it: the origin, with a path prefix if any. */
function serverBase() {
  return apiUrl("").href.replace(/\/$/, "");
}

export function curlCommand(endpointId, body) {
  const url = apiUrl(`v1/models/${endpointId}`).href;
  return [
    `curl -X POST "${url}" \\`,
    `  -H "Authorization: Bearer $RETOUCH_API_KEY" \\`,
    `  -H "Content-Type: application/json" \\`,
    `  -d ${shellQuote(toJson(body, 2))}`,
  ].join("\n");
}

export function pythonSnippet(endpointId, body) {
  return [
    "import os",
    "",
    "from retouch.client import Client",
    "",
    `with Client(${JSON.stringify(serverBase())}, os.environ["RETOUCH_API_KEY"]) as client:`,
    `    result = client.run(${JSON.stringify(endpointId)}, input=${pythonLiteral(body, 1)})`,
    "    print(result.images)",
  ].join("\n");
}

/** Selects an element's text, for a manual copy where the clipboard API is unavailable. */
function selectText(element) {
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

export class Snippets {
  constructor() {
    this.section = byId("snippets");
    this.caption = byId("snippets-caption");
    this.curl = byId("snippet-curl");
    this.python = byId("snippet-python");
    this.copyState = byId("snippet-copy-state");
    for (const [buttonId, target] of [
      ["copy-curl", this.curl],
      ["copy-python", this.python],
    ]) {
      byId(buttonId).addEventListener("click", () => this.copy(target));
    }
  }

  /** Shows `body` as it will be (sent: false) or was (sent: true) sent to `endpointId`. */
  render(endpointId, body, { sent = false } = {}) {
    show(this.section, Boolean(endpointId));
    if (!endpointId) return;
    replace(
      this.caption,
      sent ? "The request last sent, as code:" : "The request the form would send, as code:",
    );
    replace(this.curl, curlCommand(endpointId, body));
    replace(this.python, pythonSnippet(endpointId, body));
  }

  async copy(element) {
    const text = element.textContent;
    try {
      // Absent outside a secure context (plain http on another host than localhost).
      if (!navigator.clipboard) throw new Error("no clipboard");
      await navigator.clipboard.writeText(text);
      replace(this.copyState, "Copied.");
    } catch {
      selectText(element);
      replace(this.copyState, "Selected: press Ctrl+C (⌘C) to copy.");
    }
  }
}

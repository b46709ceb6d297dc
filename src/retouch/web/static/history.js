// This key's requests (GET v1/requests), newest first, and the inputs this browser sent for
// them: the API does not give a request's input back, so the page keeps its own copy (the
// last MAX_KEPT) in localStorage to show the prompt and offer "Edit again".

import { byId, formatTime, h, replace, show } from "./dom.js";

const INPUTS_PREFIX = "retouch.inputs.";
const MAX_KEPT = 50;
const PAGE_SIZE = 20;

/** Keeps what was sent for `requestId`: {endpoint, input, saved_at}. */
export function saveInputs(requestId, endpoint, input) {
  const text = JSON.stringify({ endpoint, input, saved_at: Date.now() }, (_key, value) =>
    typeof value === "bigint" ? value.toString() : value,
  );
  // Pruned first, so a full storage makes room for the newest; on a failure, once more
  // with only the newest few kept.
  for (const keep of [undefined, 5]) {
    try {
      pruneInputs(keep);
      localStorage.setItem(INPUTS_PREFIX + requestId, text);
      return;
    } catch {
      // storage full or disabled: the request works without it
    }
  }
}

/** What this browser sent for `requestId`, or null. */
export function loadInputs(requestId) {
  try {
    const text = localStorage.getItem(INPUTS_PREFIX + requestId);
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** Removes all but the newest `keep` stored inputs (room for one more by default). */
function pruneInputs(keep = MAX_KEPT - 1) {
  const kept = [];
  for (let index = 0; index < localStorage.length; index += 1) {
    const name = localStorage.key(index);
    if (!name?.startsWith(INPUTS_PREFIX)) continue;
    let savedAt = 0;
    try {
      savedAt = JSON.parse(localStorage.getItem(name))?.saved_at ?? 0;
    } catch {
      savedAt = 0;
    }
    kept.push({ name, savedAt });
  }
  kept.sort((a, b) => b.savedAt - a.savedAt);
  for (const { name } of kept.slice(keep)) localStorage.removeItem(name);
}

export class History {
  /** `api()` answers the current Api; `onOpen(requestId)` shows one in the job view. */
  constructor({ api, onOpen, onUnauthorized }) {
    this.api = api;
    this.onOpen = onOpen;
    this.onUnauthorized = onUnauthorized;
    this.body = byId("history-rows");
    this.empty = byId("history-empty");
    this.message = byId("history-message");
    this.moreButton = byId("history-more");
    this.table = byId("history-table");
    this.cursor = null;
    this.loading = null;
    this.moreButton.addEventListener("click", () => this.load(this.cursor));
    byId("history-refresh").addEventListener("click", () => this.refresh());
  }

  clear() {
    this.loading = null; // a page still coming for the previous key is dropped
    replace(this.body);
    this.cursor = null;
    show(this.moreButton, false);
    show(this.table, false);
    show(this.empty, true);
    replace(this.message);
  }

  /** The first page again (after a submit, or when a job ends). */
  refresh() {
    return this.load(null);
  }

  async load(cursor) {
    const api = this.api();
    if (!api) {
      this.clear();
      return;
    }
    const token = Symbol("history load");
    this.loading = token;
    this.moreButton.disabled = true;
    try {
      const page = await api.get("v1/requests", { query: { limit: PAGE_SIZE, cursor } });
      if (this.loading !== token) return; // a newer load has started
      const rows = page.requests.map((request) => this.row(request));
      if (cursor) this.body.append(...rows);
      else replace(this.body, rows);
      this.cursor = page.next_cursor ?? null;
      show(this.moreButton, Boolean(this.cursor));
      const any = this.body.children.length > 0;
      show(this.table, any);
      show(this.empty, !any);
      replace(this.message);
    } catch (error) {
      if (this.loading !== token) return;
      if (error?.status === 401) this.onUnauthorized?.(error);
      replace(this.message, h("div", { class: "notice error" }, `The history did not load: ${error.message}`));
    } finally {
      if (this.loading === token) this.moreButton.disabled = false;
    }
  }

  row(request) {
    const kept = loadInputs(request.request_id);
    const prompt = kept?.input?.prompt;
    return h(
      "tr",
      { "data-request-id": request.request_id },
      h(
        "td",
        {},
        h(
          "div",
          { class: "history-when" },
          h("span", { class: ["badge", request.status] }, request.status),
          h("time", { class: "small muted", datetime: request.created_at }, formatTime(request.created_at)),
        ),
      ),
      h(
        "td",
        { class: "history-what" },
        h("code", { class: "small", title: request.request_id }, request.request_id.slice(0, 8)),
        " ",
        h("span", { class: "small muted" }, request.endpoint ?? ""),
        prompt ? h("div", { class: "small history-prompt" }, prompt) : null,
      ),
      h(
        "td",
        {},
        h(
          "button",
          {
            type: "button",
            class: "open-request",
            "aria-label": `Open request ${request.request_id}`,
            onclick: () => this.onOpen(request.request_id),
          },
          "Open",
        ),
      ),
    );
  }
}

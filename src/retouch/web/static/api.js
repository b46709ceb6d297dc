// The Retouch API from the browser: same-origin fetch() with the key in the Authorization
// header. The key lives in localStorage only: never in a URL, a cookie or the page's logs.

const KEY_STORAGE = "retouch.apiKey";

export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return ""; // storage disabled: the key lasts as long as the page
  }
}

export function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: nothing to keep it in
  }
}

/** An API's error answer ({error_code, error_message, detail}) or a failed connection. */
/**
 * JSON.parse, with integers beyond 2^53 (a 64-bit seed) as BigInt, read from their source
 * text so no digit is lost (the reviver's `context.source`: Chromium 114+, Firefox 135+;
 * where it is missing, such a number reads rounded, as plain JSON.parse reads it).
 */
export function parseJson(text) {
  return JSON.parse(text, (_key, value, context) =>
    typeof value === "number" && !Number.isSafeInteger(value) && /^-?\d+$/.test(context?.source ?? "")
      ? BigInt(context.source)
      : value,
  );
}

export class ApiError extends Error {
  constructor(status, body, fallback) {
    super(body?.error_message ?? fallback ?? `the server answered HTTP ${status}`);
    this.status = status; // 0: no answer
    this.code = body?.error_code ?? null;
    this.detail = body?.detail;
  }

  /** 422001's detail by field: {"prompt": ["must not be empty…"], "image_urls[1]": [...]}. */
  fieldErrors() {
    const byField = {};
    if (!Array.isArray(this.detail)) return byField;
    for (const item of this.detail) {
      const field = item?.field ?? "body";
      (byField[field] ??= []).push(item?.message ?? "invalid");
    }
    return byField;
  }
}

/** A URL on this server: relative to the page, so a server behind a path prefix works. */
export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), document.baseURI);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.key}`, ...extra };
  }

  /** The parsed JSON answer; an ApiError for an error answer or no answer. */
  async call(method, path, { query, json, body, signal, headers } = {}) {
    const init = { method, headers: this.headers(headers), signal, cache: "no-store" };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["Content-Type"] = "application/json";
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(apiUrl(path, query), init);
    } catch (error) {
      if (error?.name === "AbortError") throw error;
      throw new ApiError(0, null, `the server did not answer (${error?.message ?? error})`);
    }
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? parseJson(text) : null;
    } catch {
      parsed = null;
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed;
  }

  get(path, options = {}) {
    return this.call("GET", path, options);
  }

  post(path, json, options = {}) {
    return this.call("POST", path, { ...options, json });
  }

  /** POST /v1/files: one image, answered with {url, width, height, content_type, bytes…}. */
  upload(file, { signal } = {}) {
    const form = new FormData();
    form.append("file", file, file.name || "image");
    return this.call("POST", "v1/files", { body: form, signal });
  }

  /**
   * The job's server-sent events, as {event, data} with data parsed: `status` bodies, then
   * one `result` body. Read with fetch(), since EventSource cannot send Authorization.
   * Ends when the server ends the stream; an ApiError if it cannot be opened.
   */
  async *events(requestId, { logs = false, signal } = {}) {
    const path = `v1/requests/${encodeURIComponent(requestId)}/stream`;
    let response;
    try {
      response = await fetch(apiUrl(path, { logs: logs ? "1" : "" }), {
        headers: this.headers({ Accept: "text/event-stream" }),
        signal,
        cache: "no-store",
      });
    } catch (error) {
      if (error?.name === "AbortError") throw error;
      throw new ApiError(0, null, `the server did not answer (${error?.message ?? error})`);
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      throw new ApiError(response.status, body);
    }
    for await (const message of serverSentEvents(response.body)) {
      let data;
      try {
        data = parseJson(message.data);
      } catch {
        continue; // not one of ours
      }
      yield { event: message.event, data };
    }
  }
}

/**
 * The messages of a text/event-stream body (the WHATWG format: `event:` and `data:` fields,
 * a blank line ends a message, `:` lines are comments). Written here because the browser's
 * own parser lives only inside EventSource, and the pages have no build step to bundle one.
 */
export async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data = [];
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // A "\r" that ends the chunk may be the first half of "\r\n": it waits for the next.
      const lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = lines.pop(); // an unfinished line waits for the next chunk too
      for (const line of lines) {
        if (line === "") {
          if (data.length) yield { event, data: data.join("\n") };
          event = "message";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// The job view (#job): one request followed live over its event stream (status, queue
// position, progress, log), with a cancel button, then its result: warnings, the gallery of
// outputs, the error of a failed job, timings.

import { byId, formatBytes, formatSeconds, formatTime, h, replace, show } from "./dom.js";
import { showableUrl } from "./image_inputs.js";

/** An answer that asking again will not change: a 4xx other than 408 (slow) and 429 (later). */
function isFinalError(error) {
  const status = error?.status ?? 0;
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

// /result's names for a request that will not change any more.
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

function sleep(milliseconds, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, milliseconds);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The file extension of an output URL's path ("png"), or null. */
function extensionOf(url) {
  try {
    const name = new URL(url, document.baseURI).pathname.split("/").pop() ?? "";
    const dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(dot + 1).toLowerCase() : null;
  } catch {
    return null;
  }
}

/** Indexes of the generated images that have a URL (the content policy withholds some). */
function shownGenerations(result) {
  const flags = result.has_nsfw_concepts;
  const count = result.output?.images?.length ?? 0;
  if (!Array.isArray(flags)) return [...Array(count).keys()];
  return flags.flatMap((withheld, index) => (withheld ? [] : [index])).slice(0, count);
}

export class JobView {
  /**
   * `api()` answers the current Api; `onUnauthorized(error)` gets a 401; `onFinished(result)`
   * runs when a followed request ends; `onUseAsInput(url)` and `onEditAgain(inputs)` are the
   * buttons' actions; `inputsOf(requestId)` answers the stored inputs of a request, if any.
   */
  constructor({ api, onUnauthorized, onFinished, onUseAsInput, onEditAgain, inputsOf }) {
    this.api = api;
    this.onUnauthorized = onUnauthorized;
    this.onFinished = onFinished ?? (() => {});
    this.onUseAsInput = onUseAsInput;
    this.onEditAgain = onEditAgain;
    this.inputsOf = inputsOf ?? (() => null);
    this.section = byId("job");
    this.requestId = byId("job-request-id");
    this.status = byId("job-status");
    this.times = byId("job-times");
    this.inputs = byId("job-inputs");
    this.queuePosition = byId("queue-position");
    this.progress = byId("job-progress");
    this.progressText = byId("job-progress-text");
    this.cancelButton = byId("cancel");
    this.cancelOutcome = byId("cancel-outcome");
    this.notices = byId("job-notices");
    this.warnings = byId("job-warnings");
    this.gallery = byId("gallery");
    this.timings = byId("job-timings");
    this.logs = byId("job-logs");
    this.logCount = byId("job-log-count");
    this.current = null;
    this.cancelButton.addEventListener("click", () => this.cancel());
  }

  /** Stops following the shown request (a new one is about to be shown, or the key went). */
  stop() {
    this.current?.abort.abort();
    this.current = null;
  }

  hide() {
    this.stop();
    show(this.section, false);
  }

  /** A request just submitted: follow its stream from the start. */
  follow(requestId, inputs) {
    this.reset(requestId, inputs);
    this.watch(this.current);
  }

  /** A request from the history: its result if it has ended, else its stream. */
  async open(requestId) {
    this.reset(requestId, this.inputsOf(requestId)?.input);
    const current = this.current;
    try {
      const result = await this.api().get(`v1/requests/${encodeURIComponent(requestId)}/result`, {
        query: { logs: "1" },
        signal: current.abort.signal,
      });
      if (current !== this.current) return;
      if (FINISHED.has(result.status)) {
        this.showResult(result, { notify: false });
        return;
      }
      this.showStatus(result);
      this.watch(current);
    } catch (error) {
      if (error?.name !== "AbortError") this.fail(error);
    }
  }

  reset(requestId, inputs) {
    this.stop();
    this.current = { id: requestId, abort: new AbortController(), finished: false, inputs };
    show(this.section, true);
    replace(this.requestId, requestId);
    this.setBadge("in_queue", "submitted");
    replace(this.times);
    for (const element of [this.queuePosition, this.progress, this.progressText, this.timings]) {
      show(element, false);
    }
    this.progress.max = 1;
    this.progress.value = 0;
    replace(this.cancelOutcome);
    this.cancelOutcome.className = "small";
    this.cancelButton.disabled = false;
    show(this.cancelButton, true);
    replace(this.notices);
    replace(this.warnings);
    replace(this.gallery);
    this.showLogs([]);
    this.showInputs(inputs);
  }

  setBadge(status, text = status) {
    this.status.className = `badge ${status}`;
    replace(this.status, text);
  }

  showInputs(inputs) {
    show(this.inputs, Boolean(inputs));
    if (!inputs) {
      replace(this.inputs);
      return;
    }
    const count = inputs.image_urls?.length ?? 0;
    const facts = [
      `${count} image${count === 1 ? "" : "s"}`,
      inputs.aspect_ratio ? `ratio ${inputs.aspect_ratio}` : null,
      inputs.resolution ?? null,
      inputs.num_images ? `${inputs.num_images} output${inputs.num_images === 1 ? "" : "s"}` : null,
    ].filter(Boolean);
    replace(
      this.inputs,
      h("blockquote", { class: "job-prompt", id: "job-prompt" }, inputs.prompt ?? ""),
      h(
        "div",
        { class: "button-row" },
        h("span", { class: "small muted" }, facts.join(" · ")),
        this.onEditAgain
          ? h(
              "button",
              { type: "button", id: "edit-again", onclick: () => this.onEditAgain(inputs) },
              "Edit again",
            )
          : null,
      ),
    );
  }

  /** Reads the event stream; if it breaks before the result, polls /result every second. */
  async watch(current) {
    const { id, abort } = current;
    try {
      for await (const { event, data } of this.api().events(id, { logs: true, signal: abort.signal })) {
        if (current !== this.current) return;
        if (event === "status") this.showStatus(data);
        else if (event === "result") {
          this.showResult(data);
          abort.abort(); // the server closes the stream too; this releases it at once
          return;
        }
      }
    } catch (error) {
      if (error?.name === "AbortError" || current !== this.current) return;
      if (isFinalError(error)) {
        this.fail(error);
        return;
      }
      // Anything else (a proxy cutting the stream, a restart): polling still works.
    }
    if (current === this.current && !current.finished) await this.poll(current);
  }

  async poll(current) {
    const { id, abort } = current;
    const path = `v1/requests/${encodeURIComponent(id)}/result`;
    while (current === this.current && !current.finished) {
      try {
        const result = await this.api().get(path, { query: { logs: "1" }, signal: abort.signal });
        if (current !== this.current) return;
        if (FINISHED.has(result.status)) {
          this.showResult(result);
          return;
        }
        this.showStatus(result);
        replace(this.notices);
      } catch (error) {
        if (error?.name === "AbortError") return;
        if (isFinalError(error)) {
          this.fail(error);
          return;
        }
        replace(
          this.notices,
          h("div", { class: "notice warning" }, `Lost contact with the server (${error.message}); retrying…`),
        );
      }
      await sleep(1000, abort.signal);
    }
  }

  /** A status body (or an unfinished result body, while polling). */
  showStatus(data) {
    const status = data.status;
    this.setBadge(status);
    const queued = status === "in_queue";
    show(this.queuePosition, queued && data.queue_position !== undefined && data.queue_position !== null);
    if (queued && data.queue_position !== undefined && data.queue_position !== null) {
      const position = data.queue_position;
      replace(
        this.queuePosition,
        `Queue position: ${position} `,
        h("span", { class: "muted" }, position === 0 ? "(next to run)" : `(${position} ahead)`),
      );
    }
    if (status === "in_progress" && data.progress) {
      const { step, total } = data.progress;
      this.progress.max = total;
      this.progress.value = step;
      show(this.progress, true);
      show(this.progressText, true);
      replace(this.progressText, `step ${step} of ${total}`);
    }
    const unfinished = queued || status === "in_progress";
    show(this.cancelButton, unfinished);
    if (data.logs) this.showLogs(data.logs);
  }

  showLogs(lines) {
    replace(this.logCount, String(lines.length));
    replace(
      this.logs,
      lines.map((line) =>
        h(
          "div",
          { class: ["log-line", `level-${line.level}`] },
          h("time", { class: "muted", datetime: line.time }, new Date(line.time).toLocaleTimeString()),
          " ",
          h("span", { class: "log-level" }, line.level),
          " ",
          h("span", { class: "log-message" }, line.message),
        ),
      ),
    );
  }

  /** The result body: the request has ended (or was opened after it ended). */
  showResult(result, { notify = true } = {}) {
    const current = this.current;
    if (!current) return;
    current.finished = true;
    this.setBadge(result.status);
    show(this.queuePosition, false);
    show(this.cancelButton, false);
    if (result.status === "succeeded") {
      // Every step done: the bar ends full even if the stream skipped the last one.
      if (this.progress.max <= 1) this.progress.max = 1;
      this.progress.value = this.progress.max;
      show(this.progress, true);
    }
    replace(
      this.times,
      result.created_at ? `submitted ${formatTime(result.created_at)}` : "",
      result.finished_at ? ` · ended ${formatTime(result.finished_at)}` : "",
    );
    if (result.logs) this.showLogs(result.logs);
    this.showWarnings(result.warnings ?? []);
    const notices = [];
    if (result.status === "failed") {
      notices.push(
        h(
          "div",
          { class: "notice error", role: "alert" },
          h("strong", {}, "The job failed: "),
          h("code", { class: "error-code" }, result.error?.code ?? "error"),
          " ",
          h("span", { class: "error-message" }, result.error?.message ?? ""),
        ),
      );
    } else if (result.status === "cancelled") {
      notices.push(
        h(
          "div",
          { class: "notice info", role: "status" },
          "This request was cancelled: nothing was generated.",
        ),
      );
    }
    const withheld = (result.has_nsfw_concepts ?? []).filter(Boolean).length;
    if (withheld) {
      notices.push(
        h(
          "div",
          { class: "notice warning", role: "status" },
          `${withheld} image${withheld === 1 ? " was" : "s were"} withheld by the content policy ` +
            "(see safety_tolerance): no URL for them.",
        ),
      );
    }
    replace(this.notices, notices);
    this.showGallery(result, current);
    this.showTimings(result.timings);
    if (notify) this.onFinished(result);
  }

  showWarnings(warnings) {
    replace(
      this.warnings,
      warnings.map((text) =>
        h("div", { class: "notice warning", role: "alert" }, h("strong", {}, "Warning: "), text),
      ),
    );
  }

  showTimings(timings) {
    show(this.timings, Boolean(timings));
    if (!timings) return;
    const parts = [];
    if (timings.job_s !== undefined) parts.push(`job ${formatSeconds(timings.job_s)}`);
    if (timings.engine_s !== undefined) parts.push(`model ${formatSeconds(timings.engine_s)}`);
    if (timings.inputs_s !== undefined) parts.push(`inputs ${formatSeconds(timings.inputs_s)}`);
    if (timings.encode_store_s !== undefined) parts.push(`storing ${formatSeconds(timings.encode_store_s)}`);
    replace(this.timings, `Timings: ${parts.join(", ")}`);
  }

  showGallery(result, current) {
    const images = result.status === "succeeded" ? result.output?.images ?? [] : [];
    const generated = shownGenerations(result);
    replace(
      this.gallery,
      images.map((url, k) => this.figure(result, current, url, k, generated[k] ?? k)),
    );
  }

  figure(result, current, url, k, generation) {
    const gen = result.generation;
    const asked = current.inputs?.output_format;
    const extension = extensionOf(url) ?? (asked === "jpeg" ? "jpg" : asked) ?? "png";
    const seed = gen?.seeds?.[generation];
    const sizeText = h("dd", { class: "output-size" }, gen ? `${gen.width}×${gen.height}` : "…");
    const formatText = h("dd", { class: "output-format" }, (asked ?? extension).toUpperCase());
    const bytesText = h("dd", { class: "output-bytes" }, "…");
    const bytesRow = h("div", { hidden: true }, h("dt", {}, "Bytes"), bytesText);
    const image = h("img", { src: url, alt: `Output ${k + 1} of request ${result.request_id}` });
    image.addEventListener("load", () => {
      const natural = `${image.naturalWidth}×${image.naturalHeight}`;
      const expected = gen ? `${gen.width}×${gen.height}` : natural;
      replace(sizeText, natural === expected ? natural : `${natural} (asked ${expected})`);
    });
    image.addEventListener("error", () => replace(sizeText, "the image did not load (expired?)"));
    // The byte size, from a HEAD of a file on this server (the file route answers HEAD).
    if (showableUrl(url) && !url.startsWith("data:")) {
      fetch(url, { method: "HEAD", cache: "no-store" })
        .then((answer) => {
          if (!answer.ok) return;
          const length = answer.headers.get("content-length");
          if (length) {
            replace(bytesText, formatBytes(Number(length)));
            show(bytesRow, true);
          }
          const type = answer.headers.get("content-type");
          if (!asked && type) replace(formatText, type);
        })
        .catch(() => {}); // the size is a nicety: nothing to say if it is unknown
    }
    return h(
      "figure",
      { class: "output", "data-index": k },
      h("a", { class: "open-output", href: url, target: "_blank", rel: "noopener" }, image),
      h(
        "figcaption",
        {},
        h(
          "dl",
          { class: "output-facts" },
          h("div", {}, h("dt", {}, "Size"), sizeText),
          h("div", {}, h("dt", {}, "Format"), formatText),
          seed !== undefined ? h("div", {}, h("dt", {}, "Seed"), h("dd", { class: "output-seed" }, String(seed))) : null,
          bytesRow,
        ),
        h(
          "div",
          { class: "button-row" },
          h(
            "a",
            {
              class: "download button-link",
              href: url,
              download: `${result.request_id}-${k}.${extension}`,
            },
            "Download",
          ),
          this.onUseAsInput
            ? h(
                "button",
                { type: "button", class: "use-as-input", onclick: () => this.onUseAsInput(url) },
                "Use as input",
              )
            : null,
        ),
      ),
    );
  }

  async cancel() {
    const current = this.current;
    if (!current) return;
    this.cancelButton.disabled = true;
    try {
      const answer = await this.api().post(`v1/requests/${encodeURIComponent(current.id)}/cancel`);
      if (current !== this.current) return;
      let text;
      if (answer.outcome === "cancelled") text = "Cancelled: it was still queued, and will never run.";
      else if (answer.status === "cancelled") text = "Already cancelled.";
      else if (answer.status === "in_progress") text = "Already running: cannot be cancelled.";
      else text = `Not cancellable: it is ${answer.status}.`;
      this.cancelOutcome.className = `small cancel-outcome ${answer.outcome}`;
      replace(this.cancelOutcome, text);
    } catch (error) {
      if (error?.status === 401) this.onUnauthorized?.(error);
      this.cancelOutcome.className = "small cancel-outcome error";
      replace(this.cancelOutcome, `The cancel failed: ${error.message}`);
      this.cancelButton.disabled = false;
    }
  }

  fail(error) {
    if (error?.status === 401) this.onUnauthorized?.(error);
    const current = this.current;
    if (current) current.finished = true;
    show(this.cancelButton, false);
    this.setBadge("failed", "unknown");
    replace(
      this.notices,
      h(
        "div",
        { class: "notice error", role: "alert" },
        error?.status === 404
          ? `No such request for this key (it may have expired): ${error.message}`
          : `Could not follow the request: ${error?.message ?? error}`,
      ),
    );
  }
}

// The operator console: workers, the queue per endpoint, recent failures and every key's
// activity, refreshed every few seconds. Admin keys see everything (GET v1/admin/…); any
// other key sees the workers (with only its own current jobs) and its own requests.

import { Api, ApiError } from "./api.js";
import { byId, formatBytes, formatSeconds, formatTime, h, replace, show } from "./dom.js";
import { mountKeyField } from "./key_field.js";

const REFRESH_MS = 2000;
// A worker reports every few seconds: one not heard from for this long is flagged.
const STALE_HEARTBEAT_S = 15;

let api = null;
let paused = false;
let timer = null;
let generation = 0; // bumped on each key change: an older refresh's answers are dropped

function notice(kind, ...text) {
  const box = byId("console-notice");
  box.className = `notice ${kind}`;
  replace(box, ...text);
  show(box, text.length > 0);
}

function cell(content, className) {
  return h("td", { class: className }, content);
}

function emptyRow(table, columns, text) {
  replace(table.tBodies[0], h("tr", {}, h("td", { colspan: columns, class: "muted" }, text)));
}

function secondsSince(iso) {
  return (Date.now() - new Date(iso).getTime()) / 1000;
}

function renderQueue(overview) {
  const table = byId("queue-table");
  if (!overview.endpoints.length) return emptyRow(table, 4, "No endpoints served.");
  replace(
    table.tBodies[0],
    overview.endpoints.map((row) =>
      h(
        "tr",
        { "data-endpoint": row.endpoint },
        cell(h("code", {}, row.endpoint)),
        cell(row.queued, "number queued"),
        cell(row.running, "number running"),
        cell(
          row.oldest_queued_request
            ? [formatSeconds(row.oldest_wait_seconds), " ", h("code", { class: "small" }, row.oldest_queued_request)]
            : "—",
          "oldest",
        ),
      ),
    ),
  );
}

function renderFailures(overview) {
  const table = byId("failures-table");
  byId("failures-window").textContent = `(last ${formatSeconds(overview.window_seconds)})`;
  if (!overview.failures.length) return emptyRow(table, 3, "No failures.");
  replace(
    table.tBodies[0],
    overview.failures.map((row) =>
      h(
        "tr",
        { "data-code": row.code },
        cell(h("code", {}, row.code)),
        cell(row.count, "number"),
        cell([
          formatTime(row.last_at),
          " ",
          h("code", { class: "small" }, row.last_request),
          row.last_message ? h("div", { class: "small muted" }, row.last_message) : null,
        ]),
      ),
    ),
  );
}

function memoryText(memory) {
  const parts = [];
  if (memory.rss_mib !== undefined) parts.push(`RSS ${memory.rss_mib} MiB`);
  if (memory.peak_rss_mib !== undefined) parts.push(`peak ${memory.peak_rss_mib} MiB`);
  if (memory.gpu_allocated_mib !== undefined) parts.push(`GPU ${memory.gpu_allocated_mib} MiB`);
  if (memory.gpu_peak_mib !== undefined) parts.push(`GPU peak ${memory.gpu_peak_mib} MiB`);
  return parts.join(" · ") || "—";
}

function renderWorkers(list) {
  const table = byId("workers-table");
  if (!list.workers.length) {
    return emptyRow(table, 5, "No worker alive: queued jobs wait until one starts (retouch worker).");
  }
  replace(
    table.tBodies[0],
    list.workers.map((worker) => {
      const age = secondsSince(worker.last_seen);
      const engines = Object.values(worker.engines ?? {}).map((info) =>
        h("div", { class: "small muted" }, `${info.engine} ${info.model} (${info.device}, ${info.dtype})`),
      );
      return h(
        "tr",
        { "data-worker": worker.id },
        cell([h("code", {}, worker.id), h("div", { class: "small muted" }, `since ${formatTime(worker.started_at)}`)]),
        cell([worker.endpoints.map((id) => h("div", {}, h("code", {}, id))), engines]),
        cell(worker.current_job ? h("code", {}, worker.current_job) : "idle", "current-job"),
        cell(memoryText(worker.memory ?? {}), "small"),
        cell(`${formatSeconds(Math.max(0, age))} ago`, age > STALE_HEARTBEAT_S ? "stale" : ""),
      );
    }),
  );
}

function renderKeys(keys) {
  const table = byId("keys-table");
  if (!keys.length) return emptyRow(table, 8, "No keys.");
  replace(
    table.tBodies[0],
    keys.map((key) =>
      h(
        "tr",
        { "data-key": key.key_id },
        cell([h("code", {}, key.key_id), key.name ? ` ${key.name}` : "", key.revoked ? h("span", { class: "badge failed" }, "revoked") : null]),
        cell(key.role ?? "—"),
        ["queued", "running", "succeeded", "failed", "cancelled"].map((state) => cell(key[state], "number")),
        cell(formatBytes(key.output_bytes + key.upload_bytes), "number"),
      ),
    ),
  );
}

function renderRecent(requests, admin) {
  const table = byId("recent-table");
  if (!requests.length) return emptyRow(table, 6, "No requests yet.");
  replace(
    table.tBodies[0],
    requests.map((request) =>
      h(
        "tr",
        { "data-request": request.request_id },
        cell(h("code", { class: "small" }, request.request_id)),
        cell(admin ? h("code", {}, request.key_id) : "this key"),
        cell(h("code", {}, request.endpoint ?? "")),
        cell(h("span", { class: `badge ${request.status}` }, request.status)),
        cell(formatTime(request.created_at), "small"),
        cell(
          request.error_code
            ? h("code", {}, request.error_code)
            : request.queue_position !== undefined && request.queue_position !== null
              ? `position ${request.queue_position}`
              : request.worker_id
                ? ["on ", h("code", {}, request.worker_id)]
                : "",
          "small",
        ),
      ),
    ),
  );
}

/** One refresh: everything the key may see, read together. */
async function refresh(current) {
  const workers = api.get("v1/workers");
  const overview = api.get("v1/admin/queue").catch((error) => error);
  const admin = api.get("v1/admin/requests", { query: { limit: 15 } }).catch((error) => error);
  const [workerList, queue, activity] = await Promise.all([workers, overview, admin]);
  if (current !== generation) return;
  renderWorkers(workerList);
  const forbidden = [queue, activity].some((value) => value instanceof ApiError && value.status === 403);
  for (const value of [queue, activity]) {
    if (value instanceof Error && !forbidden) throw value;
  }
  const sections = ["queue-table", "failures-table", "keys-table"].map((id) => byId(id).closest("section"));
  sections.forEach((section) => show(section, !forbidden));
  if (forbidden) {
    notice(
      "info",
      "This key is not an admin key: you see the workers and your own requests only. ",
      "An operator makes an admin key with ",
      h("code", {}, "retouch keys create --admin"),
      ".",
    );
    const own = await api.get("v1/requests", { query: { limit: 15 } });
    if (current === generation) renderRecent(own.requests, false);
    return;
  }
  notice("info");
  renderQueue(queue);
  renderFailures(queue);
  renderKeys(activity.keys);
  renderRecent(activity.requests, true);
}

async function loop(current) {
  if (current !== generation) return;
  if (!paused && !document.hidden) {
    try {
      await refresh(current);
      if (current === generation) byId("refresh-state").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      if (current !== generation) return;
      if (error instanceof ApiError && error.status === 401) {
        notice("error", "This key is not accepted (revoked, mistyped, or from another server).");
      } else {
        notice("error", `Could not refresh: ${error.message}`);
      }
    }
  }
  if (current === generation) timer = setTimeout(() => loop(current), REFRESH_MS);
}

function start(key) {
  generation += 1;
  clearTimeout(timer);
  api = key ? new Api(key) : null;
  // Nothing read with the previous key stays on screen.
  for (const id of ["queue-table", "failures-table", "workers-table", "keys-table", "recent-table"]) {
    byId(id).tBodies[0].replaceChildren();
  }
  show(byId("console-grid"), api !== null);
  if (!api) {
    notice("info", "Paste an API key above. An operator's admin key shows every key's work.");
    byId("refresh-state").textContent = "";
    return;
  }
  loop(generation);
}

const pause = byId("pause-refresh");
pause.addEventListener("click", () => {
  paused = !paused;
  pause.textContent = paused ? "Resume" : "Pause";
  pause.setAttribute("aria-pressed", String(paused));
  byId("refresh-state").textContent = paused ? "Paused" : byId("refresh-state").textContent;
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && api) start(api.key);
});
mountKeyField(start);

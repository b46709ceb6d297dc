// The images of a request: dropped or picked files (uploaded at once through POST v1/files)
// and URLs typed in or taken from an output. Each shows as a thumbnail with its size and
// state; the request sends the URLs of the ready ones, in order.

import { byId, formatBytes, h, replace, show } from "./dom.js";

export const MAX_IMAGES = 20;

/** Same origin as the page, or a data: URI: the only images the page's CSP lets it show. */
export function showableUrl(url) {
  try {
    const parsed = new URL(url, document.baseURI);
    return parsed.protocol === "data:" || parsed.origin === window.location.origin;
  } catch {
    return false;
  }
}

let nextItemId = 1;

export class ImageInputs {
  /**
   * Wires the static #image-inputs area. `api()` answers the current Api (or null without a
   * key); `onChange()` runs whenever the list or an upload's state changes; `onError(error)`
   * gets every failed upload (the page turns a 401 into its key notice).
   */
  constructor({ api, onChange, onError }) {
    this.api = api;
    this.onChange = onChange ?? (() => {});
    this.onError = onError ?? (() => {});
    this.items = [];
    this.root = byId("image-inputs");
    this.dropZone = byId("drop-zone");
    this.fileInput = byId("image-files");
    this.urlInput = byId("image-url");
    this.list = byId("image-list");
    this.message = byId("image-message");
    this.count = byId("image-count");

    this.fileInput.addEventListener("change", () => {
      this.addFiles([...this.fileInput.files]);
      this.fileInput.value = ""; // the same file can be picked again
    });
    byId("add-image-url").addEventListener("click", () => this.addTypedUrl());
    this.urlInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault(); // not a form submit: Enter here means "Add"
        this.addTypedUrl();
      }
    });
    this.dropZone.addEventListener("click", () => this.fileInput.click());
    this.dropZone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.fileInput.click();
      }
    });
    this.dropZone.addEventListener("dragenter", (event) => this.dragOver(event));
    this.dropZone.addEventListener("dragover", (event) => this.dragOver(event));
    this.dropZone.addEventListener("dragleave", () => this.dropZone.classList.remove("dragging"));
    this.dropZone.addEventListener("drop", (event) => this.drop(event));
    this.draw(); // not render(): the page's onChange may not be ready while this is built
  }

  dragOver(event) {
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
    this.dropZone.classList.add("dragging");
  }

  drop(event) {
    event.preventDefault();
    this.dropZone.classList.remove("dragging");
    const transfer = event.dataTransfer;
    if (!transfer) return;
    const files = [...transfer.files].filter((file) => file.type.startsWith("image/") || !file.type);
    if (files.length) {
      this.addFiles(files);
      return;
    }
    // An image dragged from another page arrives as its URL.
    const url = (transfer.getData("text/uri-list") || transfer.getData("text/plain") || "")
      .split(/\r?\n/)
      .find((line) => line && !line.startsWith("#"));
    if (url) this.addUrl(url.trim());
  }

  say(text) {
    replace(this.message, text ?? "");
    show(this.message, Boolean(text));
  }

  roomFor(count) {
    const room = MAX_IMAGES - this.items.length;
    if (count > room) {
      this.say(`At most ${MAX_IMAGES} images per request: ${count - Math.max(room, 0)} left out.`);
    } else {
      this.say("");
    }
    return Math.max(room, 0);
  }

  addFiles(files) {
    const room = this.roomFor(files.length);
    for (const file of files.slice(0, room)) this.upload(file);
  }

  addTypedUrl() {
    const url = this.urlInput.value.trim();
    if (!url) {
      this.say("Type or paste an image URL first (http, https or data:).");
      this.urlInput.focus();
      return;
    }
    if (this.addUrl(url)) this.urlInput.value = "";
  }

  /** Adds a URL as it is (the server fetches and checks it when the job runs). */
  addUrl(url) {
    if (!this.roomFor(1)) return false;
    const item = {
      id: nextItemId++,
      kind: "url",
      name: url.startsWith("data:") ? "data: URI" : url,
      url,
      preview: showableUrl(url) ? url : null,
      state: "ready",
    };
    this.items.push(item);
    this.render();
    return true;
  }

  /** The same files or URLs as an earlier request (its image_urls). */
  setUrls(urls) {
    this.clear();
    for (const url of (urls ?? []).slice(0, MAX_IMAGES)) this.addUrl(url);
  }

  clear() {
    for (const item of this.items) this.release(item);
    this.items = [];
    this.say("");
    this.render();
  }

  async upload(file) {
    const item = {
      id: nextItemId++,
      kind: "file",
      name: file.name || "image",
      file,
      preview: URL.createObjectURL(file), // shown before the upload ends (CSP allows blob:)
      state: "uploading",
      bytes: file.size,
      abort: new AbortController(),
    };
    this.items.push(item);
    this.render();
    const api = this.api();
    try {
      if (!api) throw new Error("paste an API key first: uploads need one");
      const answer = await api.upload(file, { signal: item.abort.signal });
      Object.assign(item, {
        state: "ready",
        url: answer.url,
        width: answer.width,
        height: answer.height,
        bytes: answer.bytes ?? item.bytes,
        contentType: answer.content_type,
      });
    } catch (error) {
      if (error?.name === "AbortError") return; // removed while uploading
      item.state = "failed";
      item.error = error?.message ?? String(error);
      this.onError(error);
    }
    this.render();
  }

  remove(item) {
    item.abort?.abort();
    this.release(item);
    this.items = this.items.filter((other) => other !== item);
    this.say("");
    this.render();
  }

  release(item) {
    if (item.kind === "file" && item.preview) URL.revokeObjectURL(item.preview);
  }

  /** Whether an upload is still running (the submit waits for it). */
  busy() {
    return this.items.some((item) => item.state === "uploading");
  }

  /** How many images failed to upload (they are not sent). */
  failed() {
    return this.items.filter((item) => item.state === "failed").length;
  }

  /** The URLs to send: every ready image, in order. */
  urls() {
    return this.items.filter((item) => item.state === "ready").map((item) => item.url);
  }

  /** Marks the items a 422001 named (`image_urls[1]` is the second URL sent). */
  markErrors(messagesByIndex) {
    const ready = this.items.filter((item) => item.state === "ready");
    for (const item of this.items) item.refused = undefined;
    for (const [index, message] of Object.entries(messagesByIndex)) {
      const item = ready[Number(index)];
      if (item) item.refused = message;
    }
    this.render();
  }

  render() {
    this.draw();
    this.onChange();
  }

  draw() {
    replace(
      this.list,
      this.items.map((item, index) => this.itemElement(item, index)),
    );
    replace(this.count, `${this.items.length} of ${MAX_IMAGES}`);
  }

  itemElement(item, index) {
    const stateText = {
      uploading: "uploading…",
      ready: "ready",
      failed: `failed: ${item.error}`,
    }[item.state];
    const size = [];
    if (item.width && item.height) size.push(`${item.width}×${item.height}`);
    if (item.bytes) size.push(formatBytes(item.bytes));
    const thumbnail = item.preview
      ? h("img", { class: "thumb", src: item.preview, alt: `Image ${index + 1}` })
      : h("div", { class: "thumb placeholder", role: "img", "aria-label": "no preview" }, "URL");
    const element = h(
      "li",
      {
        class: ["image-input", item.state, item.refused ? "refused" : ""],
        "data-state": item.state,
      },
      thumbnail,
      h(
        "div",
        { class: "image-facts" },
        h("span", { class: "image-name mono", title: item.name }, item.name),
        h("span", { class: "small muted image-size" }, size.join(" · ")),
        h("span", { class: ["small", "image-state", item.state], role: "status" }, stateText),
        item.refused ? h("span", { class: "small image-refused" }, item.refused) : null,
      ),
      h(
        "button",
        {
          type: "button",
          class: "remove-image",
          "aria-label": `Remove image ${index + 1}`,
          onclick: () => this.remove(item),
        },
        "Remove",
      ),
    );
    const image = element.querySelector("img");
    // A URL that does not load (gone, not an image) gets the placeholder; the server will
    // say what is wrong with it when the job runs.
    image?.addEventListener("error", () => {
      image.replaceWith(h("div", { class: "thumb placeholder", role: "img", "aria-label": "no preview" }, "?"));
    });
    // A URL's size is known once it shows (same-origin ones only).
    if (item.kind === "url" && item.preview && !item.width) {
      image.addEventListener("load", () => {
        item.width = image.naturalWidth;
        item.height = image.naturalHeight;
        const sizeText = element.querySelector(".image-size");
        if (sizeText) replace(sizeText, `${item.width}×${item.height}`);
      });
    }
    return element;
  }
}

/** Puts the drop zone's hint about the model's reference limit. */
export function describeReferences(element, maxReferences) {
  replace(
    element,
    maxReferences
      ? `This model conditions on up to ${maxReferences} images directly; more are tiled onto reference sheets.`
      : "",
  );
}

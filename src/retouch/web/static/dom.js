// Building the page without innerHTML: every piece of text goes in as a text node, so
// nothing a user, a key or the server wrote can become markup or script.

/**
 * An element: h("button", {class: "primary", onclick: fn}, "Submit", child...).
 * Attributes named on* become listeners. `style` is refused (the Content-Security-Policy
 * forbids inline styles: use classes), and so is an `href` or `src` that could run script
 * (a `javascript:` URL, say): only http(s), blob:, data:image/ and relative URLs pass.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "style") {
      throw new Error("h(): no inline styles under the page's policy; use a class");
    } else if ((name === "href" || name === "src") && !isSafeUrl(String(value))) {
      continue; // left without a link rather than one that runs script
    } else if (name === "class") {
      element.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, ...children);
  return element;
}

const SAFE_SCHEMES = new Set(["http:", "https:", "blob:"]);

function isSafeUrl(url) {
  if (url.toLowerCase().startsWith("data:image/")) return true;
  try {
    return SAFE_SCHEMES.has(new URL(url, document.baseURI).protocol);
  } catch {
    return false; // not a URL at all
  }
}

/** Appends children: nodes as they are, strings and numbers as text, arrays flattened. */
export function append(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces an element's children. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, ...children);
}

/** The element with this id (the pages' fixed parts). */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

/** Shows or hides an element (the `hidden` attribute). */
export function show(element, visible = true) {
  element.hidden = !visible;
}

/** "1.2 MB", "340 KB", "512 B". */
export function formatBytes(bytes) {
  if (bytes === undefined || bytes === null) return "";
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** A timestamp (ISO 8601) in the browser's locale, or "" for none. */
export function formatTime(iso) {
  if (!iso) return "";
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? iso : moment.toLocaleString();
}

/** "3.4 s", "2 min 5 s", "1 h 2 min". */
export function formatSeconds(seconds) {
  if (seconds === undefined || seconds === null) return "";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

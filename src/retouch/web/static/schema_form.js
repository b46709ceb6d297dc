// The edit form, generated from the endpoint's JSON schema (GET v1/models/{id}/schema), so a
// field the server adds shows up without a change here. The browser does not validate
// (the form is `novalidate`): the server does, and its 422001 answer is shown per field.

import { append, h, replace } from "./dom.js";

// The titles of RunComfy's API page for this contract (Traditional Chinese), shown to
// readers whose browser asks for Chinese, with the server's English title beside them.
const CHINESE_TITLES = {
  prompt: "提示詞",
  image_urls: "圖像",
  num_images: "生成數量",
  seed: "種子",
  aspect_ratio: "寬高比(寬:高)",
  resolution: "解析度",
  output_format: "輸出格式",
  safety_tolerance: "安全容忍度",
  limit_generations: "限制生成次數",
  enable_web_search: "啟用網路搜尋",
};

// Integers beyond this lose digits as JS numbers (the seed is 64-bit): they travel as BigInt
// and are written into the JSON as their digits (see toJson).
const SAFE_DIGITS = /^-?\d+$/;

function prefersChinese() {
  return (navigator.language || "").toLowerCase().startsWith("zh");
}

/** A schema property that is a list of image URLs: the image inputs handle it. */
export function isImageList(property) {
  return property?.type === "array" && property?.items?.format === "image_uri";
}

/** An integer field's text as a number (a BigInt past 2^53), or as typed if it is none. */
function parseInteger(text) {
  if (SAFE_DIGITS.test(text)) {
    const number = Number(text);
    return Number.isSafeInteger(number) ? number : BigInt(text);
  }
  const number = Number(text);
  return Number.isFinite(number) ? number : text; // sent as is: the server names the mistake
}

/**
 * JSON text of `value`, BigInts written as their digits (JSON.stringify refuses them).
 * `indent` as JSON.stringify's.
 */
export function toJson(value, indent) {
  const marker = "\u0000bigint:";
  const text = JSON.stringify(
    value,
    (_key, item) => (typeof item === "bigint" ? `${marker}${item}` : item),
    indent,
  );
  return text.replace(/"\\u0000bigint:(-?\d+)"/g, "$1");
}

export class SchemaForm {
  /**
   * Builds the fields of `schema` into `container`. `imageField` is the element that edits
   * an image list (the image inputs): it is placed where the schema puts that field.
   */
  constructor(container, schema, { imageField, onInput } = {}) {
    this.container = container;
    this.schema = schema;
    this.controls = new Map(); // name → {property, control, error}
    this.imageFieldName = null;
    const required = new Set(schema.required ?? []);
    const fields = [];
    for (const [name, property] of Object.entries(schema.properties ?? {})) {
      if (isImageList(property)) {
        this.imageFieldName = name;
        fields.push(this.imageListField(name, property, required.has(name), imageField));
      } else {
        fields.push(this.field(name, property, required.has(name)));
      }
    }
    replace(container, fields);
    if (onInput) {
      container.addEventListener("input", onInput);
      container.addEventListener("change", onInput);
    }
  }

  label(name, property, required, extra = {}) {
    const english = property.title ?? name;
    const chinese = prefersChinese() ? CHINESE_TITLES[name] : undefined;
    return h(
      "label",
      { for: `field-${name}`, ...extra },
      chinese ? [h("span", { lang: "zh-Hant" }, chinese), " ", h("span", { class: "title-en" }, `(${english})`)] : english,
      required ? h("span", { class: "required", title: "required" }, " *") : null,
      " ",
      h("code", { class: "field-name" }, name),
    );
  }

  description(name, property) {
    const facts = [];
    if (property.minimum !== undefined && property.maximum !== undefined && !property.enum) {
      if (name !== "seed") facts.push(`${property.minimum}–${property.maximum}`);
    }
    // A long default (the prompt's) is in the field already: not repeated here.
    const shortDefault = typeof property.default !== "string" || property.default.length <= 40;
    if (property.default !== undefined && typeof property.default !== "object" && shortDefault) {
      facts.push(`default ${property.default}`);
    }
    const text = [property.description, facts.length ? `(${facts.join(", ")})` : ""]
      .filter(Boolean)
      .join(" ");
    return text ? h("p", { class: "field-help small muted", id: `help-${name}` }, text) : null;
  }

  errorBox(name) {
    return h("div", { class: "field-error", id: `error-${name}`, role: "alert" });
  }

  describedBy(name, property) {
    const ids = [`error-${name}`];
    if (property.description || property.default !== undefined) ids.unshift(`help-${name}`);
    return ids.join(" ");
  }

  field(name, property, required) {
    const id = `field-${name}`;
    const common = { id, name, "aria-describedby": this.describedBy(name, property) };
    let control;
    let wrapperClass = "field";
    if (Array.isArray(property.enum)) {
      control = h(
        "select",
        common,
        property.enum.map((value, index) => h("option", { value: String(index) }, String(value))),
      );
      const defaultIndex = property.enum.indexOf(property.default);
      control.value = String(defaultIndex >= 0 ? defaultIndex : 0);
    } else if (property.type === "boolean") {
      control = h("input", { ...common, type: "checkbox", checked: property.default === true });
      wrapperClass = "field field-checkbox";
    } else if (property.type === "integer" || property.type === "number") {
      control = h("input", {
        ...common,
        type: "number",
        inputmode: "numeric",
        step: property.type === "integer" ? "1" : "any",
        min: property.minimum,
        max: property.maximum,
        value: property.default,
      });
    } else if (name === "prompt" || (property.maxLength ?? 0) > 500) {
      control = h("textarea", { ...common, rows: 4, required }, property.default ?? "");
    } else {
      control = h("input", { ...common, type: "text", value: property.default });
    }
    const error = this.errorBox(name);
    this.controls.set(name, { property, control, error });
    if (property.type === "boolean") {
      return h(
        "div",
        { class: wrapperClass },
        h("div", { class: "checkbox-row" }, control, this.label(name, property, required)),
        this.description(name, property),
        error,
      );
    }
    return h(
      "div",
      { class: wrapperClass },
      this.label(name, property, required),
      this.description(name, property),
      control,
      error,
    );
  }

  imageListField(name, property, required, imageField) {
    const error = this.errorBox(name);
    this.controls.set(name, { property, control: null, error });
    // The label points at the URL entry: the one text control of the image inputs.
    const label = this.label(name, property, required, { for: "image-url" });
    const limits = [];
    if (property.minItems) limits.push(`at least ${property.minItems}`);
    if (property.maxItems) limits.push(`up to ${property.maxItems}`);
    const help = h(
      "p",
      { class: "field-help small muted", id: `help-${name}` },
      property.description ?? "",
      limits.length ? ` (${limits.join(", ")})` : "",
    );
    return h("div", { class: "field field-images" }, label, help, imageField ?? null, error);
  }

  /** The form's values, typed as the schema says (numbers as numbers, booleans as booleans). */
  values() {
    const values = {};
    for (const [name, { property, control }] of this.controls) {
      if (!control) continue;
      if (Array.isArray(property.enum)) {
        values[name] = property.enum[Number(control.value)];
      } else if (property.type === "boolean") {
        values[name] = control.checked;
      } else if (property.type === "integer" || property.type === "number") {
        const text = control.value.trim();
        if (text !== "") values[name] = parseInteger(text);
      } else if (control.value !== "" || (this.schema.required ?? []).includes(name)) {
        values[name] = control.value;
      }
    }
    return values;
  }

  /** Sets the fields named in `values` (an earlier request's input); others keep theirs. */
  fill(values) {
    for (const [name, value] of Object.entries(values ?? {})) {
      const entry = this.controls.get(name);
      if (!entry?.control) continue;
      const { property, control } = entry;
      if (Array.isArray(property.enum)) {
        const index = property.enum.indexOf(value);
        if (index >= 0) control.value = String(index);
      } else if (property.type === "boolean") {
        control.checked = value === true;
      } else {
        control.value = value === undefined || value === null ? "" : String(value);
      }
    }
  }

  clearErrors() {
    for (const { control, error } of this.controls.values()) {
      replace(error);
      control?.removeAttribute("aria-invalid");
    }
  }

  /**
   * Shows a 422001's detail ([{field, path, message}]) next to the fields; answers the
   * items that matched no field (shown only in the summary).
   */
  showErrors(detail) {
    this.clearErrors();
    const unmatched = [];
    let first = null;
    for (const item of detail ?? []) {
      const name = Array.isArray(item?.path) && item.path.length ? String(item.path[0]) : item?.field;
      const entry = this.controls.get(name);
      if (!entry) {
        unmatched.push(item);
        continue;
      }
      // An image list names the item (image_urls[1]); a plain field needs no prefix.
      const where = item.field && item.field !== name ? `${item.field}: ` : "";
      append(entry.error, h("p", {}, `${where}${item.message ?? "invalid"}`));
      entry.control?.setAttribute("aria-invalid", "true");
      first ??= entry.control;
    }
    first?.focus();
    return unmatched;
  }

  hasField(name) {
    return this.controls.has(name);
  }
}


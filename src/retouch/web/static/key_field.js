// The API key field in the header of both pages: kept in localStorage (see api.js).

import { storedKey, storeKey } from "./api.js";
import { byId } from "./dom.js";

/**
 * Wires the #key-form (its #api-key input, #forget-key button). `onChange(key)` runs with
 * the stored key at once, and again whenever it is saved or forgotten.
 */
export function mountKeyField(onChange) {
  const form = byId("key-form");
  const input = byId("api-key");
  const forget = byId("forget-key");
  input.value = storedKey();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    storeKey(key);
    onChange(key);
  });
  forget.addEventListener("click", () => {
    input.value = "";
    storeKey("");
    onChange("");
  });
  onChange(input.value);
}

// The playground (`/`): pick an endpoint, fill the form its schema describes, add images,
// submit, watch the job, see the outputs. This module wires the parts together; each part
// lives in its own module.

import { Api } from "./api.js";
import { byId, h, replace, show } from "./dom.js";
import { History, loadInputs, saveInputs } from "./history.js";
import { describeReferences, ImageInputs } from "./image_inputs.js";
import { JobView } from "./job_view.js";
import { mountKeyField } from "./key_field.js";
import { SchemaForm, toJson } from "./schema_form.js";
import { Snippets } from "./snippets.js";

const ENDPOINT_STORAGE = "retouch.endpoint";

const state = {
  api: null,
  models: [],
  model: null,
  schema: null,
  form: null,
  submitting: false,
  loadToken: null, // the latest models/schema load: an older one's answer is dropped
};

const elements = {
  keyNotice: byId("key-notice"),
  loadError: byId("load-error"),
  endpoint: byId("endpoint"),
  endpointFacts: byId("endpoint-facts"),
  previewWarning: byId("preview-warning"),
  editForm: byId("edit-form"),
  fields: byId("fields"),
  formErrors: byId("form-errors"),
  submit: byId("submit"),
  submitState: byId("submit-state"),
  imageInputs: byId("image-inputs"),
  imageHolder: byId("image-holder"),
  references: byId("image-references"),
};

const currentApi = () => state.api;

const images = new ImageInputs({
  api: currentApi,
  onChange: () => {
    updateSubmit();
    renderSnippets();
  },
  onError: (error) => {
    if (error?.status === 401) rejectKey(error);
  },
});

const job = new JobView({
  api: currentApi,
  onUnauthorized: rejectKey,
  onFinished: () => history.refresh(),
  onUseAsInput: useAsInput,
  onEditAgain: editAgain,
  inputsOf: loadInputs,
});

const history = new History({
  api: currentApi,
  onOpen: (requestId) => {
    job.open(requestId);
    byId("job").scrollIntoView({ block: "nearest" });
  },
  onUnauthorized: rejectKey,
});

const snippets = new Snippets();

// --- the key ---------------------------------------------------------------------------------

function keyNotice(kind, ...content) {
  elements.keyNotice.className = `notice ${kind}`;
  elements.keyNotice.setAttribute("role", kind === "error" ? "alert" : "status");
  replace(elements.keyNotice, content);
  show(elements.keyNotice, true);
}

function askForKey() {
  keyNotice(
    "info",
    "Paste an API key above to start. ",
    h("code", {}, "retouch serve"),
    " prints one when it first starts on an empty data dir; ",
    h("code", {}, "retouch keys create --name NAME"),
    " makes more.",
  );
}

/** A 401 from any call: the key is wrong, revoked, or from another server. */
function rejectKey(error) {
  keyNotice(
    "error",
    h("strong", {}, "This key is not accepted"),
    " (HTTP 401). ",
    error?.message ? `The server says: ${error.message}` : ["Make a new one with ", h("code", {}, "retouch keys create"), "."],
  );
}

function onKey(key) {
  job.hide();
  history.clear();
  state.api = key ? new Api(key) : null;
  state.loadToken = null; // an answer still coming for the previous key is dropped
  if (!key) {
    askForKey();
    clearModels();
    return;
  }
  show(elements.keyNotice, false);
  loadModels();
}

// --- endpoints and their schema --------------------------------------------------------------

function clearModels() {
  state.models = [];
  state.model = null;
  replace(elements.endpoint, h("option", { value: "" }, "(paste a key to list the endpoints)"));
  elements.endpoint.disabled = true;
  replace(elements.endpointFacts);
  show(elements.previewWarning, false);
  show(elements.editForm, false);
  show(elements.loadError, false);
  renderSnippets();
  updateSubmit();
}

function loadFailed(what, error) {
  if (error?.status === 401) {
    rejectKey(error);
    clearModels();
    return;
  }
  replace(elements.loadError, `${what} did not load: ${error?.message ?? error}`);
  show(elements.loadError, true);
}

async function loadModels() {
  const token = Symbol("models");
  state.loadToken = token;
  try {
    const answer = await state.api.get("v1/models");
    if (state.loadToken !== token) return;
    state.models = answer.models ?? [];
  } catch (error) {
    if (state.loadToken === token) loadFailed("The endpoints", error);
    return;
  }
  show(elements.loadError, false);
  replace(
    elements.endpoint,
    state.models.map((model) =>
      h("option", { value: model.id }, model.preview ? `${model.id} (preview model)` : model.id),
    ),
  );
  elements.endpoint.disabled = state.models.length === 0;
  let preferred = "";
  try {
    preferred = localStorage.getItem(ENDPOINT_STORAGE) ?? "";
  } catch {
    preferred = "";
  }
  const chosen = state.models.find((model) => model.id === preferred) ?? state.models[0];
  history.refresh();
  if (!chosen) {
    replace(elements.loadError, "This server serves no endpoint.");
    show(elements.loadError, true);
    return;
  }
  elements.endpoint.value = chosen.id;
  await selectModel(chosen.id);
}

async function selectModel(id) {
  const model = state.models.find((each) => each.id === id);
  if (!model) return;
  state.model = model;
  try {
    localStorage.setItem(ENDPOINT_STORAGE, id);
  } catch {
    // storage disabled: the first endpoint is chosen next time
  }
  show(elements.previewWarning, model.preview === true);
  replace(
    elements.endpointFacts,
    `engine ${model.engine}, weights ${model.model}`,
    model.supports?.license ? ` · licence: ${model.supports.license}` : "",
  );
  describeReferences(elements.references, model.supports?.max_references);
  const token = Symbol("schema");
  state.loadToken = token;
  let schema;
  try {
    // The id's slashes are path segments of the route: not encoded.
    schema = await state.api.get(`v1/models/${id}/schema`);
  } catch (error) {
    if (state.loadToken === token) loadFailed("The endpoint's input schema", error);
    return;
  }
  if (state.loadToken !== token) return;
  show(elements.loadError, false);
  const previous = state.form?.values();
  state.schema = schema;
  state.form = new SchemaForm(elements.fields, schema, {
    imageField: elements.imageInputs,
    onInput: renderSnippets,
  });
  if (!state.form.imageFieldName) elements.imageHolder.append(elements.imageInputs);
  if (previous) state.form.fill(previous); // switching endpoints keeps what was typed
  show(elements.editForm, true);
  hideFormErrors();
  renderSnippets();
  updateSubmit();
}

elements.endpoint.addEventListener("change", () => selectModel(elements.endpoint.value));

// --- the request -----------------------------------------------------------------------------

/** The body to send: every field of the form (defaults too), in the schema's order. */
function currentBody() {
  if (!state.form || !state.schema) return null;
  const values = state.form.values();
  const body = {};
  for (const name of Object.keys(state.schema.properties ?? {})) {
    if (name === state.form.imageFieldName) body[name] = images.urls();
    else if (name in values) body[name] = values[name];
  }
  return body;
}

function renderSnippets() {
  const body = currentBody();
  snippets.render(body ? state.model?.id : null, body ?? {});
}

function updateSubmit() {
  const uploading = images.busy();
  const ready = Boolean(state.api && state.form && state.model);
  elements.submit.disabled = !ready || uploading || state.submitting;
  let text = "";
  if (state.submitting) text = "Sending…";
  else if (uploading) text = "Waiting for the uploads to finish…";
  else if (images.failed()) text = "Failed uploads are not sent: remove them or try again.";
  replace(elements.submitState, text);
}

/** A UUID v4 for Idempotency-Key; randomUUID exists only in secure contexts. */
function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function hideFormErrors() {
  state.form?.clearErrors();
  images.markErrors({});
  replace(elements.formErrors);
  show(elements.formErrors, false);
}

function showSubmitError(error) {
  if (error?.status === 401) rejectKey(error);
  if (error?.code === 422001 && Array.isArray(error.detail)) {
    state.form.showErrors(error.detail);
    const byImage = {};
    for (const item of error.detail) {
      const [name, index] = item?.path ?? [];
      if (name === state.form.imageFieldName && typeof index === "number") byImage[index] = item.message;
    }
    images.markErrors(byImage);
    replace(
      elements.formErrors,
      h("strong", {}, "The server refused the input (422001):"),
      h(
        "ul",
        {},
        error.detail.map((item) => h("li", {}, h("code", {}, item.field ?? "body"), ": ", item.message ?? "invalid")),
      ),
    );
  } else {
    replace(
      elements.formErrors,
      h("strong", {}, "The submit failed"),
      error?.code ? [" (", h("code", {}, String(error.code)), ")"] : "",
      `: ${error?.message ?? error}`,
    );
  }
  show(elements.formErrors, true);
}

elements.editForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (elements.submit.disabled) return;
  const body = currentBody();
  const endpoint = state.model.id;
  hideFormErrors();
  state.submitting = true;
  updateSubmit();
  try {
    const submission = await state.api.call("POST", `v1/models/${endpoint}`, {
      body: toJson(body), // not `json`: a 64-bit seed must keep its digits
      headers: { "Content-Type": "application/json", "Idempotency-Key": newIdempotencyKey() },
    });
    saveInputs(submission.request_id, endpoint, body);
    snippets.render(endpoint, body, { sent: true });
    job.follow(submission.request_id, body);
    byId("job").scrollIntoView({ block: "nearest" });
    history.refresh();
  } catch (error) {
    showSubmitError(error);
  } finally {
    state.submitting = false;
    updateSubmit();
  }
});

// --- from a result back to the form ----------------------------------------------------------

function useAsInput(url) {
  images.addUrl(url);
  elements.imageInputs.scrollIntoView({ block: "nearest" });
}

function editAgain(inputs) {
  if (!inputs || !state.form) return;
  const imageField = state.form.imageFieldName;
  const { [imageField]: urls, ...fields } = inputs;
  state.form.fill(fields);
  if (imageField) images.setUrls(urls ?? []);
  hideFormErrors();
  renderSnippets();
  byId("edit-panel").focus();
  byId("edit-panel").scrollIntoView({ block: "start" });
}

mountKeyField(onKey);

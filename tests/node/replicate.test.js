// Replicate's npm client (replicate), unmodified, against a live Retouch: only its baseUrl is
// changed. Run by tests/e2e/test_replicate_client.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import Replicate from "replicate";

const { RETOUCH_BASE, RETOUCH_KEY, IMAGE_URL } = process.env;
const replicate = new Replicate({
  auth: RETOUCH_KEY,
  baseUrl: `${RETOUCH_BASE}/replicate/v1`,
  useFileOutput: false,
});
const input = { prompt: "make it blue", image_input: [IMAGE_URL], resolution: "0.5K" };

test("run answers the edited image's URL", async () => {
  const output = await replicate.run("google/nano-banana-2", { input });
  assert.equal(typeof output, "string");
  assert.match(output, /\/v1\/files\/[0-9a-f-]{36}\/.+\.png\?/);
});

test("create, wait and get show the same prediction", async () => {
  const created = await replicate.predictions.create({ model: "google/nano-banana-2", input });
  assert.equal(created.status, "starting");
  const done = await replicate.wait(created, { interval: 200 });
  assert.equal(done.status, "succeeded");
  const fetched = await replicate.predictions.get(created.id);
  assert.equal(fetched.output, done.output);
  assert.equal(fetched.input.image_input[0], IMAGE_URL);
});

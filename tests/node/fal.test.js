// fal's npm client (@fal-ai/client), unmodified, against a live Retouch over HTTPS: its
// requests go to RETOUCH_BASE instead of fal's hosts (a requestMiddleware, the client's own
// way to reach a proxy), the test CA trusted through NODE_EXTRA_CA_CERTS. Run by
// tests/e2e/test_fal_client.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import { createFalClient } from "@fal-ai/client";

const { RETOUCH_BASE, RETOUCH_KEY, IMAGE_URL } = process.env;
const APP = "fal-ai/nano-banana-2/edit";
const fal = createFalClient({
  credentials: RETOUCH_KEY,
  requestMiddleware: async (request) => ({
    ...request,
    url: request.url
      .replace("https://queue.fal.run/", `${RETOUCH_BASE}/fal/`)
      .replace("https://fal.run/", `${RETOUCH_BASE}/fal-run/`),
  }),
});
const edit = { prompt: "make it blue", image_urls: [IMAGE_URL], resolution: "0.5K" };

test("subscribe with logs answers the edited image", async () => {
  const statuses = [];
  const result = await fal.subscribe(APP, {
    input: edit,
    logs: true,
    onQueueUpdate: (update) => statuses.push(update.status),
  });
  assert.equal(result.data.images.length, 1);
  assert.match(result.data.images[0].url, /^https:\/\/127\.0\.0\.1:\d+\/v1\/files\//);
  assert.equal(result.data.images[0].width, 512);
  assert.match(result.requestId, /^[0-9a-f-]{36}$/);
  assert.equal(statuses.at(-1), "COMPLETED");
});

test("a bad input is a 422 naming its fields", async () => {
  await assert.rejects(
    fal.queue.submit(APP, { input: { ...edit, prompt: " ", aspect_ratio: "8:1" } }),
    (error) => {
      assert.equal(error.status, 422);
      const locations = error.body.detail.map((problem) => problem.loc.join("."));
      assert.ok(locations.includes("body.prompt"), locations);
      assert.ok(locations.includes("body.aspect_ratio"), locations);
      return true;
    },
  );
});

// The page's API with `lookalike serve` behind it: the REST API (/api/…, see /docs).
// api-local.js answers the same methods with no server. Every request goes through request().
"use strict";

(function (root) {
  async function request(path, options) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      throw new Error("cannot reach the lookalike server: " + err.message);
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        const body = await response.json();
        if (body && typeof body.detail === "string") message = body.detail;
      } catch (_) {
        // not JSON: keep the status line
      }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  async function json(path, options) {
    const response = await request(path, options);
    return response.status === 204 ? null : response.json();
  }

  function pairForm(a, b) {
    const form = new FormData();
    form.append("a", a, a.name);
    form.append("b", b, b.name);
    return form;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  class ServerApi {
    constructor() {
      this.mode = "server";
    }

    health() {
      return json("api/health");
    }

    compare(a, b) {
      return json("api/compare", { method: "POST", body: pairForm(a, b) });
    }

    explain(a, b) {
      return json("api/explain?figure=false", { method: "POST", body: pairForm(a, b) });
    }

    addPair(a, b, label) {
      const form = pairForm(a, b);
      form.append("label", label);
      return json("api/pairs", { method: "POST", body: form });
    }

    listPairs() {
      return json("api/pairs");
    }

    deletePair(id) {
      return json("api/pairs/" + encodeURIComponent(id), { method: "DELETE" });
    }

    // Starts the job and polls it; onProgress gets each snapshot. Resolves with the last one.
    async train(steps, onProgress) {
      const job = await json("api/train-head", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ steps: steps }),
      });
      for (;;) {
        const snap = await json(job.url);
        if (snap.state === "succeeded") return snap;
        if (snap.state !== "running") throw new Error(snap.error || "training failed");
        onProgress(snap);
        await sleep(300);
      }
    }

    async download() {
      const response = await request("api/head/download");
      return { blob: await response.blob(), filename: "lookalike-model.zip" };
    }

    search(file, k) {
      const form = new FormData();
      form.append("image", file, file.name);
      form.append("k", String(k));
      return json("api/search", { method: "POST", body: form });
    }
  }

  root.LookalikeServerApi = ServerApi;
})(window);

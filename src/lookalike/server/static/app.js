// lookalike's page: compare two images, label pairs, train the pair head, search the index.
// Plain JavaScript, no build step, nothing loaded from anywhere but this server.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const files = { a: null, b: null };
  let health = null;
  let comparing = 0;

  // -- errors ---------------------------------------------------------------------------------

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  $("error-close").addEventListener("click", clearError);

  async function api(path, options) {
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

  async function apiJson(path, options) {
    const response = await api(path, options);
    return response.status === 204 ? null : response.json();
  }

  // -- model info -----------------------------------------------------------------------------

  async function loadHealth() {
    health = await apiJson("/api/health");
    const size = health.input_size.join("×") + (health.channels === 1 ? " grayscale" : "");
    $("model-info").textContent =
      `Model ${health.model} (${health.backbone}, ${size}, ${health.embedding_dim}-d embeddings)` +
      (health.has_head ? ", with a trained pair head" : ", no pair head yet");
    $("small-model-hint").hidden = !health.small_model;
    $("search-section").hidden = !health.has_index;
    $("footer").textContent = `lookalike ${health.version}`;
    return health;
  }

  // -- choosing images ------------------------------------------------------------------------

  function fmt(value) {
    return value === null || value === undefined ? "n/a" : value.toFixed(4);
  }

  function setFile(side, file) {
    if (!file) return;
    clearError();
    const thumb = $("thumb-" + side);
    if (thumb.dataset.url) URL.revokeObjectURL(thumb.dataset.url);
    thumb.dataset.url = URL.createObjectURL(file);
    thumb.onload = () => thumb.classList.toggle("tiny", Math.max(thumb.naturalWidth, thumb.naturalHeight) < 96);
    thumb.src = thumb.dataset.url;
    thumb.hidden = false;
    $("drop-" + side).classList.add("has-image");
    if (side === "q") {
      search(file);
      return;
    }
    files[side] = file;
    if (files.a && files.b) compare();
  }

  function wireDrop(side) {
    const zone = $("drop-" + side);
    const input = $("file-" + side);
    input.addEventListener("change", () => setFile(side, input.files[0]));
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      const dropped = event.dataTransfer && event.dataTransfer.files[0];
      if (dropped) setFile(side, dropped);
    });
    zone.addEventListener("click", (event) => {
      if (event.target.tagName !== "LABEL" && event.target !== input) input.click();
    });
    zone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        input.click();
      }
    });
  }

  function pairForm() {
    const form = new FormData();
    form.append("a", files.a, files.a.name);
    form.append("b", files.b, files.b.name);
    return form;
  }

  // -- compare and explain --------------------------------------------------------------------

  async function compare() {
    const ticket = ++comparing;
    $("result").hidden = false;
    $("result").dataset.busy = "true";
    $("verdict").textContent = "Comparing…";
    $("verdict").className = "verdict";
    try {
      const r = await apiJson("/api/compare", { method: "POST", body: pairForm() });
      if (ticket !== comparing) return;
      showScores(r);
      $("result").dataset.busy = "false";
      if (health && health.explain_available) explain(ticket);
    } catch (err) {
      if (ticket !== comparing) return;
      $("verdict").textContent = "";
      $("result").dataset.busy = "false";
      showError(err.message);
    }
  }

  function showScores(r) {
    $("cosine").textContent = fmt(r.cosine);
    $("euclidean").textContent = fmt(r.euclidean);
    $("probability").textContent = fmt(r.probability);
    $("probability-note").textContent =
      r.probability === null ? "no pair head yet: label pairs and train one" : "from the trained pair head";
    const verdict = $("verdict");
    if (r.same === null) {
      verdict.textContent = "No calibrated threshold: judge by the scores (low distance means same).";
      verdict.className = "verdict unknown";
    } else {
      const lowIsSame = r.metric === "euclidean";
      const shown = lowIsSame ? (r.same ? "≤" : ">") : r.same ? "≥" : "<";
      const name = r.metric === "probability" ? "P(same)" : r.metric;
      verdict.textContent =
        (r.same ? "Same" : "Different") + ` (${name} ${shown} ${r.threshold.toFixed(3)})`;
      verdict.className = "verdict " + (r.same ? "same" : "different");
    }
    verdict.dataset.same = String(r.same);
  }

  async function explain(ticket) {
    try {
      const r = await apiJson("/api/explain?figure=false", { method: "POST", body: pairForm() });
      if (ticket !== comparing) return;
      for (const heat of r.heatmaps) {
        if (heat.name === "a" || heat.name === "b") {
          $("heat-" + heat.name).src = "data:image/png;base64," + heat.png_base64;
        }
      }
      $("heatmaps").hidden = false;
    } catch (err) {
      if (ticket === comparing && err.status !== 501) showError(err.message);
    }
  }

  // -- labelled pairs -------------------------------------------------------------------------

  async function addPair(label) {
    if (!files.a || !files.b) {
      showError("choose two images first");
      return;
    }
    clearError();
    const form = pairForm();
    form.append("label", label);
    try {
      await apiJson("/api/pairs", { method: "POST", body: form });
      await loadPairs();
    } catch (err) {
      showError(err.message);
    }
  }

  async function loadPairs() {
    const data = await apiJson("/api/pairs");
    $("pair-counts").textContent = `(${data.same} similar, ${data.different} different)`;
    const list = $("pairs");
    list.replaceChildren();
    for (const pair of data.pairs) {
      const item = document.createElement("li");
      item.className = "pair " + pair.label;
      for (const url of [pair.a_url, pair.b_url]) {
        const img = document.createElement("img");
        img.src = url;
        img.alt = "";
        img.loading = "lazy";
        item.append(img);
      }
      const label = document.createElement("span");
      label.className = "pair-label";
      label.textContent = pair.label === "same" ? "similar" : "different";
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link delete";
      remove.textContent = "delete";
      remove.setAttribute("aria-label", "Delete this pair");
      remove.addEventListener("click", async () => {
        try {
          await apiJson("/api/pairs/" + pair.id, { method: "DELETE" });
          await loadPairs();
        } catch (err) {
          showError(err.message);
        }
      });
      item.append(label, remove);
      list.append(item);
    }
  }

  // -- training -------------------------------------------------------------------------------

  async function train() {
    clearError();
    const steps = parseInt($("steps").value, 10) || 300;
    $("train").disabled = true;
    try {
      const job = await apiJson("/api/train-head", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ steps: steps }),
      });
      $("job").hidden = false;
      await poll(job.url);
    } catch (err) {
      showError(err.message);
    } finally {
      $("train").disabled = false;
    }
  }

  function percent(value) {
    return value === null || value === undefined ? "n/a" : (100 * value).toFixed(0) + "%";
  }

  async function poll(url) {
    for (;;) {
      const job = await apiJson(url);
      const bar = $("job-progress");
      bar.max = Math.max(1, job.total);
      bar.value = job.step;
      const text = $("job-text");
      if (job.state === "running") {
        text.textContent =
          job.phase === "embedding"
            ? "Embedding the labelled images…"
            : `Training: step ${job.step}/${job.total}, loss ${job.loss.toFixed(4)}`;
      } else if (job.state === "succeeded") {
        bar.value = bar.max;
        let summary = `Trained on ${job.n_train} pairs: training accuracy ${percent(job.train_accuracy)}`;
        if (job.holdout_accuracy !== null) {
          summary += `, held-out accuracy ${percent(job.holdout_accuracy)} on ${job.n_holdout} pairs` +
            ` (cosine threshold: ${percent(job.cosine_holdout_accuracy)})`;
        }
        text.textContent = summary + ". Compare now answers with P(same).";
        text.dataset.state = "succeeded";
        await loadHealth();
        if (files.a && files.b) compare();
        return;
      } else {
        text.textContent = "Training failed.";
        text.dataset.state = "failed";
        throw new Error(job.error || "training failed");
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }

  async function download() {
    clearError();
    try {
      const response = await api("/api/head/download");
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = "lookalike-model.zip";
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      showError(err.message);
    }
  }

  // -- search ---------------------------------------------------------------------------------

  async function search(file) {
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("k", "12");
    const list = $("hits");
    list.replaceChildren();
    try {
      const data = await apiJson("/api/search", { method: "POST", body: form });
      for (const hit of data.hits) {
        const item = document.createElement("li");
        const img = document.createElement("img");
        img.src = hit.url;
        img.alt = hit.path;
        img.loading = "lazy";
        const caption = document.createElement("span");
        caption.textContent = `${hit.score.toFixed(3)} ${hit.path}`;
        item.append(img, caption);
        list.append(item);
      }
      if (!data.hits.length) list.textContent = "The index is empty.";
    } catch (err) {
      showError(err.message);
    }
  }

  // -- start ----------------------------------------------------------------------------------

  wireDrop("a");
  wireDrop("b");
  wireDrop("q");
  $("label-same").addEventListener("click", () => addPair("same"));
  $("label-different").addEventListener("click", () => addPair("different"));
  $("train").addEventListener("click", train);
  $("download").addEventListener("click", download);
  Promise.all([loadHealth(), loadPairs()]).catch((err) => showError(err.message));
})();

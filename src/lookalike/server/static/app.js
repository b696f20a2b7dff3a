// lookalike's page: compare two images, label pairs, train the pair head, search the index.
// Plain JavaScript, no build step, nothing loaded from anywhere but where the page came from.
//
// One page, two back ends, chosen at start-up by <meta name="lookalike-api">: "server" is the
// REST API of `lookalike serve` (api-server.js); "local" is the static site of `lookalike
// export --web` (api-local.js: ONNX Runtime Web embeds, TensorFlow.js trains the head), whose
// scripts are loaded only then. Both answer the same methods with the same objects.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const files = { a: null, b: null };
  let health = null;
  let comparing = 0;
  let api = null;

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

  // -- model info -----------------------------------------------------------------------------

  async function loadHealth() {
    health = await api.health();
    const size = health.input_size.join("×") + (health.channels === 1 ? " grayscale" : "");
    $("model-info").textContent =
      `Model ${health.model} (${health.backbone}, ${size}, ${health.embedding_dim}-d embeddings)` +
      (health.has_head ? ", with a trained pair head" : ", no pair head yet") +
      (api.mode === "local" ? ". It runs in this browser: no image leaves it." : "");
    $("small-model-hint").hidden = !health.small_model;
    $("search-section").hidden = !health.has_index;
    $("load-head-label").hidden = api.mode !== "local";
    $("docs-link").hidden = api.mode !== "server";
    $("download").textContent = api.mode === "local" ? "Download head" : "Download model";
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

  // -- compare and explain --------------------------------------------------------------------

  async function compare() {
    const ticket = ++comparing;
    $("result").hidden = false;
    $("result").dataset.busy = "true";
    $("verdict").textContent = "Comparing…";
    $("verdict").className = "verdict";
    try {
      const r = await api.compare(files.a, files.b);
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
    $("probability").dataset.value = r.probability === null ? "" : String(r.probability);
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
      const r = await api.explain(files.a, files.b);
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
    try {
      await api.addPair(files.a, files.b, label);
      await loadPairs();
    } catch (err) {
      showError(err.message);
    }
  }

  async function loadPairs() {
    const data = await api.listPairs();
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
          await api.deletePair(pair.id);
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

  function percent(value) {
    return value === null || value === undefined ? "n/a" : (100 * value).toFixed(0) + "%";
  }

  // The loss per step (an epoch over the pairs in the page) as a line, scaled to its maximum.
  function drawLosses(losses, total) {
    const top = Math.max(...losses.filter((v) => v !== undefined), 1e-9);
    const points = [];
    losses.forEach((loss, i) => {
      if (loss !== undefined) points.push(`${((100 * (i + 1)) / total).toFixed(2)},${(30 - (28 * loss) / top).toFixed(2)}`);
    });
    $("loss-line").setAttribute("points", points.join(" "));
    $("loss-curve").hidden = false;
  }

  async function train() {
    clearError();
    const steps = parseInt($("steps").value, 10) || 300;
    const bar = $("job-progress");
    const text = $("job-text");
    let firstLoss = null;
    const losses = [];
    $("loss-curve").hidden = true;
    $("loss-line").setAttribute("points", "");
    $("train").disabled = true;
    $("job").hidden = false;
    text.dataset.state = "running";
    const show = (job) => {
      bar.max = Math.max(1, job.total);
      bar.value = job.step;
      if (job.phase === "embedding") {
        text.textContent = "Embedding the labelled images…";
        return;
      }
      if (firstLoss === null && job.loss !== null) firstLoss = job.loss;
      if (job.loss !== null) {
        losses[job.step - 1] = job.loss;
        drawLosses(losses, job.total);
      }
      text.textContent = `Training: ${job.unit || "step"} ${job.step}/${job.total}, loss ${job.loss.toFixed(4)}`;
    };
    try {
      const job = await api.train(steps, show);
      bar.value = bar.max;
      let summary = `Trained on ${job.n_train} pairs: training accuracy ${percent(job.train_accuracy)}`;
      if (job.holdout_accuracy !== null && job.holdout_accuracy !== undefined) {
        summary += `, held-out accuracy ${percent(job.holdout_accuracy)} on ${job.n_holdout} pairs` +
          ` (cosine threshold: ${percent(job.cosine_holdout_accuracy)})`;
      }
      if (firstLoss !== null && job.loss !== null && job.loss !== undefined) {
        summary += `; loss ${firstLoss.toFixed(4)} → ${job.loss.toFixed(4)}`;
        text.dataset.firstLoss = String(firstLoss);
        text.dataset.lastLoss = String(job.loss);
      }
      text.textContent = summary + ". Compare now answers with P(same).";
      text.dataset.state = "succeeded";
      await loadHealth();
      if (files.a && files.b) compare();
    } catch (err) {
      text.textContent = "Training failed.";
      text.dataset.state = "failed";
      showError(err.message);
    } finally {
      $("train").disabled = false;
    }
  }

  async function download() {
    clearError();
    try {
      const { blob, filename } = await api.download();
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = filename;
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
    const list = $("hits");
    list.replaceChildren();
    try {
      const data = await api.search(file, 12);
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

  // -- a head file (the page with no server) ---------------------------------------------------

  async function loadHead(file) {
    if (!file) return;
    clearError();
    try {
      await api.loadHead(file);
      await loadHealth();
      if (files.a && files.b) compare();
    } catch (err) {
      showError(err.message);
    }
  }

  // -- start ----------------------------------------------------------------------------------

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error(`cannot load ${src}: run lookalike export --web again`));
      document.head.append(script);
    });
  }

  // The back end <meta name="lookalike-api"> names: "server" (default) or "local".
  async function chooseApi() {
    const meta = document.querySelector('meta[name="lookalike-api"]');
    if (!meta || meta.content !== "local") return new window.LookalikeServerApi();
    $("model-info").textContent = "Loading the model into this browser…";
    for (const src of ["vendor/ort.wasm.min.js", "vendor/tf.min.js", "pixels.js", "headfile.js", "api-local.js"]) {
      await loadScript("static/" + src);
    }
    return window.LookalikeLocalApi.create(document.baseURI);
  }

  wireDrop("a");
  wireDrop("b");
  wireDrop("q");
  $("label-same").addEventListener("click", () => addPair("same"));
  $("label-different").addEventListener("click", () => addPair("different"));
  $("train").addEventListener("click", train);
  $("download").addEventListener("click", download);
  $("load-head").addEventListener("change", () => loadHead($("load-head").files[0]));
  chooseApi()
    .then((chosen) => {
      api = chosen;
      window.lookalike = { api };
      return Promise.all([loadHealth(), loadPairs()]);
    })
    .then(() => document.body.setAttribute("data-ready", "true"))
    .catch((err) => showError(err.message));
})();

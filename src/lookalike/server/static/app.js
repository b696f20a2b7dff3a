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
  let pairs = []; // the labelled pairs as the back end lists them, oldest first
  let pairPage = -1; // -1: the last page
  const PAGE_SIZE = 10;
  const tray = []; // {file, name, url}: the images dropped to label
  let picking = "a"; // which side a click on a tray image fills next
  let cursor = null; // [i, j]: the tray pair shown, when it came from the tray

  // What "same" means for a near-duplicate verdict (lookalike.inference.comparison).
  const NEAR_DUPLICATE_MEANING =
    "the same picture after edits (crop, resize, recompression, colour, captions), " +
    "not the same object or person";

  // -- errors: each where its action was --------------------------------------------------------

  // The start-up error (the model or the back end would not load) takes the banner.
  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  // An action's error, shown next to the control that started it (an .inline-error).
  function fail(where, message) {
    const box = $(where + "-error");
    box.textContent = message;
    box.hidden = false;
  }

  function ok(where) {
    const box = $(where + "-error");
    box.hidden = true;
    box.textContent = "";
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

  function showThumb(side, file) {
    const thumb = $("thumb-" + side);
    if (thumb.dataset.url) URL.revokeObjectURL(thumb.dataset.url);
    thumb.dataset.url = URL.createObjectURL(file);
    thumb.onload = () => {
      thumb.hidden = false;
      thumb.classList.toggle("tiny", Math.max(thumb.naturalWidth, thumb.naturalHeight) < 96);
    };
    thumb.onerror = () => {
      thumb.hidden = true; // no broken-image icon: the error says what is wrong
    };
    thumb.hidden = true;
    thumb.src = thumb.dataset.url;
    $("drop-" + side).classList.add("has-image");
    const name = $("name-" + side);
    if (name) name.textContent = file.name;
  }

  // A new image for A or B: the scores, verdict and heatmaps of the old pair go at once.
  function setFile(side, file, fromTray) {
    if (!file) return;
    ok(side === "q" ? "search" : "compare");
    showThumb(side, file);
    if (side === "q") {
      search(file);
      return;
    }
    if (!fromTray) cursor = null;
    files[side] = file;
    clearResult();
    markTray();
    if (files.a && files.b) compare();
  }

  function clearResult() {
    comparing++; // an answer still on its way is for the old pair: it is dropped
    for (const id of ["cosine", "euclidean", "probability"]) $(id).textContent = "–";
    $("probability").dataset.value = "";
    $("probability-note").textContent = "";
    $("verdict").textContent = "";
    $("verdict").className = "verdict";
    delete $("verdict").dataset.same;
    $("verdict-meaning").hidden = true;
    $("warnings").hidden = true;
    $("warnings").replaceChildren();
    $("heatmaps").hidden = true;
    $("heatmaps-loading").hidden = true;
    for (const side of ["a", "b"]) $("heat-" + side).removeAttribute("src");
    $("label-status").textContent = "";
    ok("label");
    $("result").hidden = !(files.a && files.b);
  }

  function wireDrop(side, onFiles) {
    const zone = $("drop-" + side);
    const input = $("file-" + side);
    const take = (list) => (onFiles ? onFiles(Array.from(list)) : list[0] && setFile(side, list[0]));
    input.addEventListener("change", () => {
      take(input.files);
      if (onFiles) input.value = "";
    });
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      if (event.dataTransfer && event.dataTransfer.files.length) take(event.dataTransfer.files);
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
    $("verdict").className = "verdict loading";
    for (const id of ["cosine", "euclidean", "probability"]) $(id).textContent = "…";
    try {
      const r = await api.compare(files.a, files.b);
      if (ticket !== comparing) return;
      showScores(r);
      $("result").dataset.busy = "false";
      if (cursor) $("label-bar").scrollIntoView({ block: "nearest" }); // the label keys in view
      if (health && health.explain_available) explain(ticket);
    } catch (err) {
      if (ticket !== comparing) return;
      clearResult();
      $("result").hidden = true;
      $("result").dataset.busy = "false";
      fail("compare", err.message);
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
    const meaning = $("verdict-meaning");
    meaning.hidden = true;
    if (r.same === null || r.same === undefined) {
      verdict.textContent = "No calibrated threshold: judge by the scores (low distance means same).";
      verdict.className = "verdict unknown";
    } else {
      const lowIsSame = r.metric === "euclidean";
      const shown = lowIsSame ? (r.same ? "≤" : ">") : r.same ? "≥" : "<";
      const near = r.metric === "near_duplicate";
      const name = r.metric === "probability" ? "P(same)" : near ? "cosine" : r.metric;
      const word = near ? (r.same ? "Same picture" : "Not the same picture") : r.same ? "Same" : "Different";
      verdict.textContent = word + ` (${name} ${shown} ${r.threshold.toFixed(3)})`;
      verdict.className = "verdict " + (r.same ? "same" : "different");
      if (near) {
        meaning.textContent = `Near-duplicate check: "same" means ${NEAR_DUPLICATE_MEANING}.`;
        meaning.hidden = false;
      }
    }
    verdict.dataset.same = String(r.same);
    const list = $("warnings");
    list.replaceChildren();
    for (const line of r.warnings || []) {
      const item = document.createElement("li");
      item.textContent = line;
      list.append(item);
    }
    list.hidden = list.children.length === 0;
  }

  async function explain(ticket) {
    $("heatmaps").hidden = true;
    $("heatmaps-loading").hidden = false;
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
      if (ticket === comparing && err.status !== 501) fail("compare", err.message);
    } finally {
      if (ticket === comparing) $("heatmaps-loading").hidden = true;
    }
  }

  // -- the tray: many images, pairs picked from them ----------------------------------------------

  function addToTray(list) {
    ok("tray");
    const images = list.filter((f) => !f.type || f.type.startsWith("image/"));
    const skipped = list.length - images.length;
    const known = new Set(tray.map((t) => t.name + "\u0000" + t.file.size));
    let added = 0;
    for (const file of images) {
      const key = file.name + "\u0000" + file.size;
      if (known.has(key)) continue;
      known.add(key);
      tray.push({ file, name: file.name, url: URL.createObjectURL(file) });
      added++;
    }
    drawTray();
    if (skipped) fail("tray", `${skipped} file(s) skipped: not images`);
    if (added && !(files.a && files.b)) nextPair();
  }

  function drawTray() {
    const list = $("tray");
    list.replaceChildren();
    tray.forEach((item, i) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "tray-item";
      button.dataset.index = String(i);
      button.title = `${item.name}: click to use as image ${picking.toUpperCase()}`;
      const img = document.createElement("img");
      img.src = item.url;
      img.alt = "";
      img.onerror = () => img.classList.add("broken");
      const name = document.createElement("span");
      name.className = "tray-name";
      name.textContent = item.name;
      button.append(img, name);
      button.addEventListener("click", () => pickFromTray(i));
      li.append(button);
      list.append(li);
    });
    $("next-pair").hidden = tray.length < 2;
    markTray();
  }

  function markTray() {
    for (const button of document.querySelectorAll("#tray .tray-item")) {
      const file = tray[Number(button.dataset.index)].file;
      button.classList.toggle("is-a", file === files.a);
      button.classList.toggle("is-b", file === files.b);
    }
  }

  function pickFromTray(i) {
    const side = picking;
    picking = side === "a" ? "b" : "a";
    if (side === "a") files.b = null; // a new pair starts with A
    setFile(side, tray[i].file, false);
    if (side === "a") {
      $("thumb-b").hidden = true;
      $("name-b").textContent = "";
      $("drop-b").classList.remove("has-image");
    }
  }

  // Unordered name pair: the same two images in either order.
  const pairKey = (x, y) => (x < y ? x + "\u0000" + y : y + "\u0000" + x);

  function labelledKeys() {
    return new Set(pairs.map((p) => pairKey(p.a_name, p.b_name)));
  }

  // The next pair of tray images (in order) with no label yet; false when there is none.
  function nextPair() {
    ok("label");
    if (tray.length < 2) {
      fail("tray", "drop at least two images here to label pairs");
      return false;
    }
    const done = labelledKeys();
    const n = tray.length;
    const start = cursor ? cursor[0] * n + cursor[1] + 1 : 0;
    for (let k = 0; k < n * n; k++) {
      const flat = (start + k) % (n * n);
      const i = Math.floor(flat / n);
      const j = flat % n;
      if (j <= i) continue;
      if (done.has(pairKey(tray[i].name, tray[j].name))) continue;
      cursor = [i, j];
      picking = "a";
      files.a = tray[i].file;
      files.b = tray[j].file;
      showThumb("a", files.a);
      setFile("b", files.b, true);
      return true;
    }
    $("label-status").textContent = "Every pair of these images is labelled.";
    return false;
  }

  // -- labelled pairs -------------------------------------------------------------------------

  async function addPair(label) {
    if (!files.a || !files.b) {
      fail(tray.length ? "tray" : "compare", "choose two images first (A and B)");
      return;
    }
    ok("label");
    const [a, b] = [files.a, files.b];
    $("label-status").textContent = "Saving the label…";
    try {
      await api.addPair(a, b, label);
      await loadPairs();
      $("label-status").textContent = `Labelled ${a.name} & ${b.name}: ${label}.`;
      if (cursor && files.a === a && files.b === b) nextPair();
    } catch (err) {
      $("label-status").textContent = "";
      fail("label", err.message);
    }
  }

  async function loadPairs() {
    const data = await api.listPairs();
    pairs = data.pairs;
    $("pair-counts").textContent = `(${data.same} same, ${data.different} different)`;
    drawPairs();
  }

  function drawPairs() {
    const pages = Math.max(1, Math.ceil(pairs.length / PAGE_SIZE));
    const page = pairPage < 0 || pairPage >= pages ? pages - 1 : pairPage;
    const list = $("pairs");
    list.replaceChildren();
    for (const pair of pairs.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE)) {
      const item = document.createElement("li");
      item.className = "pair " + pair.label;
      for (const url of [pair.a_url, pair.b_url]) {
        const img = document.createElement("img");
        img.src = url;
        img.alt = "";
        img.loading = "lazy";
        item.append(img);
      }
      const names = document.createElement("span");
      names.className = "pair-names";
      names.textContent = `${pair.a_name} · ${pair.b_name}`;
      names.title = names.textContent;
      const label = document.createElement("span");
      label.className = "pair-label";
      label.textContent = pair.label;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link delete";
      remove.textContent = "delete";
      remove.setAttribute("aria-label", `Delete the pair ${pair.a_name}, ${pair.b_name}`);
      remove.addEventListener("click", async () => {
        ok("pairs");
        try {
          await api.deletePair(pair.id);
          await loadPairs();
        } catch (err) {
          fail("pairs", err.message);
        }
      });
      item.append(names, label, remove);
      list.append(item);
    }
    $("pager").hidden = pages < 2;
    $("pairs-page").textContent = `page ${page + 1} of ${pages} (${pairs.length} pairs)`;
    $("pairs-prev").disabled = page === 0;
    $("pairs-next").disabled = page === pages - 1;
    $("pairs-prev").onclick = () => {
      pairPage = page - 1;
      drawPairs();
    };
    $("pairs-next").onclick = () => {
      pairPage = page + 1 === pages - 1 ? -1 : page + 1;
      drawPairs();
    };
  }

  // -- CSV: a,b,label, as `lookalike train-head --pairs` reads it (lookalike.data.pairs) ------------

  function csvCell(text) {
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function exportCsv() {
    ok("pairs");
    if (!pairs.length) {
      fail("pairs", "no labelled pairs to export yet");
      return;
    }
    const lines = ["a,b,label", ...pairs.map((p) => [p.a_name, p.b_name, p.label].map(csvCell).join(","))];
    const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
    save(blob, "pairs.csv");
    $("pairs-status").textContent =
      `Exported ${pairs.length} pairs. Put pairs.csv beside the images for lookalike train-head --pairs pairs.csv.`;
  }

  function parseCsv(text) {
    const rows = [];
    let row = [];
    let cell = "";
    let quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') {
          cell += '"';
          i++;
        } else if (c === '"') quoted = false;
        else cell += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") {
        row.push(cell);
        cell = "";
      } else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(cell);
        rows.push(row);
        row = [];
        cell = "";
      } else cell += c;
    }
    if (cell !== "" || row.length) {
      row.push(cell);
      rows.push(row);
    }
    return rows;
  }

  const SAME = new Set(["1", "same", "true", "yes"]);
  const DIFFERENT = new Set(["0", "different", "false", "no"]);
  const baseName = (path) => path.trim().replace(/\\/g, "/").split("/").pop();

  async function importCsv(file) {
    if (!file) return;
    ok("pairs");
    const byName = new Map(tray.map((t) => [t.name, t.file]));
    const rows = parseCsv(await file.text()).filter((r) => r.some((c) => c.trim()));
    if (rows.length && rows[0].slice(0, 2).map((c) => c.trim().toLowerCase()).join(",") === "a,b") rows.shift();
    const missing = new Set();
    const problems = [];
    let added = 0;
    let duplicates = 0;
    $("pairs-status").textContent = `Importing ${rows.length} pairs…`;
    for (const [number, row] of rows.entries()) {
      const label = row.length > 2 ? row[2].trim().toLowerCase() : "";
      const value = SAME.has(label) ? "same" : DIFFERENT.has(label) ? "different" : null;
      if (row.length < 2 || value === null) {
        problems.push(`row ${number + 1}: expected a,b,label with label same/different or 1/0`);
        continue;
      }
      const [a, b] = [byName.get(baseName(row[0])), byName.get(baseName(row[1]))];
      if (!a) missing.add(baseName(row[0]));
      if (!b) missing.add(baseName(row[1]));
      if (!a || !b) continue;
      try {
        await api.addPair(a, b, value);
        added++;
      } catch (err) {
        if (err.status === 409 && /already labelled/.test(err.message)) duplicates++;
        else problems.push(`row ${number + 1}: ${err.message}`);
      }
    }
    await loadPairs();
    let summary = `Imported ${added} of ${rows.length} pairs from ${file.name}`;
    if (duplicates) summary += `; ${duplicates} already labelled`;
    $("pairs-status").textContent = summary + ".";
    if (missing.size || problems.length) {
      const names = Array.from(missing);
      const parts = [];
      if (names.length) {
        parts.push(
          `${names.length} image name(s) are not among the images dropped above: ` +
            names.slice(0, 5).join(", ") + (names.length > 5 ? ", …" : "") + " (drop them first)"
        );
      }
      parts.push(...problems.slice(0, 3));
      fail("pairs", parts.join("; "));
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

  // "75% on 4 held-out pairs": a figure with its sample size.
  function onPairs(value, n) {
    return `${percent(value)} on ${n} held-out pair${n === 1 ? "" : "s"}`;
  }

  async function train() {
    ok("train");
    const steps = parseInt($("steps").value, 10) || 300;
    const bar = $("job-progress");
    const text = $("job-text");
    const button = $("train");
    let firstLoss = null;
    const losses = [];
    $("loss-curve").hidden = true;
    $("job-choice").hidden = true;
    $("loss-line").setAttribute("points", "");
    button.disabled = true;
    button.textContent = "Training…";
    bar.value = 0;
    bar.removeAttribute("value"); // indeterminate until the first step
    text.textContent = "Starting…";
    $("job").hidden = false;
    text.dataset.state = "running";
    let started = false;
    const show = (job) => {
      started = true;
      bar.max = Math.max(1, job.total);
      if (job.phase === "embedding") {
        text.textContent = "Embedding the labelled images…";
        return;
      }
      bar.value = job.step;
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
        summary += `; held-out accuracy ${onPairs(job.holdout_accuracy, job.n_holdout)}`;
        if (job.cosine_holdout_accuracy !== null && job.cosine_holdout_accuracy !== undefined) {
          summary += ` (plain cosine: ${onPairs(job.cosine_holdout_accuracy, job.n_holdout)})`;
        }
      } else {
        summary += "; no pairs held out (label 8 or more to measure it)";
      }
      if (firstLoss !== null && job.loss !== null && job.loss !== undefined) {
        summary += `; loss ${firstLoss.toFixed(4)} → ${job.loss.toFixed(4)}`;
        text.dataset.firstLoss = String(firstLoss);
        text.dataset.lastLoss = String(job.loss);
      }
      text.textContent = summary + ".";
      const choice = $("job-choice");
      choice.dataset.used = job.used || "head";
      await loadHealth();
      if (job.used === "cosine") {
        choice.textContent =
          `The new head did worse than plain cosine on the held-out pairs ` +
          `(${percent(job.holdout_accuracy)} vs ${percent(job.cosine_holdout_accuracy)} on ${job.n_holdout}), ` +
          "so it is not used: compare keeps using " +
          (health.has_head ? "the head it had" : "cosine") + ". Label more pairs and train again.";
      } else {
        choice.textContent = "Compare now answers with the new head's P(same).";
      }
      choice.hidden = false;
      text.dataset.state = "succeeded";
      if (files.a && files.b) compare();
    } catch (err) {
      text.textContent = "Training failed.";
      text.dataset.state = "failed";
      bar.value = 0;
      $("job").hidden = !started; // refused before it began: the error alone says why
      fail("train", err.message);
    } finally {
      button.disabled = false;
      button.textContent = "Train head";
    }
  }

  function save(blob, filename) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  async function download() {
    ok("train");
    try {
      const { blob, filename } = await api.download();
      save(blob, filename);
    } catch (err) {
      fail("train", err.message);
    }
  }

  // -- search ---------------------------------------------------------------------------------

  async function search(file) {
    const list = $("hits");
    list.replaceChildren();
    list.dataset.busy = "true";
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
      fail("search", err.message);
    } finally {
      list.dataset.busy = "false";
    }
  }

  // -- a head file (the page with no server) ---------------------------------------------------

  async function loadHead(file) {
    if (!file) return;
    ok("train");
    try {
      await api.loadHead(file);
      await loadHealth();
      if (files.a && files.b) compare();
    } catch (err) {
      fail("train", err.message);
    }
  }

  // -- the keyboard: S same, D different, N or → next pair ----------------------------------------

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    const key = event.key.toLowerCase();
    if (key === "s" || key === "d") {
      event.preventDefault();
      addPair(key === "s" ? "same" : "different");
    } else if (key === "n" || key === "arrowright") {
      event.preventDefault();
      nextPair();
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
  wireDrop("tray", addToTray);
  $("label-same").addEventListener("click", () => addPair("same"));
  $("label-different").addEventListener("click", () => addPair("different"));
  $("next-pair").addEventListener("click", nextPair);
  $("train").addEventListener("click", train);
  $("download").addEventListener("click", download);
  $("export-csv").addEventListener("click", exportCsv);
  $("import-csv").addEventListener("change", () => {
    importCsv($("import-csv").files[0]).catch((err) => fail("pairs", err.message));
    $("import-csv").value = "";
  });
  $("load-head").addEventListener("change", () => loadHead($("load-head").files[0]));
  document.addEventListener("keydown", onKey);
  chooseApi()
    .then((chosen) => {
      api = chosen;
      window.lookalike = { api };
      return Promise.all([loadHealth(), loadPairs()]);
    })
    .then(() => document.body.setAttribute("data-ready", "true"))
    .catch((err) => showError(err.message));
})();

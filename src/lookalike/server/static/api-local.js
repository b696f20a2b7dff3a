// The page's API with no server (`lookalike export MODEL --web`): ONNX Runtime Web runs the
// embedding network (WebAssembly), TensorFlow.js trains seed 000's pair head, a head file
// (headfile.js) carries it to and from Python. Same methods and answers as api-server.js.
//
// site.json (written by lookalike.web.build_site) describes the model: its ONNX file, input
// and output names, preprocessing, embedding size, thresholds, model key and optional head.
"use strict";

(function (root) {
  const MIN_PAIRS = 4; // as lookalike.server.state.MIN_PAIRS
  const DEFAULT_HEAD = { hidden: [256, 64], dropout: 0.25 }; // lookalike.model.layers.PairHead

  // A content hash of the file's bytes: the embedding cache's key.
  async function contentKey(buffer) {
    if (root.crypto && root.crypto.subtle) {
      const digest = await root.crypto.subtle.digest("SHA-256", buffer);
      return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
    }
    // Not a secure context (plain http to another host): 2×32-bit FNV-1a and the length.
    const bytes = new Uint8Array(buffer);
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193;
    for (let i = 0; i < bytes.length; i++) {
      h1 = Math.imul(h1 ^ bytes[i], 16777619);
      h2 = Math.imul(h2 ^ bytes[i], 2246822519);
    }
    return `${(h1 >>> 0).toString(16)}${(h2 >>> 0).toString(16)}-${bytes.length}`;
  }

  function scores(a, b) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    let sq = 0;
    for (let i = 0; i < a.length; i++) {
      dot += a[i] * b[i];
      na += a[i] * a[i];
      nb += b[i] * b[i];
      sq += (a[i] - b[i]) ** 2;
    }
    return { cosine: dot / Math.max(Math.sqrt(na) * Math.sqrt(nb), 1e-12), euclidean: Math.sqrt(sq) };
  }

  // As lookalike.model.domain.DomainRecord.score: squared Mahalanobis distance per dimension
  // over the record's principal directions plus one shared variance for the rest.
  function domainScore(record, e) {
    const d = record.dim;
    const c = new Float64Array(d);
    let total = 0;
    for (let i = 0; i < d; i++) {
      c[i] = e[i] - record.mean[i];
      total += c[i] * c[i];
    }
    let inside = 0;
    let along = 0;
    record.components.forEach((row, k) => {
      let a = 0;
      for (let i = 0; i < d; i++) a += c[i] * row[i];
      inside += (a * a) / record.variances[k];
      along += a * a;
    });
    return (inside + Math.max(total - along, 0) / record.residual_variance) / d;
  }

  // As lookalike.inference.domain.flag_inputs: one warning per input outside the domain.
  function domainWarnings(record, embeddings, names) {
    if (!record) return [];
    const out = [];
    embeddings.forEach((e, k) => {
      const score = domainScore(record, e);
      if (!(score > record.threshold)) return;
      out.push(
        `${names[k]} looks unlike the ${record.source} this model was trained on ` +
          `(domain score ${score.toFixed(2)} > ${record.threshold.toFixed(2)}, ${record.context})` +
          ": its scores and verdict may mean nothing"
      );
    });
    return out;
  }

  function absDiff(a, b) {
    const out = new Float32Array(a.length);
    for (let i = 0; i < a.length; i++) out[i] = Math.abs(a[i] - b[i]);
    return out;
  }

  // As lookalike.inference.comparison.decide: P(same), then cosine, then euclidean.
  function decide(thresholds, cosine, euclidean, probability) {
    const order = [
      ["probability", probability, true],
      ["cosine", cosine, true],
      ["euclidean", euclidean, false],
    ];
    for (const [metric, value, higherIsSame] of order) {
      if (metric in thresholds && value !== null) {
        const t = thresholds[metric];
        return { same: higherIsSame ? value >= t : value <= t, threshold: t, metric };
      }
    }
    if ("near_duplicate" in thresholds) {
      const t = thresholds.near_duplicate; // cosine; "same" = the same picture after edits
      return { same: cosine >= t, threshold: t, metric: "near_duplicate" };
    }
    return { same: null, threshold: null, metric: null };
  }

  // A seeded shuffle (mulberry32): the held-out pairs are the same for the same pairs.
  function shuffled(items, seed) {
    let state = seed >>> 0;
    const random = () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }

  // As lookalike.training.fewshot: hold out a quarter of each label (from 8 pairs on).
  function holdoutMask(labels) {
    const test = labels.map(() => false);
    if (labels.length < 8) return test;
    for (const cls of [0, 1]) {
      const members = shuffled(labels.map((y, i) => (y === cls ? i : -1)).filter((i) => i >= 0), 7 + cls);
      const k = Math.round(members.length * 0.25);
      if (members.length - k >= 1) members.slice(0, k).forEach((i) => (test[i] = true));
    }
    return test;
  }

  // As lookalike.metrics.calibration.best_accuracy_threshold: the cosine cut that is right
  // most often on these pairs (ties: the least accepting), as a midpoint between scores.
  function bestCosineThreshold(cosines, labels) {
    const values = Array.from(new Set(cosines)).sort((x, y) => y - x);
    const cuts = [values[0] + 1e-6];
    for (let i = 1; i < values.length; i++) cuts.push((values[i - 1] + values[i]) / 2);
    cuts.push(values[values.length - 1] - 1e-6);
    let best = cuts[0];
    let bestAccuracy = -1;
    for (const t of cuts) {
      const accuracy = accuracyAt(cosines, labels, t);
      if (accuracy > bestAccuracy) [best, bestAccuracy] = [t, accuracy];
    }
    return best;
  }

  function accuracyAt(scores, labels, threshold) {
    let right = 0;
    scores.forEach((s, i) => (right += (s >= threshold ? 1 : 0) === labels[i] ? 1 : 0));
    return right / Math.max(1, scores.length);
  }

  // What the tab has done survives a reload: the labelled pairs (their image files) and the
  // trained head (as a head file), in IndexedDB under the model key. Where IndexedDB is not
  // available (some private modes) the page works as before, without it.
  const saved = {
    db: null,
    async open() {
      if (!root.indexedDB) return null;
      if (!this.db) {
        this.db = new Promise((resolve) => {
          const request = root.indexedDB.open("lookalike-page", 1);
          request.onupgradeneeded = () => request.result.createObjectStore("models");
          request.onsuccess = () => resolve(request.result);
          request.onerror = () => resolve(null);
        });
      }
      return this.db;
    },
    async run(mode, work) {
      const db = await this.open();
      if (!db) return undefined;
      return new Promise((resolve) => {
        const request = work(db.transaction("models", mode).objectStore("models"));
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => resolve(undefined);
      });
    },
    get(key) {
      return this.run("readonly", (store) => store.get(key));
    },
    put(key, value) {
      return this.run("readwrite", (store) => store.put(value, key));
    },
  };

  function headModel(tf, config) {
    const model = tf.sequential();
    config.hidden.forEach((units, i) => {
      const layer = { units, activation: "relu" };
      if (i === 0) layer.inputShape = [config.embedding_dim];
      model.add(tf.layers.dense(layer));
      if (i === 0 && config.dropout > 0) model.add(tf.layers.dropout({ rate: config.dropout }));
    });
    model.add(tf.layers.dense({ units: 1, activation: "sigmoid" }));
    return model;
  }

  class LocalApi {
    constructor(site, session, base) {
      this.mode = "local";
      this.site = site;
      this.session = session;
      this.base = base;
      this.cache = new Map();
      this.stats = { embedded: 0, cacheHits: 0 };
      this.pairs = [];
      this.nextPair = 1;
      this.head = null; // {model: tf.Sequential, config, threshold, metrics, how}
      this.queue = Promise.resolve(); // one ONNX Runtime run at a time
    }

    static async create(base) {
      const tf = root.tf;
      const ort = root.ort;
      const response = await fetch(new URL("site.json", base));
      if (!response.ok) throw new Error("site.json is missing: rebuild with lookalike export --web");
      const site = await response.json();
      ort.env.wasm.wasmPaths = new URL("static/vendor/", base).href;
      ort.env.wasm.numThreads = root.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
      const session = await ort.InferenceSession.create(new URL(site.model, base).href, {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
      });
      await tf.setBackend("cpu"); // the head is small; WebGL is absent in many browsers
      await tf.ready();
      const api = new LocalApi(site, session, base);
      if (site.head) {
        const buffer = await (await fetch(new URL(site.head, base))).arrayBuffer();
        api.useHead(root.LookalikeHeadFile.parse(buffer, site.head));
      }
      await api.restore();
      return api;
    }

    // The pairs and head this browser kept for this model (see `saved`).
    async restore() {
      const record = await saved.get(this.site.model_key);
      if (!record) return;
      for (const pair of record.pairs || []) {
        const { id, label, a, b } = pair;
        this.pairs.push({ id, label, a, b, a_url: URL.createObjectURL(a), b_url: URL.createObjectURL(b) });
      }
      this.nextPair = record.nextPair || this.pairs.length + 1;
      if (record.head) {
        try {
          this.useHead(root.LookalikeHeadFile.parse(record.head, "the saved head"));
        } catch (_) {
          // an unreadable saved head is forgotten; the page's own head (if any) stays
        }
      }
    }

    async save() {
      const pairs = this.pairs.map(({ id, label, a, b }) => ({ id, label, a, b }));
      const head = this.head ? await this.headBlob().arrayBuffer() : null;
      await saved.put(this.site.model_key, { pairs, nextPair: this.nextPair, head });
    }

    async health() {
      const s = this.site;
      return {
        model: s.name,
        backbone: s.backbone,
        input_size: s.preprocess.input_size,
        channels: s.preprocess.channels,
        embedding_dim: s.embedding_dim,
        has_head: this.head !== null,
        small_model: s.small_model,
        has_index: false,
        explain_available: false,
        version: s.version,
      };
    }

    // -- embeddings, cached by content --------------------------------------------------------

    async embed(file) {
      const buffer = await file.arrayBuffer();
      const key = await contentKey(buffer);
      if (this.cache.has(key)) {
        this.stats.cacheHits++;
        return this.cache.get(key);
      }
      const pending = this.run(new Blob([buffer], { type: file.type }), file.name);
      this.cache.set(key, pending);
      pending.catch(() => this.cache.delete(key));
      return pending;
    }

    run(blob, name) {
      const task = this.queue.then(async () => {
        const image = await root.LookalikePixels.decode(blob, name);
        const pre = this.site.preprocess;
        const input = root.LookalikePixels.toInput(image, pre);
        const shape = [1, pre.channels, pre.input_size[0], pre.input_size[1]];
        const feeds = { [this.site.input]: new root.ort.Tensor("float32", input, shape) };
        const out = await this.session.run(feeds);
        this.stats.embedded++;
        return Float32Array.from(out[this.site.output].data);
      });
      this.queue = task.catch(() => null);
      return task;
    }

    probability(a, b) {
      if (!this.head) return null;
      const tf = root.tf;
      return tf.tidy(() => {
        const x = tf.tensor2d(absDiff(a, b), [1, a.length]);
        return this.head.model.predict(x).dataSync()[0];
      });
    }

    thresholds() {
      const t = Object.assign({}, this.site.thresholds);
      if (this.head) t.probability = this.head.threshold;
      else delete t.probability;
      return t;
    }

    async compare(a, b) {
      const [ea, eb] = [await this.embed(a), await this.embed(b)];
      const { cosine, euclidean } = scores(ea, eb);
      const probability = this.probability(ea, eb);
      const warnings = domainWarnings(this.site.domain, [ea, eb], [a.name || "image A", b.name || "image B"]);
      return Object.assign(
        { cosine, euclidean, probability, warnings },
        decide(this.thresholds(), cosine, euclidean, probability)
      );
    }

    // -- labelled pairs (kept in this tab) ----------------------------------------------------

    // Refuses the same two images (by content, in either order) twice, as the server does (409).
    async addPair(a, b, label) {
      await Promise.all([this.embed(a), this.embed(b)]); // refuses what cannot be decoded
      const [ka, kb] = [await this.fileKey(a), await this.fileKey(b)];
      for (const pair of this.pairs) {
        const [pa, pb] = [await this.fileKey(pair.a), await this.fileKey(pair.b)];
        if ((pa === ka && pb === kb) || (pa === kb && pb === ka)) {
          const error = new Error(
            `this pair is already labelled '${pair.label}' (as ${pair.a.name} & ${pair.b.name}, ` +
              "the same two images in either order); delete it to label it again"
          );
          error.status = 409;
          throw error;
        }
      }
      const id = String(this.nextPair++);
      this.pairs.push({ id, label, a, b, a_url: URL.createObjectURL(a), b_url: URL.createObjectURL(b) });
      await this.save();
    }

    // The content key of a file, remembered per File object.
    async fileKey(file) {
      if (!this.keys) this.keys = new WeakMap();
      if (!this.keys.has(file)) this.keys.set(file, contentKey(await file.arrayBuffer()));
      return this.keys.get(file);
    }

    async listPairs() {
      const same = this.pairs.filter((p) => p.label === "same").length;
      const pairs = this.pairs.map((p) => Object.assign({ a_name: p.a.name || "image", b_name: p.b.name || "image" }, p));
      return { same, different: this.pairs.length - same, pairs };
    }

    async deletePair(id) {
      const pair = this.pairs.find((p) => p.id === id);
      if (!pair) throw new Error(`no pair with id ${id}`);
      URL.revokeObjectURL(pair.a_url);
      URL.revokeObjectURL(pair.b_url);
      this.pairs = this.pairs.filter((p) => p !== pair);
      await this.save();
    }

    // -- the head: train, use, load, download -------------------------------------------------

    // Full-batch Adam (lr 1e-3) on binary cross-entropy: one step is one epoch over the pairs.
    async train(steps, onProgress) {
      const tf = root.tf;
      const pairs = this.pairs.slice();
      const same = pairs.filter((p) => p.label === "same").length;
      if (pairs.length < MIN_PAIRS || same === 0 || same === pairs.length) {
        throw new Error(
          `head training needs at least ${MIN_PAIRS} labelled pairs with both labels; there are ` +
            `${pairs.length} (${same} same, ${pairs.length - same} different)`
        );
      }
      onProgress({ state: "running", phase: "embedding", step: 0, total: steps, loss: null });
      const dim = this.site.embedding_dim;
      const x = new Float32Array(pairs.length * dim);
      for (let i = 0; i < pairs.length; i++) {
        x.set(absDiff(await this.embed(pairs[i].a), await this.embed(pairs[i].b)), i * dim);
      }
      const labels = pairs.map((p) => (p.label === "same" ? 1 : 0));
      const cosines = [];
      for (const p of pairs) cosines.push(scores(await this.embed(p.a), await this.embed(p.b)).cosine);
      const test = holdoutMask(labels);
      const trainIdx = labels.map((_, i) => i).filter((i) => !test[i]);
      const testIdx = labels.map((_, i) => i).filter((i) => test[i]);
      const n = trainIdx.length;
      const xTrain = new Float32Array(n * dim);
      trainIdx.forEach((i, row) => xTrain.set(x.subarray(i * dim, (i + 1) * dim), row * dim));
      const y = Float32Array.from(trainIdx, (i) => labels[i]);
      const config = { embedding_dim: dim, hidden: DEFAULT_HEAD.hidden.slice(), dropout: DEFAULT_HEAD.dropout };
      const model = headModel(tf, config);
      model.compile({ optimizer: tf.train.adam(1e-3), loss: "binaryCrossentropy" });
      const xs = tf.tensor2d(xTrain, [n, dim]);
      const ys = tf.tensor2d(y, [n, 1]);
      const xAll = tf.tensor2d(x, [pairs.length, dim]);
      const losses = [];
      try {
        await model.fit(xs, ys, {
          epochs: steps,
          batchSize: n,
          shuffle: true,
          verbose: 0,
          callbacks: {
            onEpochEnd: (epoch, logs) => {
              losses.push(logs.loss);
              onProgress({ state: "running", phase: "training", step: epoch + 1, total: steps, loss: logs.loss, unit: "epoch" });
            },
          },
        });
        const predicted = tf.tidy(() => model.predict(xAll).dataSync());
        const accuracy = (idx) => idx.filter((i) => (predicted[i] >= 0.5 ? 1 : 0) === labels[i]).length / idx.length;
        const trainAccuracy = accuracy(trainIdx);
        let holdout = null;
        let cosineHoldout = null;
        if (testIdx.length) {
          holdout = accuracy(testIdx);
          const cut = bestCosineThreshold(trainIdx.map((i) => cosines[i]), trainIdx.map((i) => labels[i]));
          cosineHoldout = accuracyAt(testIdx.map((i) => cosines[i]), testIdx.map((i) => labels[i]), cut);
        }
        // The better of the two on the held-out pairs is used: a worse head is dropped.
        const worse = holdout !== null && holdout < cosineHoldout;
        if (worse) {
          model.dispose();
        } else {
          if (this.head) this.head.model.dispose(); // the head it replaces
          this.head = {
            model,
            config,
            threshold: 0.5,
            metrics: {
              head_train_accuracy: trainAccuracy,
              head_holdout_accuracy: holdout,
              head_pairs: pairs.length,
              head_losses: losses,
            },
            how: `few-shot pair head trained in the browser (TensorFlow.js) on ${pairs.length} labelled pairs`,
          };
          await this.save();
        }
        return {
          state: "succeeded",
          step: steps,
          total: steps,
          loss: losses[losses.length - 1],
          n_train: n,
          n_holdout: testIdx.length,
          train_accuracy: trainAccuracy,
          holdout_accuracy: holdout,
          cosine_holdout_accuracy: cosineHoldout,
          used: worse ? "cosine" : "head",
          losses,
        };
      } finally {
        xs.dispose();
        ys.dispose();
        xAll.dispose();
      }
    }

    useHead(file) {
      const tf = root.tf;
      if (file.config.embedding_dim !== this.site.embedding_dim) {
        throw new Error(`the head compares ${file.config.embedding_dim}-d embeddings; this model makes ${this.site.embedding_dim}-d ones`);
      }
      const model = headModel(tf, file.config);
      const weights = [];
      for (const layer of file.layers) {
        weights.push(tf.tidy(() => tf.tensor2d(layer.weight, [layer.out, layer.in]).transpose()));
        weights.push(tf.tensor1d(layer.bias));
      }
      model.setWeights(weights);
      weights.forEach((w) => w.dispose());
      if (this.head) this.head.model.dispose();
      this.head = { model, config: file.config, threshold: file.threshold, metrics: file.metrics, how: file.how };
    }

    async loadHead(file) {
      const head = root.LookalikeHeadFile.parse(await file.arrayBuffer(), file.name);
      if (head.modelKey !== this.site.model_key) {
        throw new Error(
          `${file.name} was trained for another model (key ${String(head.modelKey).slice(0, 12)}…, ` +
            `this page runs ${this.site.model_key.slice(0, 12)}…)`
        );
      }
      this.useHead(head);
      await this.save();
    }

    async download() {
      if (!this.head) throw new Error("no pair head yet: label pairs and train one first");
      return { blob: this.headBlob(), filename: "lookalike-head.safetensors" };
    }

    // The current head as a head file (lookalike.model.head_file), a Blob.
    headBlob() {
      const tf = root.tf;
      const dense = this.head.model.layers.filter((layer) => layer.getClassName() === "Dense");
      const widths = [this.head.config.embedding_dim, ...this.head.config.hidden, 1];
      const layers = dense.map((layer, i) => {
        const [kernel, bias] = layer.getWeights();
        const weight = tf.tidy(() => kernel.transpose().dataSync().slice());
        return { out: widths[i + 1], in: widths[i], weight: Float32Array.from(weight), bias: Float32Array.from(bias.dataSync()) };
      });
      return root.LookalikeHeadFile.build({
        modelKey: this.site.model_key,
        config: this.head.config,
        layers,
        threshold: this.head.threshold,
        metrics: this.head.metrics,
        how: this.head.how,
      });
    }
  }

  root.LookalikeLocalApi = LocalApi;
})(window);

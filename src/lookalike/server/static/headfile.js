// Head files (lookalike.model.head_file) in the browser: a safetensors file holding the pair
// head's PyTorch state dict (float32, weights (out, in)) and its metadata (format, model key,
// head config, P(same) threshold). Reads what Python writes; writes what Python reads.
"use strict";

(function (root) {
  const FORMAT = "lookalike.head";
  const VERSION = 1;

  // The state-dict prefixes of PairHead's Linear layers: Linear, ReLU, [Dropout], Linear, …
  function linearNames(hidden, dropout) {
    const names = [];
    let index = 0;
    for (let i = 0; i < hidden.length; i++) {
      names.push(`layers.${index}`);
      index += 2 + (i === 0 && dropout > 0 ? 1 : 0);
    }
    names.push(`layers.${index}`);
    return names;
  }

  // {config, layers: [{weight: Float32Array (out*in), bias, out, in}], threshold, modelKey, ...}
  function parse(buffer, where) {
    const bytes = new Uint8Array(buffer);
    const fail = (why) => {
      throw new Error(`${where} is not a lookalike head file: ${why}`);
    };
    if (bytes.length < 8) fail("too short");
    const view = new DataView(buffer);
    const size = Number(view.getBigUint64(0, true));
    if (size > bytes.length - 8) fail("bad header");
    let header;
    try {
      header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + size)));
    } catch (_) {
      fail("unreadable header");
    }
    const meta = header.__metadata__ || {};
    if (meta.format !== FORMAT) fail("no lookalike.head metadata");
    if (!(Number(meta.format_version) >= 1 && Number(meta.format_version) <= VERSION)) {
      fail(`format version ${meta.format_version} is newer than this page reads`);
    }
    const config = JSON.parse(meta.head);
    const thresholds = JSON.parse(meta.thresholds || "{}");
    const start = 8 + size;
    const tensor = (name, shape) => {
      const entry = header[name];
      if (!entry || entry.dtype !== "F32" || JSON.stringify(entry.shape) !== JSON.stringify(shape)) {
        fail(`${name} is not float32 ${JSON.stringify(shape)}`);
      }
      const [a, b] = entry.data_offsets;
      return new Float32Array(buffer.slice(start + a, start + b));
    };
    const widths = [config.embedding_dim, ...config.hidden, 1];
    const layers = linearNames(config.hidden, config.dropout).map((name, i) => ({
      out: widths[i + 1],
      in: widths[i],
      weight: tensor(`${name}.weight`, [widths[i + 1], widths[i]]),
      bias: tensor(`${name}.bias`, [widths[i + 1]]),
    }));
    return {
      modelKey: meta.model_key,
      config,
      layers,
      threshold: typeof thresholds.probability === "number" ? thresholds.probability : 0.5,
      metrics: JSON.parse(meta.metrics || "{}"),
      how: meta.how || "",
    };
  }

  // The inverse of parse: a Blob of the safetensors file.
  function build(head) {
    const names = linearNames(head.config.hidden, head.config.dropout);
    const header = {};
    const chunks = [];
    let offset = 0;
    names.forEach((name, i) => {
      const layer = head.layers[i];
      for (const [suffix, data, shape] of [
        ["weight", layer.weight, [layer.out, layer.in]],
        ["bias", layer.bias, [layer.out]],
      ]) {
        header[`${name}.${suffix}`] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
        chunks.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        offset += data.byteLength;
      }
    });
    header.__metadata__ = {
      format: FORMAT,
      format_version: String(VERSION),
      model_key: head.modelKey,
      head: JSON.stringify(head.config),
      thresholds: JSON.stringify({ probability: head.threshold }),
      metrics: JSON.stringify(head.metrics || {}),
      how: head.how || "",
    };
    let text = JSON.stringify(header);
    while ((8 + new TextEncoder().encode(text).length) % 8 !== 0) text += " ";
    const json = new TextEncoder().encode(text);
    const prefix = new ArrayBuffer(8);
    new DataView(prefix).setBigUint64(0, BigInt(json.length), true);
    return new Blob([prefix, json, ...chunks], { type: "application/octet-stream" });
  }

  root.LookalikeHeadFile = { parse, build, linearNames };
})(window);

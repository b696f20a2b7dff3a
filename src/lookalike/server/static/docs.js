// Renders /openapi.json as a readable page: endpoints (parameters, body, responses) and schemas.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function refName(ref) {
    return ref.split("/").pop();
  }

  function typeOf(schema) {
    if (!schema) return el("span", { class: "type" }, "any");
    if (schema.$ref) {
      const name = refName(schema.$ref);
      return el("a", { href: "#schema-" + name, class: "type" }, name);
    }
    if (schema.anyOf || schema.oneOf) {
      const span = el("span", { class: "type" });
      (schema.anyOf || schema.oneOf).forEach((option, i) => {
        if (i) span.append(" | ");
        span.append(typeOf(option));
      });
      return span;
    }
    if (schema.type === "array") {
      const span = el("span", { class: "type" }, "array of ");
      if (schema.prefixItems) {
        span.textContent = "[";
        schema.prefixItems.forEach((item, i) => {
          if (i) span.append(", ");
          span.append(typeOf(item));
        });
        span.append("]");
        return span;
      }
      span.append(typeOf(schema.items));
      return span;
    }
    if (schema.contentMediaType || schema.format === "binary") {
      return el("span", { class: "type" }, "file (an image, uploaded as a form part)");
    }
    let text = schema.type || "object";
    if (schema.format) text += " (" + schema.format + ")";
    if (schema.enum) text = schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (schema.const !== undefined) text = JSON.stringify(schema.const);
    if (schema.type === "object" && schema.additionalProperties) {
      const span = el("span", { class: "type" }, "map of ");
      span.append(typeOf(schema.additionalProperties));
      return span;
    }
    return el("span", { class: "type" }, text);
  }

  function limits(schema) {
    const parts = [];
    for (const [key, label] of [["minimum", "≥"], ["exclusiveMinimum", ">"], ["maximum", "≤"], ["exclusiveMaximum", "<"]]) {
      if (schema && schema[key] !== undefined) parts.push(label + " " + schema[key]);
    }
    if (schema && schema.default !== undefined) parts.push("default " + JSON.stringify(schema.default));
    return parts.join(", ");
  }

  function fieldsTable(rows) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "description")));
    for (const row of rows) {
      table.append(
        el("tr", {},
          el("td", {}, el("code", {}, row.name), row.required ? el("span", { class: "required" }, " *") : null),
          el("td", {}, row.where),
          el("td", {}, typeOf(row.schema)),
          el("td", {}, [row.description || (row.schema && row.schema.description) || "", limits(row.schema)].filter(Boolean).join(" · ")))
      );
    }
    return table;
  }

  function resolve(spec, schema) {
    if (schema && schema.$ref) return spec.components.schemas[refName(schema.$ref)];
    return schema;
  }

  function endpoint(spec, path, method, op) {
    const box = el("div", { class: "endpoint", id: (method + path).replace(/[^a-z0-9]+/gi, "-") });
    box.append(el("h3", {}, el("span", { class: "method " + method }, method.toUpperCase()), path));
    if (op.summary) box.append(el("p", {}, el("strong", {}, op.summary)));
    if (op.description) box.append(el("p", {}, op.description));
    const rows = (op.parameters || []).map((p) => ({ name: p.name, where: p.in, schema: p.schema, required: p.required, description: p.description }));
    if (op.requestBody) {
      for (const [media, content] of Object.entries(op.requestBody.content || {})) {
        const body = resolve(spec, content.schema);
        if (body && body.properties) {
          const required = new Set(body.required || []);
          for (const [name, schema] of Object.entries(body.properties)) {
            rows.push({ name: name, where: media, schema: schema, required: required.has(name), description: schema.description });
          }
        } else {
          rows.push({ name: "body", where: media, schema: content.schema, required: op.requestBody.required });
        }
      }
    }
    if (rows.length) box.append(fieldsTable(rows));
    const responses = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "description"), el("th", {}, "body")));
    for (const [status, response] of Object.entries(op.responses || {})) {
      const body = el("td", {});
      for (const [media, content] of Object.entries(response.content || {})) {
        body.append(el("code", {}, media), " ");
        if (content.schema) body.append(typeOf(content.schema));
      }
      responses.append(el("tr", {}, el("td", {}, status), el("td", {}, response.description || ""), body));
    }
    box.append(responses);
    return box;
  }

  function schemaBlock(name, schema) {
    const box = el("div", { class: "schema", id: "schema-" + name });
    box.append(el("h3", {}, name));
    if (schema.description) box.append(el("p", { class: "muted" }, schema.description));
    if (schema.properties) {
      const required = new Set(schema.required || []);
      const rows = Object.entries(schema.properties).map(([field, s]) => ({ name: field, where: "", schema: s, required: required.has(field), description: s.description }));
      const table = fieldsTable(rows);
      for (const row of table.querySelectorAll("tr")) row.children[1].remove();
      box.append(table);
    } else {
      box.append(el("p", {}, typeOf(schema)));
    }
    return box;
  }

  async function main() {
    const response = await fetch("/openapi.json");
    if (!response.ok) throw new Error("cannot load /openapi.json: " + response.status);
    const spec = await response.json();
    $("title").textContent = `${spec.info.title} API ${spec.info.version}`;
    $("description").textContent = spec.info.description || "";
    document.title = $("title").textContent;
    const endpoints = $("endpoints");
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(item)) endpoints.append(endpoint(spec, path, method, op));
    }
    const schemas = $("schemas");
    for (const [name, schema] of Object.entries((spec.components || {}).schemas || {})) schemas.append(schemaBlock(name, schema));
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  main().catch((err) => {
    $("error-text").textContent = err.message;
    $("error").hidden = false;
  });
})();

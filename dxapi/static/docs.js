// Renders the OpenAPI document of this dxapi server. No inline script, no third-party code; every value is
// inserted as text (never as HTML), because names come from the database.
"use strict";

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function describe(schema, components) {
  if (!schema) return "any";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.oneOf) return schema.oneOf.map((s) => describe(s, components)).join(" | ");
  const type = Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type || "any");
  const extras = ["format", "minimum", "maximum", "minLength", "maxLength", "pattern"]
    .filter((key) => schema[key] !== undefined).map((key) => `${key} ${schema[key]}`);
  if (schema.enum) extras.push(`one of ${schema.enum.join(", ")}`);
  return extras.length ? `${type} (${extras.join(", ")})` : type;
}

function fieldTable(schema, components) {
  const table = element("table");
  const head = table.createTHead().insertRow();
  for (const title of ["field", "type", "required", "description"]) head.appendChild(element("th", title));
  const required = new Set(schema.required || []);
  for (const [name, property] of Object.entries(schema.properties || {})) {
    const row = table.insertRow();
    row.appendChild(element("td")).appendChild(element("code", name));
    row.appendChild(element("td", describe(property, components)));
    row.appendChild(element("td", required.has(name) ? "yes" : ""));
    row.appendChild(element("td", property.description || ""));
  }
  return table;
}

function render(doc) {
  const main = document.getElementById("reference");
  main.replaceChildren();
  const schemas = doc.components.schemas;
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (method === "parameters") continue;
      const tag = op.tags[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method, path, op]);
    }
  }
  for (const [tag, ops] of byTag) {
    const section = element("section", undefined, "entity");
    section.appendChild(element("h2", tag));
    for (const [method, path, op] of ops) {
      const line = element("div", undefined, "op");
      line.appendChild(element("span", method, `method ${method}`));
      line.appendChild(element("code", path));
      line.appendChild(element("span", op.summary || ""));
      section.appendChild(line);
    }
    section.appendChild(element("h3", "Response fields"));
    section.appendChild(fieldTable(schemas[tag], schemas));
    if (schemas[`${tag}-create`]) {
      section.appendChild(element("h3", "Create (POST) fields"));
      section.appendChild(fieldTable(schemas[`${tag}-create`], schemas));
    }
    main.appendChild(section);
  }
}

async function load(event) {
  event.preventDefault();
  const status = document.getElementById("status");
  const token = document.getElementById("token").value.trim();
  status.className = "";
  status.textContent = "Loading…";
  const response = await fetch("openapi.json", { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    status.className = "error";
    status.textContent = `The server answered ${response.status}.`;
    return;
  }
  const doc = await response.json();
  status.textContent = `Configuration ${doc.info.version}: ${Object.keys(doc.paths).length} paths.`;
  render(doc);
}

document.getElementById("token-form").addEventListener("submit", load);

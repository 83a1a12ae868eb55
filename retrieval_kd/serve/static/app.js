// The rkd search page: one or two served indexes side by side, shared documents marked with
// their rank in the other ranking. No build step, no dependencies; state lives in the URL
// (?q=...&k=...&left=...&right=...), so a link reproduces a comparison.
"use strict";

const $ = (id) => document.getElementById(id);
const SNIPPET = 240;
let indexes = [];

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null) node.append(child);
  return node;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = sessionStorage.getItem("rkd-api-key");
  if (key) h["X-API-Key"] = key;
  return h;
}

async function api(path, body) {
  const init = body === undefined ? { headers: headers() } : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    if (response.status === 401) $("key-row").hidden = false;
    const why = data && data.error ? data.error : `${response.status} ${response.statusText}`;
    throw new Error(why);
  }
  return data;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function fillSelects(params) {
  const left = $("left"), right = $("right");
  left.replaceChildren(); right.replaceChildren(el("option", { value: "", text: "(none)" }));
  for (const ix of indexes) {
    left.append(el("option", { value: ix.name, text: ix.name }));
    right.append(el("option", { value: ix.name, text: ix.name }));
  }
  left.value = params.get("left") || indexes[0].name;
  const defaultRight = indexes.length > 1 ? indexes[1].name : "";
  right.value = params.has("right") ? params.get("right") : defaultRight;
  if (right.value === undefined) right.value = "";
}

async function loadIndexes() {
  indexes = await api("/indexes");
  const params = new URLSearchParams(location.search);
  fillSelects(params);
  $("served").textContent = indexes
    .map((ix) => `${ix.name} (${ix.kind}, ${ix.size.toLocaleString()} docs${ix.dataset ? ", " + ix.dataset : ""})`)
    .join(" · ");
  if (params.get("k")) $("k").value = params.get("k");
  if (params.get("q")) {
    $("q").value = params.get("q");
    await search();
  }
}

function shiftBadge(rank, other, otherName) {
  if (other === undefined) return el("span", { class: "badge only", text: `not in ${otherName}` });
  const delta = other - rank;  // > 0: this ranking puts it higher than the other one
  if (delta === 0) return el("span", { class: "badge same", text: `= #${other} in ${otherName}` });
  const arrow = delta > 0 ? "▲" : "▼";
  return el("span", {
    class: `badge ${delta > 0 ? "up" : "down"}`,
    text: `${arrow}${Math.abs(delta)} (#${other} in ${otherName})`,
    title: `${otherName} ranks it #${other}`,
  });
}

function renderColumn(result, otherRanks, otherName) {
  const list = el("ol", { class: "hits" });
  result.hits.forEach((hit, i) => {
    const rank = i + 1;
    const other = otherRanks ? otherRanks.get(hit.id) : undefined;
    const text = hit.text || "";
    const snippet = text.length > SNIPPET ? text.slice(0, SNIPPET).replace(/\s+\S*$/, "") + " …" : text;
    const item = el(
      "li",
      { class: "hit" + (other !== undefined ? " shared" : ""), "data-doc": hit.id, tabindex: "0" },
      el("div", { class: "top" },
        el("span", { class: "rank", text: `#${rank}` }),
        el("span", { class: "title", text: hit.title || hit.id }),
        el("span", { class: "score", text: hit.score.toFixed(4) })),
      el("div", { class: "meta" }, `doc ${hit.id} `, otherRanks ? shiftBadge(rank, other, otherName) : null),
      snippet ? el("p", { class: "snippet", text: snippet }) : null,
    );
    list.append(item);
  });
  return list;
}

function ranks(result) {
  return new Map(result.hits.map((hit, i) => [hit.id, i + 1]));
}

function highlightPairs() {
  for (const item of document.querySelectorAll(".hit")) {
    const toggle = (on) => {
      for (const same of document.querySelectorAll(`.hit[data-doc="${CSS.escape(item.dataset.doc)}"]`))
        same.classList.toggle("hover", on);
    };
    item.addEventListener("mouseenter", () => toggle(true));
    item.addEventListener("mouseleave", () => toggle(false));
    item.addEventListener("focus", () => toggle(true));
    item.addEventListener("blur", () => toggle(false));
  }
}

function render(names, responses) {
  const results = $("results");
  results.replaceChildren();
  results.className = names.length === 2 ? "two" : "";
  const [a, b] = responses.map((r) => r.results[0]);
  const rankMaps = b ? [ranks(b), ranks(a)] : [null];
  names.forEach((name, i) => {
    const ix = indexes.find((x) => x.name === name);
    const column = el("section", { class: "column", "aria-label": `results of ${name}` },
      el("h2", {}, `${name} `, el("span", { class: "kind", text: ix ? `${ix.kind}` : "" })),
      renderColumn(responses[i].results[0], rankMaps[i], names[1 - i]));
    results.append(column);
  });
  if (b) {
    const other = ranks(b);
    const shared = a.hits.filter((h) => other.has(h.id));
    const shifts = shared.map((h, i) => Math.abs(other.get(h.id) - (a.hits.indexOf(h) + 1)));
    const mean = shifts.length ? shifts.reduce((x, y) => x + y, 0) / shifts.length : 0;
    $("summary").textContent =
      `${shared.length} of ${a.hits.length} documents in both rankings` +
      (shared.length ? `; mean rank shift ${mean.toFixed(1)}` : "") +
      ". ▲n / ▼n: ranked n places higher / lower here than in the other ranking.";
  } else {
    $("summary").textContent = "";
  }
  highlightPairs();
}

async function search(event) {
  if (event) event.preventDefault();
  const q = $("q").value.trim();
  const k = parseInt($("k").value, 10);
  const names = [$("left").value, $("right").value].filter((n, i, all) => n && all.indexOf(n) === i);
  if ($("key").value) sessionStorage.setItem("rkd-api-key", $("key").value);
  showError("");
  if (!q) { showError("Type a query first."); $("q").focus(); return; }
  const url = new URLSearchParams({ q, k: String($("k").value), left: names[0] || "", right: names[1] || "" });
  history.replaceState(null, "", `?${url}`);
  $("status").textContent = "Searching…";
  $("go").disabled = true;
  try {
    const started = performance.now();
    const responses = await Promise.all(
      names.map((name) => api("/search", { queries: [q], k, index: name, include_documents: true })),
    );
    render(names, responses);
    $("status").textContent = `${names.join(" vs ")}: ${Math.round(performance.now() - started)} ms`;
    document.body.dataset.state = "done";
  } catch (e) {
    showError(e.message);
    $("status").textContent = "";
    document.body.dataset.state = "error";
  } finally {
    $("go").disabled = false;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.key === "/" && document.activeElement !== $("q") && !(document.activeElement instanceof HTMLInputElement)) {
    event.preventDefault();
    $("q").focus();
  }
});

window.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("submit", search);
  loadIndexes().catch((e) => {
    showError(`Cannot list the indexes: ${e.message}`);
    $("served").textContent = "";
    document.body.dataset.state = "error";
  });
});

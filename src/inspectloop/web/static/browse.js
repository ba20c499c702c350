// The dataset browser: draws a version's map on a plain 2-D canvas (10,000 points in a few ms), colours
// it by any field, filters it to a slice, shows a point's story on click, selects with a box or a lasso
// and sends the selection to the settle or review queue. One request loads every point; user data is
// only ever put into the page as text, never as HTML.
(() => {
  "use strict";
  const root = document.getElementById("browse");
  const canvas = document.getElementById("map");
  const ctx = canvas.getContext("2d");
  const statusLine = document.getElementById("status");
  const colourSelect = document.getElementById("colour");
  const filterField = document.getElementById("filter-field");
  const filterValue = document.getElementById("filter-value");
  const legend = document.getElementById("legend");
  const hover = document.getElementById("hover");
  const detail = document.getElementById("detail");
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                   "#bcbd22", "#7f7f7f", "#393b79", "#ad494a"];
  const OUTCOME = {correct: "#2e9d5b", wrong: "#d1453b"};
  const MISSING = "#c5ccd5";
  const CLASS_FIELDS = new Set(["label", "current", "prediction"]);
  const PICK_PX = 7;
  const MARGIN = 14;

  let data = null;
  let n = 0;
  let px = null, py = null;          // screen coordinates (CSS pixels)
  let visible = null, selected = null;
  let hiddenValues = new Set();      // legend entries switched off (codes of the colour field)
  let view = {scale: 1, ox: 0, oy: 0};
  let grid = null;
  let drag = null;

  const query = new URLSearchParams({version: root.dataset.version});
  const liveQuery = new URLSearchParams(query);
  if (root.dataset.run) liveQuery.set("run", root.dataset.run);
  let colourChosen = false;  // the user picked a colour field: live columns arriving do not change it

  // The map and its fixed fields come from a kept file (fast); the label now and a run's predictions
  // from the database, in a second request that may finish later: the map is drawn without waiting.
  const points = getJson("/browse/points?" + query);
  const live = getJson("/browse/live?" + liveQuery);
  live.catch(() => {});  // its failure is shown once the map is drawn, below
  points.then((fixed) => {
    start(fixed);
    live.then(addLive).catch((problem) => fail(problem, "live"));
  }).catch((problem) => fail(problem, "points"));

  async function getJson(url) {
    const reply = await fetch(url, {credentials: "same-origin"});
    const body = await reply.json().catch(() => ({error: "the server answered " + reply.status}));
    if (!reply.ok) throw body;
    return body;
  }

  function fail(problem, which) {
    statusLine.textContent = (problem.error || String(problem)) + (problem.fix ? " (" + problem.fix + ")" : "");
    statusLine.className = "error";
    if (which === "live") canvas.dataset.live = "error"; else canvas.dataset.state = "error";
  }

  function start(fixed) {
    data = fixed;
    n = fixed.count;
    data.classes = [...fixed.fields.label.values];  // one colour per class, the same in every class field
    visible = new Uint8Array(n).fill(1);
    selected = new Uint8Array(n);
    fillFieldSelects();
    colourSelect.addEventListener("change", () => { colourChosen = true; hiddenValues = new Set(); refresh(); });
    filterField.addEventListener("change", fillFilterValues);
    filterValue.addEventListener("change", refresh);
    window.addEventListener("resize", () => { layout(); draw(); });
    layout();
    refresh();
    canvas.dataset.state = "drawn";
    canvas.dataset.points = String(n);
    window.browseDrawnAt = performance.now();  // milliseconds since navigation started (benchmarks read it)
    window.browseMap = {  // read-only hooks for tests and benchmarks: where a point is drawn
      digests: data.sha256,
      position: (i) => [px[i], py[i]],
      selected: () => selectedDigests(),
    };
  }

  function addLive(columns) {
    if (columns.count !== n) throw {error: "the map changed while loading", fix: "reload the page"};
    Object.assign(data.fields, columns.fields);
    for (const name of columns.classes) if (!data.classes.includes(name)) data.classes.push(name);
    data.run = columns.run;
    fillFieldSelects();
    if (!colourChosen && data.fields.correct) colourSelect.value = "correct";
    hiddenValues = new Set();
    refresh();
    canvas.dataset.live = "ready";
    window.browseLiveAt = performance.now();
  }

  function fillFieldSelects() {
    const first = ["label", "current", "split", "prediction", "correct"];
    const names = Object.keys(data.fields);
    const ordered = [...first.filter((f) => names.includes(f)), ...names.filter((f) => !first.includes(f))];
    const [colour, filter] = [colourSelect.value, filterField.value];
    colourSelect.replaceChildren(...ordered.map((f) => new Option(f, f)));
    filterField.replaceChildren(new Option("all points", ""), ...ordered.map((f) => new Option(f, f)));
    colourSelect.value = ordered.includes(colour) ? colour : "label";
    filterField.value = filter;
  }

  // -- fields, colours and the slice shown ---------------------------------------------------------------

  function valueName(field, code) {
    return code < 0 ? "(not set)" : data.fields[field].values[code];
  }

  function colourOf(field, code) {
    if (code < 0) return MISSING;
    const value = data.fields[field].values[code];
    if (field === "correct") return OUTCOME[value] || MISSING;
    const index = CLASS_FIELDS.has(field) ? data.classes.indexOf(value) : code;
    return PALETTE[(index < 0 ? code : index) % PALETTE.length];
  }

  function fillFilterValues() {
    filterValue.replaceChildren();
    const field = filterField.value;
    filterValue.hidden = !field;
    if (field) {
      const counts = countCodes(field, null);
      for (const [code, count] of counts) {
        filterValue.append(new Option(valueName(field, code) + " (" + count + ")", String(code)));
      }
    }
    refresh();
  }

  function countCodes(field, mask) {
    const counts = new Map();
    const codes = data.fields[field].codes;
    for (let i = 0; i < n; i++) {
      if (mask && !mask[i]) continue;
      counts.set(codes[i], (counts.get(codes[i]) || 0) + 1);
    }
    return [...counts.entries()].sort((a, b) => a[0] - b[0]);
  }

  function refresh() {
    const field = filterField.value;
    const wanted = field ? Number(filterValue.value) : null;
    const colourCodes = data.fields[colourSelect.value].codes;
    const filterCodes = field ? data.fields[field].codes : null;
    let shown = 0;
    for (let i = 0; i < n; i++) {
      visible[i] = (filterCodes === null || filterCodes[i] === wanted) && !hiddenValues.has(colourCodes[i]) ? 1 : 0;
      shown += visible[i];
    }
    buildGrid();
    drawLegend();
    draw();
    statusLine.className = "muted";
    statusLine.textContent = data.version + ": " + shown + " of " + n + " images shown · map by " + data.features +
      " (" + data.method + ")" + (data.run ? " · predictions of " + data.run : "");
  }

  function drawLegend() {
    legend.replaceChildren();
    const field = colourSelect.value;
    const filterCodes = filterField.value ? data.fields[filterField.value].codes : null;
    const wanted = Number(filterValue.value);
    const inSlice = filterCodes ? Uint8Array.from(filterCodes, (c) => (c === wanted ? 1 : 0)) : null;
    for (const [code, count] of countCodes(field, inSlice)) {
      const entry = document.createElement("button");
      entry.type = "button";
      entry.className = "legend-entry" + (hiddenValues.has(code) ? " off" : "");
      entry.dataset.value = valueName(field, code);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourOf(field, code);
      entry.append(swatch, document.createTextNode(valueName(field, code) + " " + count));
      entry.title = "show or hide these points";
      entry.addEventListener("click", () => {
        if (hiddenValues.has(code)) hiddenValues.delete(code); else hiddenValues.add(code);
        refresh();
      });
      legend.append(entry);
    }
  }

  // -- geometry and drawing ------------------------------------------------------------------------------

  function layout() {
    const box = canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(box.width * ratio);
    canvas.height = Math.round(box.height * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const side = Math.max(10, Math.min(box.width, box.height) - 2 * MARGIN);
    const left = (box.width - side) / 2, top = (box.height - side) / 2;
    px = new Float32Array(n);
    py = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      px[i] = (left + data.x[i] * side) * view.scale + view.ox;
      py[i] = (top + (1 - data.y[i]) * side) * view.scale + view.oy;
    }
    buildGrid();
  }

  function draw(overlay) {
    const box = canvas.getBoundingClientRect();
    ctx.clearRect(0, 0, box.width, box.height);
    const field = colourSelect.value;
    const codes = data.fields[field].codes;
    const groups = new Map();
    for (let i = 0; i < n; i++) {
      if (!visible[i]) continue;
      let group = groups.get(codes[i]);
      if (!group) { group = []; groups.set(codes[i], group); }
      group.push(i);
    }
    const size = n > 5000 ? 3 : n > 1000 ? 4 : 6;
    const half = size / 2;
    for (const [code, group] of groups) {  // one fillStyle per colour: the canvas batches them
      ctx.fillStyle = colourOf(field, code);
      for (const i of group) ctx.fillRect(px[i] - half, py[i] - half, size, size);
    }
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 1.5;
    for (let i = 0; i < n; i++) {
      if (selected[i] && visible[i]) ctx.strokeRect(px[i] - half - 1.5, py[i] - half - 1.5, size + 3, size + 3);
    }
    if (overlay) overlay();
  }

  function buildGrid() {
    grid = new Map();
    for (let i = 0; i < n; i++) {
      if (!visible[i]) continue;
      const key = Math.floor(px[i] / PICK_PX) + "," + Math.floor(py[i] / PICK_PX);
      const cell = grid.get(key);
      if (cell) cell.push(i); else grid.set(key, [i]);
    }
  }

  function nearest(x, y) {
    const cx = Math.floor(x / PICK_PX), cy = Math.floor(y / PICK_PX);
    let best = -1, bestDistance = PICK_PX * PICK_PX;
    for (let dx = -1; dx <= 1; dx++) {
      for (let dy = -1; dy <= 1; dy++) {
        for (const i of grid.get((cx + dx) + "," + (cy + dy)) || []) {
          const d = (px[i] - x) ** 2 + (py[i] - y) ** 2;
          if (d <= bestDistance) { best = i; bestDistance = d; }
        }
      }
    }
    return best;
  }

  // -- mouse: hover, click, box and lasso, wheel zoom ------------------------------------------------------

  function position(event) {
    const box = canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  canvas.addEventListener("mousedown", (event) => {
    if (!data || event.button !== 0) return;
    const [x, y] = position(event);
    drag = {path: [[x, y]], add: event.shiftKey, tool: document.querySelector("input[name=tool]:checked").value};
  });

  canvas.addEventListener("mousemove", (event) => {
    if (!data) return;
    const [x, y] = position(event);
    if (drag) {
      drag.path.push([x, y]);
      draw(() => outline(drag));
      return;
    }
    const i = nearest(x, y);
    hover.hidden = i < 0;
    if (i >= 0) {
      hover.style.left = (px[i] + 12) + "px";
      hover.style.top = (py[i] + 12) + "px";
      const img = hover.querySelector("img");
      const src = "/browse/thumbs/" + data.sha256[i];
      if (img.getAttribute("src") !== src) img.src = src;
      hover.querySelector("span").textContent = valueName(colourSelect.value, data.fields[colourSelect.value].codes[i]);
    }
  });

  canvas.addEventListener("mouseleave", () => { hover.hidden = true; });

  window.addEventListener("mouseup", (event) => {
    if (!drag) return;
    const done = drag;
    drag = null;
    const [x0, y0] = done.path[0];
    const [x1, y1] = position(event);
    const reach = Math.max(...done.path.map(([x, y]) => Math.abs(x - x0) + Math.abs(y - y0)), Math.abs(x1 - x0) + Math.abs(y1 - y0));
    if (reach < 4) {  // the mouse barely moved: a click (a lasso ends where it began, so not start vs end)
      const i = nearest(x0, y0);
      if (i >= 0) showDetail(i);
      draw();
      return;
    }
    done.path.push([x1, y1]);
    if (!done.add) selected.fill(0);
    const inside = done.tool === "lasso" ? insideLasso(done.path) : insideBox(done.path[0], [x1, y1]);
    for (let i = 0; i < n; i++) if (visible[i] && inside(px[i], py[i])) selected[i] = 1;
    draw();
    showSelection();
  });

  canvas.addEventListener("wheel", (event) => {
    if (!data) return;
    event.preventDefault();
    const [x, y] = position(event);
    const factor = event.deltaY < 0 ? 1.25 : 0.8;
    const scale = Math.min(40, Math.max(1, view.scale * factor));
    const applied = scale / view.scale;
    view = {scale, ox: x - (x - view.ox) * applied, oy: y - (y - view.oy) * applied};
    if (scale === 1) view = {scale: 1, ox: 0, oy: 0};
    layout();
    draw();
  }, {passive: false});

  function outline(current) {
    ctx.strokeStyle = "#1f6feb";
    ctx.lineWidth = 1;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    const [x0, y0] = current.path[0];
    if (current.tool === "lasso") {
      current.path.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
    } else {
      const [x1, y1] = current.path[current.path.length - 1];
      ctx.rect(x0, y0, x1 - x0, y1 - y0);
    }
    ctx.stroke();
    ctx.setLineDash([]);
  }

  function insideBox([x0, y0], [x1, y1]) {
    const [left, right, top, bottom] = [Math.min(x0, x1), Math.max(x0, x1), Math.min(y0, y1), Math.max(y0, y1)];
    return (x, y) => x >= left && x <= right && y >= top && y <= bottom;
  }

  function insideLasso(path) {  // even-odd ray casting
    return (x, y) => {
      let inside = false;
      for (let a = 0, b = path.length - 1; a < path.length; b = a++) {
        const [xa, ya] = path[a], [xb, yb] = path[b];
        if ((ya > y) !== (yb > y) && x < ((xb - xa) * (y - ya)) / (yb - ya) + xa) inside = !inside;
      }
      return inside;
    };
  }

  // -- selection: thumbnails and sending -----------------------------------------------------------------

  const selectionBox = document.getElementById("selection");
  const thumbs = document.getElementById("thumbs");
  const sentLine = document.getElementById("sent");

  function selectedDigests() {
    const digests = [];
    for (let i = 0; i < n; i++) if (selected[i] && visible[i]) digests.push(data.sha256[i]);
    return digests;
  }

  // The settle queue is told the field the map was coloured by and each image's value in it: what the
  // sender saw (e.g. "correct: wrong") is why they sent it.
  function selectionBody(queue) {
    const field = colourSelect.value, codes = data.fields[field].codes;
    const body = {version: data.version, queue, sha256: []};
    const values = [];
    for (let i = 0; i < n; i++) {
      if (!selected[i] || !visible[i]) continue;
      body.sha256.push(data.sha256[i]);
      values.push(String(valueName(field, codes[i])).slice(0, 200));
    }
    if (queue === "settle") Object.assign(body, {colour_by: field, colour_values: values});
    return body;
  }

  function showSelection() {
    const chosen = [];
    for (let i = 0; i < n; i++) if (selected[i] && visible[i]) chosen.push(i);
    selectionBox.hidden = chosen.length === 0;
    document.getElementById("selected-count").textContent = String(chosen.length);
    sentLine.textContent = "";
    thumbs.replaceChildren();
    for (const i of chosen.slice(0, 60)) {
      const img = document.createElement("img");
      img.src = "/browse/thumbs/" + data.sha256[i];
      img.alt = "image " + data.sha256[i].slice(0, 12);
      img.title = valueName(colourSelect.value, data.fields[colourSelect.value].codes[i]);
      img.addEventListener("click", () => showDetail(i));
      thumbs.append(img);
    }
    if (chosen.length > 60) thumbs.append(document.createTextNode("… and " + (chosen.length - 60) + " more"));
  }

  async function send(queue) {
    sentLine.className = "";
    sentLine.textContent = "sending…";
    try {
      const reply = await fetch("/browse/send", {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify(selectionBody(queue)),
      });
      const body = await reply.json().catch(() => ({error: "the server answered " + reply.status}));
      if (!reply.ok) throw body;
      const where = queue === "settle" ? "the settle queue" : "the review queue";
      sentLine.textContent = body.added + " sent to " + where +
        (body.already_waiting ? ", " + body.already_waiting + " already waiting there" : "");
    } catch (problem) {
      sentLine.className = "error";
      sentLine.textContent = problem.error || String(problem);
    }
  }

  document.getElementById("send-settle").addEventListener("click", () => send("settle"));
  document.getElementById("send-review").addEventListener("click", () => send("review"));
  document.getElementById("clear").addEventListener("click", () => { selected.fill(0); draw(); showSelection(); });

  // -- one image's story ---------------------------------------------------------------------------------

  function element(tag, text, attributes) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    return node;
  }

  function table(headings, rows) {
    const node = element("table", null, {class: "facts-table"});
    const head = element("tr");
    headings.forEach((h) => head.append(element("th", h)));
    node.append(head);
    for (const row of rows) {
      const line = element("tr");
      row.forEach((cell) => line.append(element("td", cell === null || cell === undefined ? "" : cell)));
      node.append(line);
    }
    return node;
  }

  async function showDetail(i) {
    const digest = data.sha256[i];
    detail.replaceChildren(element("p", "Loading " + digest.slice(0, 12) + "…", {class: "muted"}));
    const params = new URLSearchParams({version: data.version});
    if (data.run) params.set("run", data.run);
    const reply = await fetch("/browse/images/" + digest + "?" + params, {credentials: "same-origin"});
    const story = await reply.json().catch(() => ({error: "the server answered " + reply.status}));
    if (!reply.ok) {
      detail.replaceChildren(element("p", story.error, {class: "error"}));
      return;
    }
    const parts = [element("img", null, {src: "/images/" + digest, alt: "image " + digest.slice(0, 12), class: "full"}),
                   element("p", digest, {class: "digest"})];
    const label = valueName("label", data.fields.label.codes[i]);
    parts.push(element("p", "In " + data.version + ": " + label + " (" + valueName("split", data.fields.split.codes[i]) +
                       ") · label now: " + (story.current || "none (tie or conflict)"), {class: "label-line"}));
    if (story.prediction) {
      const p = story.prediction;
      parts.push(element("p", "Run " + data.run + " predicts " + p.predicted + (p.score !== null ? " (" + p.score.toFixed(3) + ")" : "") +
                         ": " + (p.correct ? "correct" : "wrong"), {class: p.correct ? "correct" : "wrong"}));
    }
    parts.push(element("h3", "Votes"), table(["annotator", "says", "source", "when"],
      story.annotations.map((a) => [a.annotator, a.label, a.source, a.at ? a.at.slice(0, 16).replace("T", " ") : ""])));
    const meta = Object.entries(story.meta);
    if (meta.length) parts.push(element("h3", "Capture"), table(["field", "value"], meta));
    parts.push(element("h3", "Dataset versions"), table(["version", "label", "split"],
      story.versions.map((v) => [v.version, v.label, v.split])));
    if (story.production.length) {
      parts.push(element("h3", "Production predictions"), table(["when", "label", "decision", "confidence"],
        story.production.map((p) => [p.at.slice(0, 16).replace("T", " "), p.label, p.decision, p.confidence])));
    }
    if (story.review.length) {
      parts.push(element("h3", "Review"), table(["reason", "status", "decided", "by"],
        story.review.map((r) => [r.reason, r.status, r.decided || r.suggestion, r.by])));
    }
    detail.replaceChildren(...parts);
    detail.dataset.sha256 = digest;
  }
})();

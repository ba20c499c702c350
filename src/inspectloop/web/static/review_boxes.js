// Review with boxes: the model's boxes drawn over the image in an SVG whose viewBox is the image's pixels,
// so every coordinate here is an image pixel. The reviewer keeps, deletes, moves, resizes or adds boxes by
// mouse (pointer events) and keyboard; Enter sends the set as JSON, and the server's answer is the next item.
// review.js owns the page's keys and hands them here while an item with boxes is shown (window.boxReview).
(() => {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";
  const COLOURS = ["#ff5a4f", "#ffb020", "#3fb6ff", "#b68cff", "#4cd98a", "#ff7ad9", "#f4f46a", "#7ae0e0"];
  const HANDLE_PX = 9;  // handle size on screen
  const MIN_DRAG_PX = 4;  // a drag shorter than this on screen is a click (select / deselect), not a box

  let view = null;  // the item being reviewed: {svg, width, height, seen, boxes, selected, nextClass, predicted}

  const cardClasses = () => Array.from(document.querySelectorAll("[data-class]"))
    .map((card) => ({ name: card.dataset.class, good: card.hasAttribute("data-good") }));
  const defectNames = () => cardClasses().filter((c) => !c.good).map((c) => c.name);

  function colour(name) {
    const index = defectNames().indexOf(name);
    return COLOURS[(index < 0 ? 0 : index) % COLOURS.length];
  }

  function init(panel) {
    const svg = panel.querySelector("svg#boxes");
    view = null;
    if (!svg) return;
    const predicted = JSON.parse(svg.dataset.boxes || "[]");
    view = {
      svg, panel, width: Number(svg.dataset.width), height: Number(svg.dataset.height), seen: svg.dataset.seen,
      predicted,
      boxes: predicted.map((b, i) => ({ cls: b.class, x0: b.box[0], y0: b.box[1], x1: b.box[2], y1: b.box[3], predicted: i, score: b.score })),
      selected: null,
      nextClass: predicted.length ? predicted[0].class : defectNames()[0],
    };
    svg.addEventListener("pointerdown", pointerDown);
    draw();
    status(`${predicted.length} box(es) from the model`);
  }

  // -- geometry -------------------------------------------------------------------------------
  function toImage(event) {
    const point = view.svg.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    const p = point.matrixTransform(view.svg.getScreenCTM().inverse());
    return { x: clamp(p.x, 0, view.width), y: clamp(p.y, 0, view.height) };
  }

  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const pixelsPerScreenPx = () => 1 / (view.svg.getScreenCTM() ? view.svg.getScreenCTM().a : 1);
  const round = (v) => Math.round(v * 100) / 100;

  function normalised(b) {
    return { ...b, x0: round(Math.min(b.x0, b.x1)), x1: round(Math.max(b.x0, b.x1)),
             y0: round(Math.min(b.y0, b.y1)), y1: round(Math.max(b.y0, b.y1)) };
  }

  function unchanged(b) {
    if (b.predicted === null) return false;
    const p = view.predicted[b.predicted];
    return p.class === b.cls && [b.x0, b.y0, b.x1, b.y1].every((v, i) => Math.abs(v - p.box[i]) <= 0.5);
  }

  // -- drawing --------------------------------------------------------------------------------
  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function draw() {
    const svg = view.svg;
    svg.replaceChildren();
    const unit = pixelsPerScreenPx();
    view.boxes.forEach((b, index) => {
      const group = el("g", { "data-index": index }, svg);
      const rect = el("rect", { x: b.x0, y: b.y0, width: b.x1 - b.x0, height: b.y1 - b.y0, stroke: colour(b.cls),
                                class: `box${unchanged(b) ? " predicted" : ""}${index === view.selected ? " selected" : ""}`,
                                "data-part": "body" }, group);
      rect.dataset.index = index;
      const label = el("text", { x: b.x0 + 2 * unit, y: Math.max(b.y0 - 4 * unit, 12 * unit), fill: colour(b.cls),
                                 "font-size": 13 * unit, "stroke-width": 3 * unit }, group);
      label.textContent = unchanged(b) && b.score !== undefined ? `${b.cls} ${b.score.toFixed(2)}` : b.cls;
    });
    if (view.selected !== null) drawHandles(view.boxes[view.selected], unit);
  }

  function drawHandles(b, unit) {
    const size = HANDLE_PX * unit;
    const xs = { w: b.x0, c: (b.x0 + b.x1) / 2, e: b.x1 };
    const ys = { n: b.y0, m: (b.y0 + b.y1) / 2, s: b.y1 };
    for (const [v, y] of Object.entries(ys)) {
      for (const [h, x] of Object.entries(xs)) {
        if (v === "m" && h === "c") continue;
        const handle = (v === "m" ? "" : v) + (h === "c" ? "" : h);
        el("rect", { x: x - size / 2, y: y - size / 2, width: size, height: size, class: "handle",
                     "data-handle": handle, style: `cursor: ${handle}-resize` }, view.svg);
      }
    }
  }

  function status(text) {
    const line = view && view.panel.querySelector("#box-status");
    if (line) line.textContent = text;
  }

  function describe() {
    const kept = view.boxes.filter(unchanged).length;
    const chosen = view.selected === null ? "no box selected" :
      `box ${view.selected + 1} selected (${view.boxes[view.selected].cls})`;
    status(`${view.boxes.length} box(es), ${kept} as the model drew them · ${chosen} · next box drawn: ${view.nextClass}`);
  }

  function select(index) {
    view.selected = index;
    if (index !== null) view.nextClass = view.boxes[index].cls;
    draw();
    describe();
  }

  // -- mouse ----------------------------------------------------------------------------------
  function pointerDown(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    const start = toImage(event);
    const handle = event.target.dataset && event.target.dataset.handle;
    const index = event.target.dataset && event.target.dataset.index;
    let drag;
    if (handle && view.selected !== null) {
      drag = { kind: "resize", handle, index: view.selected, origin: { ...view.boxes[view.selected] } };
    } else if (index !== undefined) {
      select(Number(index));
      drag = { kind: "move", index: Number(index), origin: { ...view.boxes[Number(index)] } };
    } else {
      drag = { kind: "draw", moved: false };
    }
    view.svg.setPointerCapture(event.pointerId);
    const onMove = (move) => dragTo(drag, start, toImage(move), move);
    const onUp = (up) => {
      view.svg.removeEventListener("pointermove", onMove);
      view.svg.removeEventListener("pointerup", onUp);
      finishDrag(drag, start, toImage(up));
    };
    view.svg.addEventListener("pointermove", onMove);
    view.svg.addEventListener("pointerup", onUp);
  }

  function dragTo(drag, start, here) {
    const dx = here.x - start.x;
    const dy = here.y - start.y;
    if (drag.kind === "move") {
      const o = drag.origin;
      const mx = clamp(dx, -o.x0, view.width - o.x1);
      const my = clamp(dy, -o.y0, view.height - o.y1);
      view.boxes[drag.index] = { ...o, x0: round(o.x0 + mx), x1: round(o.x1 + mx), y0: round(o.y0 + my), y1: round(o.y1 + my) };
    } else if (drag.kind === "resize") {
      const b = { ...drag.origin };
      if (drag.handle.includes("w")) b.x0 = here.x;
      if (drag.handle.includes("e")) b.x1 = here.x;
      if (drag.handle.includes("n")) b.y0 = here.y;
      if (drag.handle.includes("s")) b.y1 = here.y;
      view.boxes[drag.index] = normalised(b);
    } else {
      drag.moved = Math.hypot(dx, dy) / pixelsPerScreenPx() >= MIN_DRAG_PX;
      if (!drag.moved) return;
      if (drag.index === undefined) {
        view.boxes.push({ cls: view.nextClass, x0: start.x, y0: start.y, x1: here.x, y1: here.y, predicted: null });
        drag.index = view.boxes.length - 1;
        view.selected = drag.index;
      }
      view.boxes[drag.index] = normalised({ ...view.boxes[drag.index], x0: start.x, y0: start.y, x1: here.x, y1: here.y });
    }
    draw();
  }

  function finishDrag(drag, start, here) {
    if (drag.kind === "draw" && drag.index === undefined) {
      select(null);  // a click on the image, not on a box
      return;
    }
    const b = view.boxes[drag.index];
    if (b.x1 - b.x0 < 1 || b.y1 - b.y0 < 1) {  // dragged flat: not a region
      view.boxes.splice(drag.index, 1);
      select(null);
      return;
    }
    select(drag.index);
  }

  // -- keyboard -------------------------------------------------------------------------------
  // Returns true when the key was a box key (review.js then does nothing more with it).
  function handleKey(event, send) {
    if (!view || !view.svg.isConnected) return false;
    const key = event.key;
    if (/^[1-9]$/.test(key)) {
      const chosen = cardClasses()[Number(key) - 1];
      if (!chosen) return true;
      if (chosen.good) {
        status(`${chosen.name} is the good class: a box marks a defect. Delete a box that marks nothing (Del).`);
        return true;
      }
      view.nextClass = chosen.name;
      if (view.selected !== null) view.boxes[view.selected] = { ...view.boxes[view.selected], cls: chosen.name };
      draw();
      describe();
      return true;
    }
    if (key === "Tab") {
      if (!view.boxes.length) return false;  // nothing to select: Tab moves the focus as usual
      const step = event.shiftKey ? -1 : 1;
      const from = view.selected === null ? (step > 0 ? -1 : 0) : view.selected;
      select((from + step + view.boxes.length) % view.boxes.length);
      return true;
    }
    if (key === "Escape") {
      if (view.selected === null) return false;  // let Esc close the help
      select(null);
      return true;
    }
    if ((key === "Delete" || key === "Backspace") && view.selected !== null) {
      view.boxes.splice(view.selected, 1);
      select(null);
      return true;
    }
    if (key === "b" || key === "B") {
      const w = view.width / 4;
      const h = view.height / 4;
      view.boxes.push({ cls: view.nextClass, x0: round(view.width / 2 - w / 2), y0: round(view.height / 2 - h / 2),
                        x1: round(view.width / 2 + w / 2), y1: round(view.height / 2 + h / 2), predicted: null });
      select(view.boxes.length - 1);
      return true;
    }
    if (key.startsWith("Arrow") && view.selected !== null) {
      nudge(key, event.shiftKey);
      return true;
    }
    if (key === "Enter") {
      submit(send);
      return true;
    }
    return false;
  }

  function nudge(key, resize) {
    const step = Math.max(1, Math.round(pixelsPerScreenPx()));
    const dx = key === "ArrowLeft" ? -step : key === "ArrowRight" ? step : 0;
    const dy = key === "ArrowUp" ? -step : key === "ArrowDown" ? step : 0;
    const b = { ...view.boxes[view.selected] };
    if (resize) {
      b.x1 = clamp(b.x1 + dx, b.x0 + 1, view.width);
      b.y1 = clamp(b.y1 + dy, b.y0 + 1, view.height);
    } else {
      const mx = clamp(dx, -b.x0, view.width - b.x1);
      const my = clamp(dy, -b.y0, view.height - b.y1);
      Object.assign(b, { x0: b.x0 + mx, x1: b.x1 + mx, y0: b.y0 + my, y1: b.y1 + my });
    }
    view.boxes[view.selected] = b;
    draw();
    describe();
  }

  // A click on a class card: the selected box (or the next one drawn) takes that class.
  function pickClass(name, good) {
    if (!view || !view.svg.isConnected) return false;
    if (good) {
      status(`${name} is the good class: a box marks a defect. Delete a box that marks nothing (Del).`);
      return true;
    }
    view.nextClass = name;
    if (view.selected !== null) view.boxes[view.selected] = { ...view.boxes[view.selected], cls: name };
    draw();
    describe();
    return true;
  }

  function submit(send) {
    const body = {
      seen: view.seen,
      boxes: view.boxes.map((b) => ({ class: b.cls, box: [b.x0, b.y0, b.x1, b.y1], predicted: b.predicted })),
    };
    send("boxes", JSON.stringify(body));
  }

  window.boxReview = { init, handleKey, pickClass, active: () => Boolean(view && view.svg.isConnected) };
})();

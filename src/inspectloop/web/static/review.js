// The review page's keyboard: digits pick a class, Enter confirms the suggestion, S skips, ? shows help.
// On an item with boxes, review_boxes.js takes the box keys first (digits then set a box's class, Enter
// submits the boxes).
// Each decision is one POST whose answer is the next item's panel (server-rendered, swapped in place).
// Without an item on the page, Enter (or N) posts the "next item" form: the page itself never claims on load.
(() => {
  "use strict";
  const panel = document.getElementById("item");
  const help = document.getElementById("help");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const cards = Array.from(document.querySelectorAll("[data-class]"));
  const boxes = window.boxReview;  // review_boxes.js, loaded first
  let busy = false;

  const current = () => panel.querySelector("[data-item-id]");

  // ``action`` "boxes" sends ``payload`` as JSON (review_boxes.js); the others send a form with the label.
  async function send(action, payload) {
    const item = current();
    if (!item || busy) return;
    busy = true;
    const headers = { "X-CSRF-Token": csrf };
    let body;
    if (action === "boxes") {
      body = payload;
      headers["Content-Type"] = "application/json";
    } else {
      body = new URLSearchParams({ csrf });
      if (payload) body.set("label", payload);
    }
    try {
      const reply = await fetch(`/review/items/${item.dataset.itemId}/${action}`, {
        method: "POST", body, credentials: "same-origin", headers,
      });
      if (reply.status === 401) { window.location.assign("/login?next=/review"); return; }
      if (reply.status === 403 || reply.status === 422) { showError(await reply.text()); return; }
      panel.innerHTML = await reply.text();
      boxes.init(panel);
    } catch (error) {
      showError(`could not reach the server (${error}); your last key was not recorded, press it again`);
    } finally {
      busy = false;
    }
  }

  function showError(message) {
    const box = document.createElement("p");
    box.className = "error";
    box.setAttribute("role", "alert");
    box.textContent = message;
    panel.querySelectorAll(".error").forEach((old) => old.remove());
    panel.prepend(box);
  }

  function pick(label) {
    cards.forEach((card) => card.classList.toggle("picked", card.dataset.class === label));
    setTimeout(() => cards.forEach((card) => card.classList.remove("picked")), 150);
    send("decision", label);
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.repeat && !(boxes.active() && event.key.startsWith("Arrow"))) return;  // held arrows keep moving a box
    if (event.target.closest && event.target.closest("input, textarea, select")) return;
    const key = event.key;
    if (key === "?") { help.hidden = !help.hidden; event.preventDefault(); return; }
    if (boxes.active() && help.hidden && boxes.handleKey(event, send)) { event.preventDefault(); return; }
    if (key === "Escape") { help.hidden = true; return; }
    if (/^[1-9]$/.test(key) && cards[Number(key) - 1]) { event.preventDefault(); pick(cards[Number(key) - 1].dataset.class); return; }
    const next = current() ? null : panel.querySelector("form#next");
    if (next && (key === "Enter" || key === "n" || key === "N")) {
      event.preventDefault();
      next.requestSubmit();
      return;
    }
    if (key === "Enter") {
      const suggestion = current() && current().dataset.suggestion;
      event.preventDefault();  // never let Enter press a focused button (such as Log out)
      if (suggestion) pick(suggestion);
      return;
    }
    if (key === "s" || key === "S") { event.preventDefault(); send("skip"); }
  });

  cards.forEach((card) => card.addEventListener("click", () => {
    if (!boxes.pickClass(card.dataset.class, card.hasAttribute("data-good"))) pick(card.dataset.class);
  }));
  boxes.init(panel);
})();

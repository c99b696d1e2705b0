// The console's only script (CSP: script-src 'self'). Copy buttons, Get Code tabs, and
// live regions: an element with data-refresh="ms" is re-fetched until it loses it.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.textContent);
    button.textContent = "Copied";
  } catch (err) {
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "Selected: press Ctrl+C";
  }
});

function selectTab(tabs, tab) {
  for (const other of tabs.querySelectorAll('[role="tab"]')) {
    const chosen = other === tab;
    other.setAttribute("aria-selected", chosen ? "true" : "false");
    other.tabIndex = chosen ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
  }
  tab.focus();
}

document.addEventListener("click", (event) => {
  const tab = event.target.closest('[data-tabs] [role="tab"]');
  if (tab) selectTab(tab.closest("[data-tabs]"), tab);
});

document.addEventListener("keydown", (event) => {
  const tab = event.target.closest('[data-tabs] [role="tab"]');
  if (!tab || (event.key !== "ArrowRight" && event.key !== "ArrowLeft")) return;
  const all = [...tab.parentElement.querySelectorAll('[role="tab"]')];
  const step = event.key === "ArrowRight" ? 1 : -1;
  selectTab(tab.closest("[data-tabs]"), all[(all.indexOf(tab) + step + all.length) % all.length]);
});

async function refresh(element) {
  const delay = Number(element.dataset.refresh);
  await new Promise((resolve) => setTimeout(resolve, delay));
  const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById(element.id);
  if (!fresh) return;
  element.replaceWith(fresh);
  if (fresh.dataset.refresh) refresh(fresh);
  // Settled, or waiting for a person: load the whole page once (its forms change too).
  else window.location.reload();
}

for (const element of document.querySelectorAll("[data-refresh]")) refresh(element);

// An optional file input left empty is not sent at all (an empty file part would be
// stored as an upload and refused).
document.addEventListener("submit", (event) => {
  for (const input of event.target.querySelectorAll('input[type="file"]')) {
    if (!input.files.length) input.disabled = true;
  }
});

// A running run's page follows its events (SSE, resumed by the browser with
// Last-Event-ID after a drop): each event re-renders the live part; a run that settles
// or waits for a person reloads the whole page (its forms change).
const RUN_EVENTS = ["run.started", "stage.started", "stage.completed", "run.completed",
  "run.failed", "run.canceled", "run.awaiting_input"];
const SETTLED = new Set(["run.completed", "run.failed", "run.canceled", "run.awaiting_input"]);

async function swapLive(id) {
  const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById(id);
  const current = document.getElementById(id);
  if (fresh && current) current.replaceWith(fresh);
}

for (const element of document.querySelectorAll("[data-events]")) {
  const source = new EventSource(element.dataset.events);
  for (const type of RUN_EVENTS) {
    source.addEventListener(type, () => {
      if (SETTLED.has(type)) {
        source.close();
        window.location.reload();
      } else {
        swapLive(element.id);
      }
    });
  }
}

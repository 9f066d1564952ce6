// The annotation page: the image list, the canvas tools, the open image's annotations, pre-fill.
// The mask being made lives in session.js, drawing in canvas.js, the queue and export in jobs.js,
// the server's API in api.js, the RLE codec in rle.js.

import { api } from "./api.js";
import { View, colourFor } from "./canvas.js";
import { MaskSession } from "./session.js";
import { decode, encode, contains } from "./rle.js";
import { setStatus, guarded } from "./status.js";
import { initJobs } from "./jobs.js";

const $ = (id) => document.getElementById(id);

const state = {
  images: [],
  image: null, // the open image's entry from GET /api/images
  ready: false, // its embedding is computed: clicks may be sent
  annotations: [],
  selectedId: null,
  tool: "prompt",
  brushRadius: 12,
  openCount: 0, // guards against answers for an image that is no longer open
};

const stage = $("stage");
const canvas = $("canvas");
const view = new View(canvas, stage);
const session = new MaskSession({
  predict: (body) => api.predict(state.image.id, body),
  onChange: showSession,
  onError: (error) => setStatus(`Prediction failed: ${error.message}`, "error"),
});

// Edits run one after another, in the order asked: pressing A then R quickly must accept one
// proposal and reject the next, not act twice on the first.
let edits = Promise.resolve();
function serial(fn) {
  return (...args) => {
    edits = edits.then(() => fn(...args)).catch((error) => setStatus(error.message, "error"));
    return edits;
  };
}

function setStage(value) {
  stage.dataset.state = value;
}

// ---------------------------------------------------------------- images

async function loadImages() {
  const data = await api.images();
  state.images = data.images;
  $("progress").textContent = `${data.annotated} / ${data.total} annotated`;
  const list = $("image-list");
  list.replaceChildren(
    ...data.images.map((image) => {
      const li = document.createElement("li");
      li.dataset.imageId = image.id;
      li.classList.toggle("active", state.image !== null && image.id === state.image.id);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = image.name;
      name.title = `${image.name} (${image.width} × ${image.height})`;
      const counts = document.createElement("span");
      counts.className = "counts";
      counts.append(
        Object.assign(document.createElement("span"), {
          className: image.accepted > 0 ? "done" : "",
          textContent: `✓${image.accepted}`,
        }),
      );
      if (image.proposed > 0) counts.append(` ·${image.proposed}?`);
      if (image.embedded) counts.append(" ⚡");
      li.append(name, counts);
      li.addEventListener("click", () => openImage(image.id));
      return li;
    }),
  );
}

function loadImageElement(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the image file could not be loaded"));
    image.src = url;
  });
}

async function openImage(id) {
  const ticket = ++state.openCount;
  const entry = state.images.find((image) => image.id === id);
  if (!entry) return;
  state.image = entry;
  state.ready = false;
  state.selectedId = null;
  state.annotations = [];
  for (const li of $("image-list").children) li.classList.toggle("active", li.dataset.imageId === String(id));
  setStage("loading");
  setStatus(`Loading ${entry.name}…`);
  try {
    const element = await loadImageElement(api.imageUrl(id));
    if (ticket !== state.openCount) return;
    view.setImage(element);
    session.reset(element.naturalWidth, element.naturalHeight);
    await loadAnnotations();
    if (ticket !== state.openCount) return;
    setStage("embedding");
    setStatus("computing embedding…");
    const embedded = await api.embed(id);
    if (ticket !== state.openCount) return;
    state.ready = true;
    setStage("ready");
    const how = embedded.cached ? "cached" : `computed in ${embedded.seconds.toFixed(2)} s`;
    setStatus(`${entry.name}: embedding ${how}. Click an object.`);
    if (!embedded.cached) guarded("Refreshing the image list", loadImages); // to show it cached
  } catch (error) {
    if (ticket !== state.openCount) return;
    setStage("error");
    setStatus(`Opening ${entry.name} failed: ${error.message}`, "error");
  }
}

function stepImage(step) {
  if (!state.images.length) return;
  const index = state.image ? state.images.findIndex((image) => image.id === state.image.id) : -1;
  const next = Math.min(state.images.length - 1, Math.max(0, index + step));
  if (next !== index) openImage(state.images[next].id);
}

// ---------------------------------------------------------------- annotations

async function loadAnnotations() {
  if (!state.image) return;
  const data = await api.annotations(state.image.id);
  state.annotations = data.annotations.map((a, i) => ({ ...a, colour: colourFor(i) }));
  if (!state.annotations.some((a) => a.id === state.selectedId)) state.selectedId = null;
  showAnnotations();
}

function showAnnotations() {
  const hidden = session.fixingId;
  view.setAnnotations(
    state.annotations.filter((a) => a.id !== hidden),
    state.selectedId,
  );
  canvas.dataset.annotations = String(state.annotations.filter((a) => a.status !== "rejected").length);
  $("annotation-list").replaceChildren(
    ...state.annotations.map((a) => {
      const li = document.createElement("li");
      li.dataset.annotationId = a.id;
      li.dataset.status = a.status;
      li.classList.toggle("selected", a.id === state.selectedId);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${a.colour.join(",")})`;
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = a.label || "(no label)";
      const status = document.createElement("span");
      status.className = "status";
      status.textContent = `${a.status} · ${a.area} px`;
      li.append(swatch, label, status);
      li.addEventListener("click", () => select(a.id));
      return li;
    }),
  );
  $("annotation-list").querySelector(".selected")?.scrollIntoView({ block: "nearest" });
  const selected = selectedAnnotation();
  $("sel-accept-btn").disabled = !selected || selected.status === "accepted";
  $("sel-reject-btn").disabled = !selected || selected.status === "rejected";
  $("sel-fix-btn").disabled = !selected;
  $("sel-delete-btn").disabled = !selected;
}

function selectedAnnotation() {
  return state.annotations.find((a) => a.id === state.selectedId) || null;
}

function select(id) {
  state.selectedId = id;
  const selected = selectedAnnotation();
  if (selected && selected.label) $("label-input").value = selected.label;
  showAnnotations();
}

/** Select the topmost visible annotation under p (image pixels), or nothing. */
function selectAt(p) {
  const x = Math.floor(p.x);
  const y = Math.floor(p.y);
  const hit = [...state.annotations].reverse().find((a) => a.status !== "rejected" && contains(a.mask, x, y));
  select(hit ? hit.id : null);
}

/** After the annotations or labels changed on the server: refresh what depends on them. */
async function refreshAfterEdit() {
  await Promise.all([loadAnnotations(), loadImages(), loadLabels()]);
}

async function accept() {
  if (!state.image) return;
  const label = $("label-input").value.trim();
  if (session.mask) {
    if (session.pixels === 0) {
      setStatus("The mask is empty: click an object or paint with the brush first.", "error");
      return;
    }
    const { width, height } = session;
    const mask = encode(session.mask, height, width);
    const seconds = Math.round(session.seconds * 10) / 10;
    await guarded("Accepting the mask", async () => {
      if (session.fixingId !== null) {
        await api.updateAnnotation(session.fixingId, { mask, label, status: "accepted" });
      } else {
        const annotator = $("annotator-input").value.trim();
        await api.createAnnotation(state.image.id, {
          mask,
          label,
          prompts: session.prompts(),
          seconds,
          annotator,
          status: "accepted",
        });
      }
      const fixed = session.fixingId !== null;
      session.reset();
      if (fixed) setTool("select");
      await refreshAfterEdit();
      setStatus(`Accepted ${label ? `"${label}"` : "a mask without label"} (${seconds} s).`);
    });
    return;
  }
  await acceptSelected();
}

async function acceptSelected() {
  const selected = selectedAnnotation();
  if (!selected) {
    setStatus("Nothing to accept: click an object, or select a proposal.", "error");
    return;
  }
  const label = $("label-input").value.trim() || selected.label || "";
  await guarded("Accepting the proposal", async () => {
    await api.updateAnnotation(selected.id, { status: "accepted", label });
    selectNextProposal(selected.id);
    await refreshAfterEdit();
  });
}

async function rejectSelected() {
  const selected = selectedAnnotation();
  if (!selected) return;
  await guarded("Rejecting the proposal", async () => {
    await api.updateAnnotation(selected.id, { status: "rejected" });
    selectNextProposal(selected.id);
    await refreshAfterEdit();
  });
}

/** Move the selection to the next proposal after `id`, so a review goes A, R, A, ... without clicks. */
function selectNextProposal(id) {
  const index = state.annotations.findIndex((a) => a.id === id);
  const next = state.annotations.slice(index + 1).find((a) => a.status === "proposed");
  state.selectedId = next ? next.id : null;
}

function fixSelected() {
  const selected = selectedAnnotation();
  if (!selected) return;
  session.load(decode(selected.mask), selected.id);
  if (selected.label) $("label-input").value = selected.label;
  state.selectedId = null;
  setTool("brush");
  showAnnotations();
  setStatus("Fixing the selection: brush (B) and erase (E), then Enter to accept.");
}

async function deleteSelected() {
  const selected = selectedAnnotation();
  if (!selected) return;
  await guarded("Deleting the annotation", async () => {
    await api.deleteAnnotation(selected.id);
    state.selectedId = null;
    await refreshAfterEdit();
    setStatus("Annotation deleted.");
  });
}

async function prefill() {
  if (!state.image) return;
  const image = state.image;
  const pointsPerSide = Number($("prefill-points").value) || 16;
  $("prefill-btn").disabled = true;
  setStatus(`Pre-filling ${image.name} (${pointsPerSide} × ${pointsPerSide} points)…`);
  await guarded("Pre-fill", async () => {
    await api.prefill(image.id, pointsPerSide);
    if (state.image !== image) return;
    await refreshAfterEdit();
    const proposals = state.annotations.filter((a) => a.status === "proposed");
    state.selectedId = proposals.length ? proposals[0].id : null;
    setTool("select");
    showAnnotations();
    setStatus(`${proposals.length} proposals: A accept, R reject, F fix, click to pick another.`);
  });
  $("prefill-btn").disabled = false;
}

async function loadLabels() {
  const data = await api.labels();
  $("label-options").replaceChildren(
    ...data.labels.map((label) => Object.assign(document.createElement("option"), { value: label })),
  );
}

// ---------------------------------------------------------------- the current mask

function showSession() {
  view.setCurrentMask(session.mask);
  view.setPrompt(session.points, session.box);
  const pixels = session.pixels;
  canvas.dataset.maskPixels = String(pixels);
  const candidates = $("candidates");
  candidates.replaceChildren(
    ...session.candidates.map((c, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.testid = `candidate-${i + 1}`;
      button.textContent = `${i + 1}: ${c.score.toFixed(3)}`;
      button.title = `Candidate ${i + 1} (predicted IoU ${c.score.toFixed(3)}); key ${i + 1} or Tab`;
      button.classList.toggle("active", i === session.candidateIndex && !session.isEdited());
      button.addEventListener("click", () => session.selectCandidate(i));
      return button;
    }),
  );
  $("undo-btn").disabled = session.undoStack.length === 0;
  $("redo-btn").disabled = session.redoStack.length === 0;
  $("accept-btn").disabled = !state.image;
  if (session.candidates.length && state.ready && !session.fixingId) {
    const seconds = session.lastSeconds === undefined ? "" : ` in ${session.lastSeconds.toFixed(2)} s`;
    setStatus(`Mask of ${pixels} px${seconds}. Enter accepts; click to refine.`);
  }
}

function clearPrompt() {
  const fixing = session.fixingId !== null;
  session.reset();
  state.selectedId = null;
  if (fixing) setTool("prompt");
  showAnnotations();
  if (state.ready) setStatus("Prompt cleared.");
}

function tick() {
  $("timer").textContent = `${session.seconds.toFixed(1)} s`;
}

// ---------------------------------------------------------------- tools and the canvas

function setTool(tool) {
  state.tool = tool;
  stage.dataset.tool = tool;
  for (const button of document.querySelectorAll("button.tool")) {
    button.classList.toggle("active", button.dataset.tool === tool);
  }
  if (tool !== "brush" && tool !== "eraser") view.setCursor(null);
}

function setBrushRadius(radius) {
  state.brushRadius = Math.max(1, Math.min(200, radius));
  $("brush-radius").textContent = String(state.brushRadius);
}

const DRAG_THRESHOLD_PX = 5; // screen pixels a press may move and still count as a click
let press = null;

canvas.addEventListener("contextmenu", (event) => event.preventDefault());

canvas.addEventListener("pointerdown", (event) => {
  if (!state.ready) return;
  canvas.setPointerCapture(event.pointerId);
  const p = view.toImage(event);
  press = { start: p, x: event.clientX, y: event.clientY, button: event.button, shift: event.shiftKey };
  if (state.tool === "brush" || state.tool === "eraser") {
    press.stroke = true;
    session.beginStroke(p, state.tool === "brush" ? 1 : 0, state.brushRadius);
  }
});

canvas.addEventListener("pointermove", (event) => {
  const p = view.toImage(event);
  if (state.tool === "brush" || state.tool === "eraser") view.setCursor({ ...p, radius: state.brushRadius });
  if (!press) return;
  if (press.stroke) {
    session.continueStroke(p);
    return;
  }
  press.moved ||= Math.hypot(event.clientX - press.x, event.clientY - press.y) > DRAG_THRESHOLD_PX;
  if (press.moved && state.tool === "prompt" && press.button === 0) view.setDrag(boxOf(press.start, p));
});

canvas.addEventListener("pointerup", (event) => {
  if (!press) return;
  const done = press;
  press = null;
  const p = view.toImage(event);
  if (done.stroke) {
    session.endStroke();
    return;
  }
  if (state.tool === "select") {
    selectAt(p);
    return;
  }
  view.setDrag(null);
  if (done.moved && done.button === 0) {
    const box = boxOf(done.start, p);
    if (box[2] - box[0] >= 2 && box[3] - box[1] >= 2) session.setBox(box);
  } else if (!done.moved) {
    const x = Math.min(view.width - 1, Math.max(0, Math.floor(p.x)));
    const y = Math.min(view.height - 1, Math.max(0, Math.floor(p.y)));
    session.addPoint(x, y, done.button === 2 || done.shift ? 0 : 1);
  }
});

canvas.addEventListener("pointerleave", () => view.setCursor(null));

/** XYXY box in whole image pixels, clipped to the image, from two corners in any order. */
function boxOf(a, b) {
  const clip = (v, max) => Math.min(max, Math.max(0, Math.round(v)));
  return [
    clip(Math.min(a.x, b.x), view.width),
    clip(Math.min(a.y, b.y), view.height),
    clip(Math.max(a.x, b.x), view.width),
    clip(Math.max(a.y, b.y), view.height),
  ];
}

// ---------------------------------------------------------------- keyboard

document.addEventListener("keydown", (event) => {
  if (event.target.matches("button") && (event.key === "Enter" || event.key === " ")) return;
  const typing = event.target.matches("input, select, textarea");
  if (typing) {
    if (event.key === "Enter" && event.target.id === "label-input") {
      event.preventDefault();
      actions.accept();
    } else if (event.key === "Escape") {
      event.target.blur();
    }
    return;
  }
  const key = event.key;
  const ctrl = event.ctrlKey || event.metaKey;
  if (ctrl && key.toLowerCase() === "z") {
    if (event.shiftKey) session.redo();
    else session.undo();
  } else if (ctrl && key.toLowerCase() === "y") {
    session.redo();
  } else if (ctrl || event.altKey) {
    return; // leave the browser's own shortcuts alone
  } else if (key === "Enter") {
    actions.accept();
  } else if (key === "Escape") {
    clearPrompt();
  } else if (key === "Tab") {
    session.cycleCandidate(event.shiftKey ? -1 : 1);
  } else if (key >= "1" && key <= "3") {
    session.selectCandidate(Number(key) - 1);
  } else if (key === "Delete" || key === "Backspace") {
    actions.deleteSelected();
  } else if (key === "[" || key === "]") {
    setBrushRadius(state.brushRadius + (key === "[" ? -1 : 1) * Math.max(1, Math.round(state.brushRadius / 6)));
  } else if (key === "?") {
    $("help").open = !$("help").open;
  } else if (key === "PageDown" || key === "PageUp") {
    stepImage(key === "PageDown" ? 1 : -1);
  } else {
    const action = {
      v: () => setTool("prompt"),
      s: () => setTool("select"),
      b: () => setTool("brush"),
      e: () => setTool("eraser"),
      a: actions.accept,
      r: actions.rejectSelected,
      f: actions.fixSelected,
      l: () => $("label-input").focus(),
    }[key.toLowerCase()];
    if (!action) return;
    action();
  }
  event.preventDefault();
});

// ---------------------------------------------------------------- wiring

const actions = {
  accept: serial(accept),
  acceptSelected: serial(acceptSelected),
  rejectSelected: serial(rejectSelected),
  fixSelected: serial(fixSelected),
  deleteSelected: serial(deleteSelected),
  prefill: serial(prefill),
};

for (const button of document.querySelectorAll("button.tool")) {
  button.addEventListener("click", () => setTool(button.dataset.tool));
}
$("accept-btn").addEventListener("click", actions.accept);
$("undo-btn").addEventListener("click", () => session.undo());
$("redo-btn").addEventListener("click", () => session.redo());
$("clear-btn").addEventListener("click", clearPrompt);
$("sel-accept-btn").addEventListener("click", actions.acceptSelected);
$("sel-reject-btn").addEventListener("click", actions.rejectSelected);
$("sel-fix-btn").addEventListener("click", actions.fixSelected);
$("sel-delete-btn").addEventListener("click", actions.deleteSelected);
$("prefill-btn").addEventListener("click", actions.prefill);

const annotator = $("annotator-input");
annotator.value = localStorage.getItem("segany.annotator") || "";
annotator.addEventListener("change", () => localStorage.setItem("segany.annotator", annotator.value.trim()));

setTool("prompt");
setBrushRadius(state.brushRadius);
setInterval(tick, 100);
showAnnotations();
guarded("Loading the image list", async () => {
  await Promise.all([loadImages(), loadLabels()]);
  setStatus(state.images.length ? "Pick an image on the left." : "The image folder is empty.");
});
initJobs({ nextImageIds, onQueueIdle: loadImages });

/** The ids of the `count` images after the open one (from the first when none is open). */
function nextImageIds(count) {
  const start = state.image ? state.images.findIndex((image) => image.id === state.image.id) + 1 : 0;
  return state.images.slice(start, start + count).map((image) => image.id);
}

// The image view: one canvas at the image's own resolution, scaled by CSS to fit its container.
// Everything it draws is in image pixels: annotations and the current mask are offscreen layers of
// the image's size, prompts and the brush cursor are drawn on top at each render.

import { forEachForegroundRun } from "./rle.js";

const CURRENT_COLOUR = [0, 220, 255];
const CURRENT_EDGE = [255, 255, 255];
const SELECTED_EDGE = [255, 235, 59];

/** A distinct colour for the i-th annotation (golden-angle hues), as [r, g, b]. */
export function colourFor(i) {
  const hue = (i * 137.508 + 20) % 360;
  return hslToRgb(hue, 0.75, 0.55);
}

function hslToRgb(h, s, l) {
  const a = s * Math.min(l, 1 - l);
  const f = (n) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

export class View {
  constructor(canvas, container) {
    this.canvas = canvas;
    this.container = container;
    this.ctx = canvas.getContext("2d");
    this.image = null;
    this.annotationLayer = document.createElement("canvas");
    this.currentLayer = document.createElement("canvas");
    this.points = [];
    this.box = null;
    this.drag = null;
    this.cursor = null;
    this.frame = 0;
    new ResizeObserver(() => this.fit()).observe(container);
  }

  get width() {
    return this.canvas.width;
  }

  get height() {
    return this.canvas.height;
  }

  /** Show a loaded HTMLImageElement; clears every layer. */
  setImage(image) {
    this.image = image;
    const { naturalWidth: w, naturalHeight: h } = image;
    for (const c of [this.canvas, this.annotationLayer, this.currentLayer]) {
      c.width = w;
      c.height = h;
    }
    this.points = [];
    this.box = null;
    this.drag = null;
    this.fit();
    this.render();
  }

  /** Scale the canvas (by CSS) to the largest size that fits its container. */
  fit() {
    if (!this.image) return;
    const box = this.container.getBoundingClientRect();
    const scale = Math.min(box.width / this.width, box.height / this.height);
    if (!(scale > 0)) return;
    this.canvas.style.width = `${Math.floor(this.width * scale)}px`;
    this.canvas.style.height = `${Math.floor(this.height * scale)}px`;
  }

  /** Image pixels per CSS pixel: keeps markers and strokes the same size on screen. */
  get pixelRatio() {
    const shown = this.canvas.getBoundingClientRect().width;
    return shown > 0 ? this.width / shown : 1;
  }

  /** A mouse event's position in image pixels (fractional; x right, y down). */
  toImage(event) {
    const rect = this.canvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * this.width) / rect.width,
      y: ((event.clientY - rect.top) * this.height) / rect.height,
    };
  }

  /**
   * Redraw the annotation layer: each annotation filled translucent in its colour and outlined
   * opaque (the selected one in yellow and on top), later ones over earlier ones.
   * annotations: [{id, status, mask (RLE), colour: [r, g, b]}]; rejected ones are not drawn.
   */
  setAnnotations(annotations, selectedId) {
    const w = this.width;
    const h = this.height;
    // The selected annotation goes last, on top, so that its whole outline shows.
    const shown = annotations
      .filter((a) => a.status !== "rejected")
      .sort((a, b) => (a.id === selectedId) - (b.id === selectedId));
    // Which annotation is on top at each pixel (-1: none); outlines are where it changes.
    const top = new Int32Array(w * h).fill(-1);
    shown.forEach((annotation, k) => {
      forEachForegroundRun(annotation.mask, (x, y0, y1) => {
        for (let y = y0; y < y1; y++) top[y * w + x] = k;
      });
    });
    const fill = shown.map((a) => (a.id === selectedId ? 170 : a.status === "proposed" ? 110 : 140));
    const edge = shown.map((a) => (a.id === selectedId ? SELECTED_EDGE : a.colour));
    const data = new ImageData(w, h);
    const px = data.data;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        const k = top[i];
        if (k < 0) continue;
        const onEdge =
          x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
          top[i - 1] !== k || top[i + 1] !== k || top[i - w] !== k || top[i + w] !== k;
        const [r, g, b] = onEdge ? edge[k] : shown[k].colour;
        const o = i * 4;
        px[o] = r;
        px[o + 1] = g;
        px[o + 2] = b;
        px[o + 3] = onEdge ? 255 : fill[k];
      }
    }
    this.annotationLayer.getContext("2d").putImageData(data, 0, 0);
    this.render();
  }

  /** Redraw the current (predicted or painted) mask: a row-major Uint8Array, or null. */
  setCurrentMask(mask) {
    const w = this.width;
    const h = this.height;
    const data = new ImageData(w, h);
    if (mask) {
      const px = data.data;
      const [r, g, b] = CURRENT_COLOUR;
      for (let i = 0; i < mask.length; i++) {
        if (!mask[i]) continue;
        const o = i * 4;
        px[o] = r;
        px[o + 1] = g;
        px[o + 2] = b;
        px[o + 3] = 130;
      }
      paintEdge(px, mask, w, h, CURRENT_EDGE);
    }
    this.currentLayer.getContext("2d").putImageData(data, 0, 0);
    this.render();
  }

  /** points: [{x, y, label}], box: [x0, y0, x1, y1] or null, in image pixels. */
  setPrompt(points, box) {
    this.points = points;
    this.box = box;
    this.render();
  }

  /** The rectangle being dragged ([x0, y0, x1, y1]) or null. */
  setDrag(rect) {
    this.drag = rect;
    this.render();
  }

  /** The brush outline ({x, y, radius}) or null. */
  setCursor(cursor) {
    this.cursor = cursor;
    this.render();
  }

  /** Draw at the next animation frame (several changes in one event cost one redraw). */
  render() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  draw() {
    const ctx = this.ctx;
    ctx.clearRect(0, 0, this.width, this.height);
    if (!this.image) return;
    ctx.drawImage(this.image, 0, 0);
    ctx.drawImage(this.annotationLayer, 0, 0);
    ctx.drawImage(this.currentLayer, 0, 0);
    const unit = this.pixelRatio;
    ctx.lineWidth = 2 * unit;
    for (const rect of [this.box, this.drag]) {
      if (!rect) continue;
      ctx.strokeStyle = rect === this.drag ? "rgba(255,255,255,0.9)" : "rgb(0,220,255)";
      ctx.setLineDash(rect === this.drag ? [6 * unit, 4 * unit] : []);
      ctx.strokeRect(rect[0], rect[1], rect[2] - rect[0], rect[3] - rect[1]);
    }
    ctx.setLineDash([]);
    for (const p of this.points) {
      ctx.beginPath();
      ctx.arc(p.x + 0.5, p.y + 0.5, 5 * unit, 0, 2 * Math.PI);
      ctx.fillStyle = p.label === 1 ? "rgb(46,204,64)" : "rgb(255,65,54)";
      ctx.fill();
      ctx.strokeStyle = "white";
      ctx.lineWidth = 1.5 * unit;
      ctx.stroke();
    }
    if (this.cursor) {
      ctx.beginPath();
      ctx.arc(this.cursor.x, this.cursor.y, this.cursor.radius, 0, 2 * Math.PI);
      ctx.strokeStyle = "white";
      ctx.lineWidth = unit;
      ctx.stroke();
    }
  }
}

/** Paint, opaque, every mask pixel with a 4-neighbour outside the mask (or on the image border). */
function paintEdge(px, mask, w, h, [r, g, b]) {
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      const edge =
        x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
        !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w];
      if (!edge) continue;
      const o = i * 4;
      px[o] = r;
      px[o + 1] = g;
      px[o + 2] = b;
      px[o + 3] = 255;
    }
  }
}

/** Set (value 1) or clear (value 0) a disc of the given radius in a row-major mask. */
export function paintDisc(mask, w, h, cx, cy, radius, value) {
  const r2 = radius * radius;
  const x0 = Math.max(0, Math.floor(cx - radius));
  const x1 = Math.min(w - 1, Math.ceil(cx + radius));
  const y0 = Math.max(0, Math.floor(cy - radius));
  const y1 = Math.min(h - 1, Math.ceil(cy + radius));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      if (dx * dx + dy * dy <= r2) mask[y * w + x] = value;
    }
  }
}

/** Paint discs along the segment from a to b, so a fast stroke leaves no gaps. */
export function paintStroke(mask, w, h, a, b, radius, value) {
  const steps = Math.max(1, Math.ceil(Math.hypot(b.x - a.x, b.y - a.y) / Math.max(1, radius / 2)));
  for (let s = 0; s <= steps; s++) {
    const t = s / steps;
    paintDisc(mask, w, h, a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t, radius, value);
  }
}

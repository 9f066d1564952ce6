// The mask being made: its prompts (points, box), the model's candidates, brush edits, the timer,
// and undo/redo over all of them. Knows nothing of the page; the app passes a predict function and
// is told of every change through onChange.

import { decode, countPixels } from "./rle.js";
import { paintDisc, paintStroke } from "./canvas.js";

const HISTORY_LIMIT = 200;

export class MaskSession {
  /**
   * predict(body) -> Promise of the server's predict response (body as POST /api/images/{id}/predict).
   * onChange() is called after every change; onError(error) when a prediction fails.
   */
  constructor({ predict, onChange, onError }) {
    this.predictFn = predict;
    this.onChange = onChange;
    this.onError = onError;
    this.width = 0;
    this.height = 0;
    this.inFlight = false;
    this.pending = false;
    this.version = 0;
    this.clear(0, 0);
  }

  /** Forget everything (a new image, an accepted mask, Esc). */
  reset(width = this.width, height = this.height) {
    this.clear(width, height);
    this.onChange();
  }

  clear(width, height) {
    this.width = width;
    this.height = height;
    this.points = [];
    this.box = null;
    this.candidates = [];
    this.candidateIndex = 0;
    this.predictionId = null;
    this.mask = null;
    this.fixingId = null;
    this.startedAt = null;
    this.undoStack = [];
    this.redoStack = [];
    this.stroke = null;
    this.version++;
  }

  get pixels() {
    return this.mask ? countPixels(this.mask) : 0;
  }

  get isEmpty() {
    return !this.mask && this.points.length === 0 && !this.box;
  }

  /** Seconds since the first action on this mask (0 before it). */
  get seconds() {
    return this.startedAt === null ? 0 : (performance.now() - this.startedAt) / 1000;
  }

  /** The prompts as stored with an accepted annotation. */
  prompts() {
    return {
      points: this.points.map((p) => [p.x, p.y]),
      labels: this.points.map((p) => p.label),
      box: this.box,
      edited: this.isEdited(),
    };
  }

  isEdited() {
    const shown = this.candidates[this.candidateIndex];
    return Boolean(this.mask) && (!shown || shown.mask !== this.mask);
  }

  addPoint(x, y, label) {
    this.change(() => this.points.push({ x, y, label }));
    this.requestPrediction();
  }

  setBox(box) {
    this.change(() => {
      this.box = box;
    });
    this.requestPrediction();
  }

  /** Show candidate i (0-based) as the current mask. */
  selectCandidate(i) {
    if (i < 0 || i >= this.candidates.length || (i === this.candidateIndex && !this.isEdited())) return;
    this.change(() => {
      this.candidateIndex = i;
      this.mask = this.candidates[i].mask;
    });
  }

  cycleCandidate(step = 1) {
    const n = this.candidates.length;
    if (n > 1) this.selectCandidate((this.candidateIndex + step + n) % n);
  }

  /** Start fixing an existing annotation: its mask becomes the current mask, to brush and erase. */
  load(mask, annotationId) {
    this.reset();
    this.mask = mask;
    this.fixingId = annotationId;
    this.startedAt = performance.now();
    this.onChange();
  }

  /** Brush (value 1) or eraser (value 0) stroke; p in image pixels. */
  beginStroke(p, value, radius) {
    this.change(() => {
      this.mask = this.mask ? this.mask.slice() : new Uint8Array(this.width * this.height);
    });
    this.stroke = { last: p, value, radius };
    paintDisc(this.mask, this.width, this.height, p.x, p.y, radius, value);
    this.onChange();
  }

  continueStroke(p) {
    if (!this.stroke) return;
    const { last, value, radius } = this.stroke;
    paintStroke(this.mask, this.width, this.height, last, p, radius, value);
    this.stroke.last = p;
    this.onChange();
  }

  endStroke() {
    this.stroke = null;
  }

  undo() {
    this.travel(this.undoStack, this.redoStack);
  }

  redo() {
    this.travel(this.redoStack, this.undoStack);
  }

  // Every undoable change goes through here: remember the state before it, start the timer.
  change(apply) {
    this.undoStack.push(this.snapshot());
    if (this.undoStack.length > HISTORY_LIMIT) this.undoStack.shift();
    this.redoStack = [];
    if (this.startedAt === null) this.startedAt = performance.now();
    this.version++;
    apply();
    this.onChange();
  }

  travel(from, to) {
    if (!from.length) return;
    to.push(this.snapshot());
    this.restore(from.pop());
    this.version++;
    // A state left before its prediction came back has prompts but no mask: predict it now.
    if ((this.points.length || this.box) && !this.candidates.length) this.requestPrediction();
    this.onChange();
  }

  // Masks are never changed in place once shared (a stroke paints a copy), so a snapshot may hold
  // references to them.
  snapshot() {
    return {
      points: this.points.slice(),
      box: this.box,
      candidates: this.candidates,
      candidateIndex: this.candidateIndex,
      predictionId: this.predictionId,
      mask: this.mask,
    };
  }

  restore(state) {
    Object.assign(this, state);
  }

  requestPrediction() {
    this.pending = true;
    if (!this.inFlight) this.predictLoop();
  }

  // One request at a time; changes made while one is out are predicted when it returns, and an
  // answer to prompts that have since changed is dropped.
  async predictLoop() {
    this.inFlight = true;
    try {
      while (this.pending) {
        this.pending = false;
        if (!this.points.length && !this.box) break;
        const version = this.version;
        let result;
        try {
          result = await this.predictWithFallback(this.predictBody());
        } catch (error) {
          if (version === this.version) this.onError(error);
          continue;
        }
        if (version === this.version) this.applyPrediction(result);
      }
    } finally {
      this.inFlight = false;
    }
  }

  // The server keeps only recent predictions; one that undo went back to may be gone (404). Then
  // predict from the prompts alone rather than fail the click.
  async predictWithFallback(body) {
    try {
      return await this.predictFn(body);
    } catch (error) {
      if (error.status !== 404 || !body.previous) throw error;
      return this.predictFn({ ...body, previous: null });
    }
  }

  predictBody() {
    const shown = this.predictionId !== null && this.candidates.length;
    return {
      points: this.points.map((p) => [p.x, p.y]),
      labels: this.points.map((p) => p.label),
      box: this.box,
      // Refine from the candidate on screen: SAM takes its low-resolution logits as a mask prompt.
      previous: shown ? { prediction_id: this.predictionId, index: this.candidateIndex } : null,
      // multimask left out: the server gives three candidates for an ambiguous prompt (one click).
    };
  }

  applyPrediction(result) {
    this.candidates = result.masks.map((rle, i) => ({ mask: decode(rle), score: result.scores[i] }));
    this.predictionId = result.prediction_id;
    let best = 0;
    result.scores.forEach((s, i) => {
      if (s > result.scores[best]) best = i;
    });
    this.candidateIndex = best;
    this.mask = this.candidates.length ? this.candidates[best].mask : null;
    this.lastSeconds = result.seconds;
    this.onChange();
  }
}

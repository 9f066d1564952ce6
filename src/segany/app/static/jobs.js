// Work on many images: the background queue (embeddings and pre-fill for the next images) and export.

import { api } from "./api.js";
import { setStatus, guarded } from "./status.js";

const $ = (id) => document.getElementById(id);
const sizeOf = (value) => (Array.isArray(value) ? value.length : Number(value) || 0);
let pollTimer = 0;

/**
 * Wire the queue and export controls.
 * nextImageIds(count) -> the ids of the next `count` images to queue; onQueueIdle() runs when the
 * queue has emptied (to refresh the image list).
 */
export function initJobs({ nextImageIds, onQueueIdle }) {
  $("queue-btn").addEventListener("click", queueNext);
  $("export-btn").addEventListener("click", exportAnnotations);
  pollQueue(onQueueIdle);

  async function queueNext() {
    const ids = nextImageIds(Math.max(1, Number($("queue-count").value) || 1));
    if (!ids.length) {
      setStatus("No images after this one to queue.", "error");
      return;
    }
    await guarded("Queueing", async () => {
      await api.queue(ids, $("queue-prefill").checked);
      setStatus(`Queued ${ids.length} image${ids.length === 1 ? "" : "s"}.`);
      pollQueue(onQueueIdle);
    });
  }
}

async function pollQueue(onQueueIdle) {
  clearTimeout(pollTimer);
  const status = await guarded("Reading the queue", () => api.queueStatus());
  if (!status) return;
  const pending = sizeOf(status.pending);
  const errors = sizeOf(status.errors);
  const current = status.current ?? null;
  const parts = [`queue: ${sizeOf(status.done)} done`, `${pending} pending`];
  if (errors) parts.push(`${errors} failed`);
  if (current !== null) parts.push(`working on ${current}`);
  const line = $("queue-status");
  line.textContent = parts.join(", ");
  line.title = Array.isArray(status.errors) ? status.errors.map((e) => JSON.stringify(e)).join("\n") : "";
  if (pending > 0 || current !== null) pollTimer = setTimeout(() => pollQueue(onQueueIdle), 1000);
  else await guarded("Refreshing the image list", onQueueIdle);
}

async function exportAnnotations() {
  const format = $("export-format").value;
  const button = $("export-btn");
  button.disabled = true;
  setStatus(`Exporting ${format}…`);
  await guarded("Export", async () => {
    const { blob, filename } = await api.exportZip(format);
    // Hand the zip to the browser's download machinery through a temporary link.
    const url = URL.createObjectURL(blob);
    const link = Object.assign(document.createElement("a"), { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    setStatus(`Exported ${filename} (${(blob.size / 1024).toFixed(1)} KiB).`);
  });
  button.disabled = false;
}

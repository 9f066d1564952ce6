// The status line under the canvas, and a wrapper that turns a failed request into a line there.

const line = () => document.getElementById("status");

export function setStatus(text, kind = "info") {
  line().textContent = text;
  line().classList.toggle("error", kind === "error");
}

/** Run fn; if it throws, show "<what> failed: <reason>" and resolve to undefined. */
export async function guarded(what, fn) {
  try {
    return await fn();
  } catch (error) {
    setStatus(`${what} failed: ${error.message}`, "error");
    return undefined;
  }
}

// The annotation server's JSON API. Every call carries the page's access token, if it was opened
// as /?token=SECRET; errors come back as thrown Errors whose message is the server's one sentence.

const token = new URLSearchParams(window.location.search).get("token");

function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function request(method, path, body) {
  // The server refuses state-changing requests without a JSON content type (cross-site forms
  // cannot send one), so every non-GET request declares it, with or without a body.
  const init = { method, headers: method === "GET" ? headers() : headers({ "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const payload = await response.json();
    if (payload && payload.detail) {
      detail = typeof payload.detail === "string" ? payload.detail : JSON.stringify(payload.detail);
    }
  } catch {
    // Not JSON (a proxy's error page, say): keep the status line.
  }
  const error = new Error(detail);
  error.status = response.status;
  return error;
}

async function json(method, path, body) {
  const response = await request(method, path, body);
  return response.status === 204 ? null : response.json();
}

const img = (id) => `/api/images/${encodeURIComponent(id)}`;

export const api = {
  images: () => json("GET", "/api/images"),
  imageUrl: (id) => `${img(id)}/file${token ? `?token=${encodeURIComponent(token)}` : ""}`,
  embed: (id) => json("POST", `${img(id)}/embed`),
  predict: (id, prompt) => json("POST", `${img(id)}/predict`, prompt),
  annotations: (id) => json("GET", `${img(id)}/annotations`),
  createAnnotation: (id, annotation) => json("POST", `${img(id)}/annotations`, annotation),
  updateAnnotation: (annotationId, fields) =>
    json("PATCH", `/api/annotations/${encodeURIComponent(annotationId)}`, fields),
  deleteAnnotation: (annotationId) => json("DELETE", `/api/annotations/${encodeURIComponent(annotationId)}`),
  prefill: (id, pointsPerSide) => json("POST", `${img(id)}/prefill`, { points_per_side: pointsPerSide }),
  queue: (imageIds, prefill) => json("POST", "/api/queue", { image_ids: imageIds, prefill }),
  queueStatus: () => json("GET", "/api/queue"),
  labels: () => json("GET", "/api/labels"),

  /** POST /api/export; resolves to {blob, filename}. */
  async exportZip(format) {
    const response = await request("POST", "/api/export", { format });
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition);
    const filename = match ? decodeURIComponent(match[1]) : `segany-${format}.zip`;
    return { blob: await response.blob(), filename };
  },
};

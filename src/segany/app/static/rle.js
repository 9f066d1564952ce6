// Uncompressed COCO run-length encoding, as the server sends and receives it.
//
// An RLE is {size: [h, w], counts: [n0, n1, ...]}: alternating runs of 0s and 1s over the mask read
// column by column (x outer, y inner), starting with a run of 0s that may have length 0.
// In the browser a mask is a Uint8Array of h * w values 0/1 in row-major order (index y * w + x),
// the order of canvas ImageData, so painting and hit-testing need no transposition.

/** RLE -> row-major Uint8Array of 0/1 (length h * w). */
export function decode(rle) {
  const [h, w] = rle.size;
  const mask = new Uint8Array(h * w);
  forEachForegroundRun(rle, (x, y0, y1) => {
    for (let y = y0; y < y1; y++) mask[y * w + x] = 1;
  });
  return mask;
}

/** Row-major Uint8Array mask of h x w -> uncompressed RLE. */
export function encode(mask, h, w) {
  const counts = [];
  let value = 0;
  let run = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const v = mask[y * w + x] ? 1 : 0;
      if (v !== value) {
        counts.push(run);
        value = v;
        run = 0;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [h, w], counts };
}

/**
 * Call fn(x, y0, y1) for every vertical segment of 1s (rows y0 <= y < y1 of column x).
 * Work is proportional to the number of runs plus the columns they span, not to h * w.
 */
export function forEachForegroundRun(rle, fn) {
  const h = rle.size[0];
  let pos = 0;
  rle.counts.forEach((n, i) => {
    if (i % 2 === 1 && n > 0) {
      let start = pos;
      const end = pos + n;
      while (start < end) {
        const x = Math.floor(start / h);
        const y0 = start - x * h;
        const y1 = Math.min(h, y0 + (end - start));
        fn(x, y0, y1);
        start += y1 - y0;
      }
    }
    pos += n;
  });
}

/** Whether pixel (x, y) is inside the RLE's mask, without decoding it. */
export function contains(rle, x, y) {
  const [h, w] = rle.size;
  if (x < 0 || y < 0 || x >= w || y >= h) return false;
  const target = x * h + y;
  let pos = 0;
  for (let i = 0; i < rle.counts.length; i++) {
    pos += rle.counts[i];
    if (target < pos) return i % 2 === 1;
  }
  return false;
}

/** Number of 1s in an RLE. */
export function area(rle) {
  let total = 0;
  for (let i = 1; i < rle.counts.length; i += 2) total += rle.counts[i];
  return total;
}

/** Number of 1s in a row-major mask. */
export function countPixels(mask) {
  let total = 0;
  for (let i = 0; i < mask.length; i++) total += mask[i];
  return total;
}

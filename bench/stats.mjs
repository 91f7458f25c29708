// Small statistics helpers of the benchmark suite.

/** The q-quantile (0..1) of numbers, by linear interpolation between order statistics. */
export function quantile(values, q) {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export const median = (values) => quantile(values, 0.5);
export const min = (values) => values.reduce((a, b) => Math.min(a, b), Infinity);

/**
 * Weighted least-squares fit y = a + b * x: { a, b, r2 } (r2 weighted the same way).
 * weights default to 1 / y^2, which minimizes relative errors: with x spanning 1 to 4096,
 * an unweighted fit lets the largest x decide everything and leaves a (the cost at x = 0)
 * to noise, even negative.
 */
export function linearFit(xs, ys, weights = ys.map((y) => 1 / Math.max(y * y, 1e-30))) {
  const n = xs.length;
  const sw = weights.reduce((s, w) => s + w, 0);
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += (weights[i] * xs[i]) / sw;
    my += (weights[i] * ys[i]) / sw;
  }
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxx += weights[i] * (xs[i] - mx) ** 2;
    sxy += weights[i] * (xs[i] - mx) * (ys[i] - my);
    syy += weights[i] * (ys[i] - my) ** 2;
  }
  const b = sxx > 0 ? sxy / sxx : 0;
  const a = my - b * mx;
  const r2 = syy > 0 && sxx > 0 ? (sxy * sxy) / (sxx * syy) : 1;
  return { a, b, r2 };
}

/** Milliseconds since an arbitrary origin, sub-microsecond resolution. */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

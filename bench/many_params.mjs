// Many tiny params (issue 13 item 4): the cost of building an optimizer of N one-group fp32
// params of 4 elements each, its first step (state created, launch plan built) and a steady
// step, at N = 100k and 1M (10k and 100k with --quick). What is timed is host work: the
// params' update is 16 bytes each. Measured once per N (a cold start is what a user pays);
// the params and grads are made before the timing starts.
import { nowMs } from './stats.mjs';

export const MANY_PARAMS_COUNTS = { full: [100_000, 1_000_000], quick: [10_000, 100_000] };

/** The run's id for --filter and the report: many-params/100k, many-params/1m. */
export const manyParamsId = (n) => `many-params/${n >= 1e6 ? `${n / 1e6}m` : `${n / 1e3}k`}`;

function makeParams(fo, n, device) {
  const grads = Float32Array.of(0.01, -0.02, 0.03, -0.04);
  const params = new Array(n);
  for (let i = 0; i < n; i++) {
    const p = new fo.Parameter(fo.Tensor.from(Float32Array.of(0.1, 0.2, 0.3, i / n), { device }), { name: `p${i}` });
    // A grad tensor each (one shared by many params is refused: a GPU would read it while
    // another block clips or unscales it); made before the timing starts.
    p.grad = fo.Tensor.from(grads, { device });
    params[i] = p;
  }
  return params;
}

/** [{ id, params, constructMs, firstStepMs, steadyStepMs, usPerParam: {...} }] for each count. */
export async function measureManyParams(fo, { counts, device, progress, collect }) {
  const rows = [];
  for (const n of counts) {
    const id = manyParamsId(n);
    progress?.start(id);
    let params = makeParams(fo, n, device);
    let t0 = nowMs();
    let opt = new fo.AdamW(params, { lr: 1e-3 });
    const constructMs = nowMs() - t0;
    t0 = nowMs();
    opt.step();
    opt.synchronize();
    const firstStepMs = nowMs() - t0;
    t0 = nowMs();
    opt.step();
    opt.synchronize();
    const steadyStepMs = nowMs() - t0;
    opt.dispose();
    for (const p of params) {
      p.grad?.dispose();
      p.data.dispose();
    }
    opt = null;
    params = null;
    await collect();
    const per = (ms) => (ms * 1e3) / n;
    rows.push({
      id,
      params: n,
      constructMs,
      firstStepMs,
      steadyStepMs,
      usPerParam: { construct: per(constructMs), firstStep: per(firstStepMs), steadyStep: per(steadyStepMs) },
    });
    progress?.done(`new ${(constructMs / 1e3).toFixed(2)} s, first step ${(firstStepMs / 1e3).toFixed(2)} s`);
  }
  return rows;
}

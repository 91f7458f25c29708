// The optimizer metrics (docs/design.md section 7, llm-foundry's DecoupledLionW set) computed
// independently of the addon: the documented update rule run once from the current state,
// update = p - p_next, moment = the current exp_avg, every sum in float64, and
//   cosine(a, b) = dot(a, b) / sqrt(max(|a|^2 |b|^2, 1e-16)).
// Precision 'float64' runs the rule itself in float64 (the yardstick); 'float32' rounds
// after every operation in the order of native/common/*_rule.h, so the only difference
// left to the addon is the order of the float64 sums.
import type { MetricsDict } from '../../src/metrics';

export type RulePrecision = 'float64' | 'float32';

export interface LionRefHyper {
  lr: number;
  betas: [number, number];
  weightDecay: number;
  /** The group's initial_lr (0 or undefined: none, the decay is not scaled). */
  initialLr?: number;
}

export interface AdamWRefHyper {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad?: boolean;
  maximize?: boolean;
}

/** AdamWDL's per-param modifiers (plain AdamW: ratio 1, decay applied). */
export interface LayerwiseMods {
  ratio?: number;
  applyDecay?: boolean;
}

const identity = (x: number) => x;
const rounding = (precision: RulePrecision) => (precision === 'float32' ? Math.fround : identity);
const sign = (x: number) => (x > 0 ? 1 : x < 0 ? -1 : 0);

// torch's lerp (ATen/native/Lerp.h): exact at both ends.
function lerp(start: number, end: number, weight: number, r: (x: number) => number): number {
  return weight < 0.5 && weight > -0.5
    ? r(start + r(weight * r(end - start)))
    : r(end - r(r(end - start) * r(1 - weight)));
}

/** DecoupledLionW: the param after one step (the moment is not returned: metrics use the current one). */
export function lionNext(
  p: ArrayLike<number>,
  g: ArrayLike<number>,
  m: ArrayLike<number>,
  h: LionRefHyper,
  precision: RulePrecision = 'float64',
): Float64Array {
  const r = rounding(precision);
  const scale = h.initialLr ? h.lr / h.initialLr : 1;
  const decay = h.weightDecay !== 0 ? r(1 - scale * h.weightDecay) : 1;
  const negLr = r(-h.lr);
  const w1 = r(1 - h.betas[0]);
  const out = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const decayed = r(p[i] * decay);
    const direction = sign(precision === 'float32' ? lerp(m[i], g[i], w1, r) : m[i] + w1 * (g[i] - m[i]));
    out[i] = r(decayed + r(negLr * direction));
  }
  return out;
}

/**
 * AdamW (AdamWDL with mods): the param after the step numbered `step` (the count after
 * this step's increment). The decoupled decay uses the base lr; the Adam step lr * ratio.
 */
export function adamwNext(
  p: ArrayLike<number>,
  g: ArrayLike<number>,
  state: { m: ArrayLike<number>; v: ArrayLike<number>; vmax?: ArrayLike<number> },
  step: number,
  h: AdamWRefHyper,
  mods: LayerwiseMods = {},
  precision: RulePrecision = 'float64',
): Float64Array {
  const r = rounding(precision);
  const [b1, b2] = h.betas;
  const bc1 = 1 - b1 ** step;
  const bc2 = 1 - b2 ** step;
  const decay = mods.applyDecay === false ? 1 : r(1 - h.lr * h.weightDecay);
  const negStepSize = r(-((h.lr * (mods.ratio ?? 1)) / bc1));
  const bc2Sqrt = r(Math.sqrt(bc2));
  const eps = r(h.eps);
  const [beta1, beta2, omb1, omb2] = [r(b1), r(b2), r(1 - b1), r(1 - b2)];
  const out = new Float64Array(p.length);
  for (let i = 0; i < p.length; i++) {
    const gi = h.maximize ? -g[i] : g[i];
    const decayed = r(p[i] * decay);
    const m = r(r(state.m[i] * beta1) + r(omb1 * gi));
    const v = r(r(state.v[i] * beta2) + r(r(omb2 * gi) * gi));
    const second = h.amsgrad ? Math.max(state.vmax![i], v) : v;
    const denom = r(r(r(Math.sqrt(second)) / bc2Sqrt) + eps);
    out[i] = r(decayed + r(r(negStepSize * m) / denom));
  }
  return out;
}

export interface MetricInputs {
  param: ArrayLike<number>;
  grad: ArrayLike<number>;
  moment: ArrayLike<number>;
  /** The param after the step. */
  next: ArrayLike<number>;
}

const cosine = (dot: number, aSq: number, bSq: number) => dot / Math.sqrt(Math.max(aSq * bSq, 1e-16));

/** The six metrics of one param, keyed `${metric}/${name}`, from float64 sums. */
export function referenceMetrics(name: string, x: MetricInputs, precision: RulePrecision = 'float64'): MetricsDict {
  let mm = 0;
  let pp = 0;
  let uu = 0;
  let gg = 0;
  let ug = 0;
  let mg = 0;
  for (let i = 0; i < x.param.length; i++) {
    const p = x.param[i];
    const g = x.grad[i];
    const m = x.moment[i];
    // The addon subtracts in float32 (its rule's result is float32); float64 here.
    const u = precision === 'float32' ? Math.fround(p - x.next[i]) : p - x.next[i];
    mm += m * m;
    pp += p * p;
    uu += u * u;
    gg += g * g;
    ug += u * g;
    mg += m * g;
  }
  return {
    [`l2_norm/moment/${name}`]: Math.sqrt(mm),
    [`l2_norm/param/${name}`]: Math.sqrt(pp),
    [`l2_norm/update/${name}`]: Math.sqrt(uu),
    [`l2_norm/grad/${name}`]: Math.sqrt(gg),
    [`cosine/update_grad/${name}`]: cosine(ug, uu, gg),
    [`cosine/moment_grad/${name}`]: cosine(mg, mm, gg),
  };
}

/**
 * Throws unless `actual` has exactly the keys of `expected`, norms within rtol and cosines
 * within atol. Names the first offending key.
 */
export function expectMetricsClose(
  actual: MetricsDict,
  expected: MetricsDict,
  what: string,
  { rtol = 1e-6, atol = 1e-6 }: { rtol?: number; atol?: number } = {},
): void {
  const a = Object.keys(actual).sort();
  const e = Object.keys(expected).sort();
  if (a.join('\n') !== e.join('\n')) {
    const missing = e.filter((k) => !(k in actual));
    const extra = a.filter((k) => !(k in expected));
    throw new Error(`${what}: keys differ; missing [${missing.join(', ')}], unexpected [${extra.join(', ')}]`);
  }
  for (const k of e) {
    const got = actual[k];
    const want = expected[k];
    const ok = k.startsWith('l2_norm/')
      ? Math.abs(got - want) <= rtol * Math.abs(want) + 1e-300
      : Math.abs(got - want) <= atol;
    if (!ok || typeof got !== 'number' || Number.isNaN(got)) {
      throw new Error(
        `${what}: ${k} is ${got}, expected ${want} (${k.startsWith('l2_norm/') ? `rtol ${rtol}` : `atol ${atol}`})`,
      );
    }
  }
}

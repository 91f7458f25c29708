// opt.metrics() of Lion, AdamW and AdamWDL (docs/design.md section 7, docs/api.md Metrics):
// against a float64 reference of the documented rules (test/support/metrics_reference.ts),
// which params appear, the key names, that computing metrics changes nothing, determinism
// (two calls, 1 vs 2 threads), and preReduceMetrics/reduceMetrics recombining the metrics
// of a tensor split in two.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  AdamW,
  AdamWDL,
  type DType,
  Lion,
  type MetricsDict,
  Parameter,
  Tensor,
  preReduceMetrics,
  reduceMetrics,
} from '../src/index';
import { adamwNext, expectMetricsClose, lionNext, referenceMetrics } from './support/metrics_reference';
import { runNode } from './support/node_child';
import {
  type AnyOptimizer,
  KINDS,
  type Kind,
  PRESENT,
  type SavedState,
  type Setup,
  expectedMetrics,
  makeSetup,
  stateBits,
  tensorBits,
  warmUp,
} from './support/optimizer_setups';
import { randn, rng } from './support/random';

const METRICS = [
  'l2_norm/moment',
  'l2_norm/param',
  'l2_norm/update',
  'l2_norm/grad',
  'cosine/update_grad',
  'cosine/moment_grad',
];

function readySetup(kind: Kind, seed = 1): Setup {
  const setup = makeSetup(kind, { seed });
  warmUp(setup);
  setup.metricGrads();
  return setup;
}

function snapshotAll(setup: Setup): unknown {
  return {
    params: setup.params.map((p) => tensorBits(p.data)),
    grads: setup.params.map((p) => (p.grad ? tensorBits(p.grad) : null)),
    groups: setup.opt.paramGroups.map(({ params, ...rest }) => ({ ...rest, params: params.map((p) => p.name) })),
    state: stateBits(setup.opt),
  };
}

// ---------------------------------------------------------------------------------------

describe.each(KINDS)('%s.metrics()', (kind) => {
  it('matches the float64 reference (norms rtol 1e-6, cosines atol 1e-6), after warm-up steps and with fresh grads', () => {
    const setup = readySetup(kind);
    const m = setup.opt.metrics();
    expectMetricsClose(m, expectedMetrics(setup, 'float64'), `${kind} vs float64`, { rtol: 1e-6, atol: 1e-6 });
  });

  it('matches the rule rounded to float32 as the kernels round it, up to the order of the float64 sums', () => {
    const setup = readySetup(kind);
    const m = setup.opt.metrics();
    expectMetricsClose(m, expectedMetrics(setup, 'float32'), `${kind} vs float32-rounded rule`, {
      rtol: 1e-12,
      atol: 1e-12,
    });
  });

  it('reports exactly the params with a grad and state, keyed `${metric}/${p.name}`', () => {
    const setup = readySetup(kind);
    const keys = Object.keys(setup.opt.metrics()).sort();
    expect(keys).toEqual(PRESENT.flatMap((name) => METRICS.map((metric) => `${metric}/${name}`)).sort());
    // The absent ones, named: state but no grad now, and a grad but no state yet.
    expect(keys.some((k) => k.endsWith('/encoder.layers.1.no_grad_now.weight'))).toBe(false);
    expect(keys.some((k) => k.endsWith('/head.no_state.weight'))).toBe(false);
    // An all-zero grad: norms 0 and cosines 0 (the 1e-16 floor), not NaN.
    const m = setup.opt.metrics();
    expect(m['l2_norm/grad/encoder.layers.2.zero_grad.weight']).toBe(0);
    expect(m['cosine/update_grad/encoder.layers.2.zero_grad.weight']).toBe(0);
    expect(m['cosine/moment_grad/encoder.layers.2.zero_grad.weight']).toBe(0);
    expect(Object.values(m).every((v) => Number.isFinite(v))).toBe(true);
  });

  it('before any step there is no state, so the dict is empty', () => {
    const setup = makeSetup(kind);
    setup.metricGrads();
    expect(setup.opt.metrics()).toEqual({});
  });

  it('changes nothing: params, grads, groups and state bits are identical, and the next step equals a twin that never computed metrics', () => {
    const a = readySetup(kind, 5);
    const twin = readySetup(kind, 5);
    const before = snapshotAll(a);
    a.opt.metrics();
    a.opt.metrics();
    expect(snapshotAll(a)).toEqual(before);
    expect(snapshotAll(twin)).toEqual(before);
    for (const s of [a, twin]) {
      s.stepGrads(7);
      s.opt.step();
    }
    expect(snapshotAll(a)).toEqual(snapshotAll(twin));
  });

  it('is deterministic: two calls give the same numbers to the bit', () => {
    const setup = readySetup(kind);
    const first = setup.opt.metrics();
    const second = setup.opt.metrics();
    expect(Object.keys(second)).toEqual(Object.keys(first));
    for (const k of Object.keys(first)) expect(Object.is(second[k], first[k]), k).toBe(true);
  });

  it('is rejected while a stepAsync() is running, and works once it is done', async () => {
    const setup = readySetup(kind);
    setup.stepGrads(3);
    const pending = setup.opt.stepAsync();
    expect(() => setup.opt.metrics()).toThrow(/stepAsync/);
    await pending;
    setup.metricGrads();
    expectMetricsClose(setup.opt.metrics(), expectedMetrics(setup, 'float64'), `${kind} after stepAsync`);
  });
});

describe('metrics: what the next step would do', () => {
  it('AdamW metrics use the step count the next step will have (bias corrections of step + 1)', () => {
    // One step done; the metrics' update must be that of step 2, which a step then performs.
    const p = new Parameter(Tensor.from(randn(11, rng(3), 0.02), { device: 'cpu' }), { name: 'w' });
    const opt = new AdamW([p], { lr: 0.05, weightDecay: 0 });
    p.grad = Tensor.from(randn(11, rng(4), 0.1), { device: 'cpu' });
    opt.step();
    p.grad = Tensor.from(randn(11, rng(5), 0.1), { device: 'cpu' });
    const before = p.data.toFloat32Array();
    const m = opt.metrics();
    opt.step();
    const after = p.data.toFloat32Array();
    let uu = 0;
    for (let i = 0; i < 11; i++) uu += Math.fround(before[i] - after[i]) ** 2;
    expect(m['l2_norm/update/w']).toBe(Math.sqrt(uu));
  });

  it('Lion: l2_norm/update equals the norm of what step() subtracts next, bit for bit (float32 param)', () => {
    const p = new Parameter(Tensor.from(randn(1001, rng(6), 0.02), { device: 'cpu' }), { name: 'w' });
    const opt = new Lion([p], { lr: 0.01, weightDecay: 5e-4 });
    p.grad = Tensor.from(randn(1001, rng(7), 0.1), { device: 'cpu' });
    opt.step();
    opt.paramGroups[0].lr = 0.004;
    p.grad = Tensor.from(randn(1001, rng(8), 0.1), { device: 'cpu' });
    const before = p.data.toFloat32Array();
    const m = opt.metrics();
    opt.step();
    const after = p.data.toFloat32Array();
    let uu = 0;
    let ug = 0;
    let gg = 0;
    const g = p.grad.toFloat32Array();
    for (let i = 0; i < 1001; i++) {
      const u = Math.fround(before[i] - after[i]);
      uu += u * u;
      ug += u * g[i];
      gg += g[i] * g[i];
    }
    expect(m['l2_norm/update/w']).toBeCloseTo(Math.sqrt(uu), 14);
    expect(m['cosine/update_grad/w']).toBeCloseTo(ug / Math.sqrt(uu * gg), 12);
  });

  it('a half param written by the user after its last step: metrics read the new value, as the next step will', () => {
    // step() re-syncs the fp32 master from p.data when the param was written since; the
    // metrics must describe the same state the next step starts from.
    for (const make of [
      (ps: Parameter[]) => new Lion(ps, { lr: 0.01 }) as unknown as AnyOptimizer,
      (ps: Parameter[]) => new AdamW(ps, { lr: 0.01 }) as unknown as AnyOptimizer,
    ]) {
      const p = new Parameter(Tensor.from(randn(21, rng(9), 0.02), { dtype: 'float16', device: 'cpu' }), { name: 'h' });
      const twin = new Parameter(Tensor.from(randn(21, rng(9), 0.02), { dtype: 'float16', device: 'cpu' }), {
        name: 'h',
      });
      const opt = make([p]);
      const twinOpt = make([twin]);
      for (let s = 0; s < 2; s++) {
        for (const q of [p, twin]) q.grad = Tensor.from(randn(21, rng(10 + s), 0.1), { device: 'cpu' });
        opt.step();
        twinOpt.step();
      }
      const written = Float32Array.from({ length: 21 }, (_, i) => 0.5 + i / 64); // exact in fp16
      p.data.copyFrom(written);
      twin.data.copyFrom(written);
      for (const q of [p, twin]) q.grad = Tensor.from(randn(21, rng(20), 0.1), { device: 'cpu' });
      const m = opt.metrics();
      let pp = 0;
      for (const x of written) pp += x * x;
      expect(m['l2_norm/param/h'], `${opt.constructor.name}: l2_norm/param reads the written value`).toBeCloseTo(
        Math.sqrt(pp),
        12,
      );
      // And the update it reports is the one the next step makes from the written value.
      const before = twin.data.toFloat32Array();
      twinOpt.step();
      const master = (twinOpt.stateDict().state as Record<number, SavedState>)[0].master!;
      let uu = 0;
      for (let i = 0; i < 21; i++) uu += Math.fround(before[i] - master[i]) ** 2;
      expect(m['l2_norm/update/h'], `${opt.constructor.name}: l2_norm/update`).toBeCloseTo(Math.sqrt(uu), 12);
    }
  });

  it('Lion without master weights: the param is the half value itself', () => {
    const p = new Parameter(Tensor.from(randn(77, rng(11), 0.5), { dtype: 'bfloat16', device: 'cpu' }), { name: 'b' });
    const opt = new Lion([p], { lr: 0.01, masterWeights: false });
    p.grad = Tensor.from(randn(77, rng(12), 0.1), { dtype: 'bfloat16', device: 'cpu' });
    opt.step();
    const sd = opt.stateDict() as { state: Record<number, SavedState> };
    expect(sd.state[0].master).toBeUndefined();
    p.grad = Tensor.from(randn(77, rng(13), 0.1), { device: 'cpu' });
    const param = p.data.toFloat32Array();
    const grad = p.grad.toFloat32Array();
    const next = lionNext(param, grad, sd.state[0].exp_avg, {
      lr: 0.01,
      betas: [0.9, 0.99],
      weightDecay: 0,
      initialLr: 0.01,
    });
    expectMetricsClose(
      opt.metrics(),
      referenceMetrics('b', { param, grad, moment: sd.state[0].exp_avg, next }),
      'bf16 without master',
    );
  });

  it('AdamW: switching amsgrad on after some steps: metrics() still leaves the state dict as it was', () => {
    const p = new Parameter(Tensor.from(randn(19, rng(14), 0.02), { device: 'cpu' }), { name: 'w' });
    const opt = new AdamW([p], { lr: 0.01 });
    p.grad = Tensor.from(randn(19, rng(15), 0.1), { device: 'cpu' });
    opt.step();
    opt.paramGroups[0].amsgrad = true;
    const before = stateBits(opt as unknown as AnyOptimizer);
    const m = opt.metrics();
    expect(stateBits(opt as unknown as AnyOptimizer)).toEqual(before);
    // The update it reports is the one an amsgrad step from a zero max_exp_avg_sq makes.
    const s = (opt.stateDict().state as Record<number, SavedState>)[0];
    const param = p.data.toFloat32Array();
    const grad = p.grad.toFloat32Array();
    const next = adamwNext(param, grad, { m: s.exp_avg, v: s.exp_avg_sq!, vmax: new Float32Array(19) }, 2, {
      lr: 0.01,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weightDecay: 0.01,
      amsgrad: true,
    });
    expectMetricsClose(m, referenceMetrics('w', { param, grad, moment: s.exp_avg, next }), 'amsgrad switched on');
  });
});

// ---------------------------------------------------------------------------------------

describe('metrics determinism across thread counts (child processes, dist/cjs)', () => {
  const dist = JSON.stringify(join(__dirname, '..', 'dist', 'cjs', 'index.js'));
  // Several chunks per tensor (300007 > 4 * 65536) plus small tensors sharing work items.
  const script = (kind: Kind) => `
    const f = require(${dist});
    function rng(seed) { let a = seed >>> 0; return () => { a = (a + 0x6d2b79f5) >>> 0; let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }; }
    const next = rng(42);
    const vals = (n, s) => Float32Array.from({ length: n }, () => (next() - 0.5) * s);
    const sizes = [300007, 5, 1000, 65537];
    const dtypes = ['float32', 'bfloat16', 'float16', 'float32'];
    const params = sizes.map((n, i) => new f.Parameter(f.Tensor.from(vals(n, 0.04), { dtype: dtypes[i] }), { name: 'encoder.layers.' + i + '.w' }));
    const opt = ${kind === 'Lion' ? 'new f.Lion(params, { lr: 0.01, weightDecay: 5e-4 })' : kind === 'AdamW' ? 'new f.AdamW(params, { lr: 0.01 })' : 'new f.AdamWDL(params, { lr: 0.01, layerwiseDecay: 0.7, nLayers: 4 })'};
    for (let s = 0; s < 3; s++) { params.forEach((p, i) => (p.grad = f.Tensor.from(vals(sizes[i], 0.2)))); opt.step(); }
    params.forEach((p, i) => (p.grad = f.Tensor.from(vals(sizes[i], 0.2))));
    const m = opt.metrics();
    const bits = {};
    for (const [k, v] of Object.entries(m)) bits[k] = Buffer.from(new Float64Array([v]).buffer).toString('hex');
    console.log(JSON.stringify({ threads: f.backendInfo().threads, bits }));`;

  for (const kind of KINDS) {
    it(`${kind}: FUSED_OPTIM_THREADS=1 and =2 give the same bits`, () => {
      const runs = ['1', '2'].map((threads) => {
        const r = runNode(script(kind), { env: { FUSED_OPTIM_THREADS: threads, FUSED_OPTIM_DEVICE: 'cpu' } });
        expect(r.status, r.stderr).toBe(0);
        const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { threads: number; bits: Record<string, string> };
        expect(out.threads, 'the pool size the child reports').toBe(Number(threads));
        return out;
      });
      expect(Object.keys(runs[0].bits)).toHaveLength(24);
      expect(runs[1].bits).toEqual(runs[0].bits);
    });
  }
});

// ---------------------------------------------------------------------------------------

describe('preReduceMetrics / reduceMetrics', () => {
  interface Whole {
    n: number;
    param: Float32Array;
    grad: Float32Array;
    state: Record<string, Float32Array | number>;
  }

  const NAME = 'encoder.layers.2.attention.weight';

  function build(kind: Kind, dtype: DType, part: Whole, groupLr: number): AnyOptimizer {
    const data = Tensor.from(part.param, { dtype, device: 'cpu' });
    const p = new Parameter(data, { name: NAME });
    const opt = (kind === 'Lion'
      ? new Lion([p], { lr: 0.01, weightDecay: 5e-4, betas: [0.9, 0.95] })
      : kind === 'AdamW'
        ? new AdamW([p], { lr: 0.01, weightDecay: 0.1, amsgrad: true })
        : new AdamWDL([p], { lr: 0.01, weightDecay: 0.1, layerwiseDecay: 0.7, nLayers: 4 })) as unknown as AnyOptimizer;
    opt.loadStateDict({ state: { 0: part.state }, param_groups: [{ ...opt.stateDict().param_groups[0] }] });
    opt.paramGroups[0].lr = groupLr; // Lion: lr / initial_lr = 0.5 scales the decay
    p.grad = Tensor.from(part.grad, { dtype: 'float32', device: 'cpu' });
    return opt;
  }

  function wholeOf(kind: Kind, dtype: DType, n: number, seed: number): Whole {
    const next = rng(seed);
    const round = (v: Float32Array) =>
      dtype === 'float32' ? v : Tensor.from(v, { dtype, device: 'cpu' }).toFloat32Array();
    const param = round(randn(n, next, 0.02));
    const grad = randn(n, next, 0.1);
    const m = randn(n, next, 0.05);
    const state: Record<string, Float32Array | number> = { exp_avg: m };
    if (kind !== 'Lion') {
      state.step = 3;
      state.exp_avg_sq = Float32Array.from(randn(n, next, 0.01), (x) => x * x);
      state.max_exp_avg_sq = Float32Array.from(state.exp_avg_sq as Float32Array, (x, i) => x * (1 + (i % 3)));
    }
    if (dtype !== 'float32') state.master = Float32Array.from(param, (x, i) => x + (i % 5) * 1e-6); // a master near the half value
    return { n, param, grad, state };
  }

  function slice(w: Whole, begin: number, end: number): Whole {
    const state = Object.fromEntries(
      Object.entries(w.state).map(([k, v]) => [k, typeof v === 'number' ? v : v.slice(begin, end)]),
    );
    return { n: end - begin, param: w.param.slice(begin, end), grad: w.grad.slice(begin, end), state };
  }

  for (const kind of KINDS) {
    for (const [dtype, n, cut] of [
      ['float32', 1001, 500],
      ['bfloat16', 70001, 65536],
      ['float16', 9, 1],
    ] as Array<[DType, number, number]>) {
      it(`${kind}, ${dtype}: reduceMetrics([pre(first ${cut}), pre(last ${n - cut})]) equals the metrics of all ${n} elements`, () => {
        const whole = wholeOf(kind, dtype, n, 31);
        const full = build(kind, dtype, whole, 0.005).metrics();
        const a = build(kind, dtype, slice(whole, 0, cut), 0.005).metrics();
        const b = build(kind, dtype, slice(whole, cut, n), 0.005).metrics();
        expect(Object.keys(full)).toHaveLength(6);
        const reduced = reduceMetrics([preReduceMetrics(a), preReduceMetrics(b)]);
        expectMetricsClose(reduced, full, `${kind} ${dtype} split at ${cut}`, { rtol: 1e-12, atol: 1e-12 });
        // And the halves really differ from the whole (the test is not vacuous).
        expect(Math.abs(a[`l2_norm/update/${NAME}`] - full[`l2_norm/update/${NAME}`])).toBeGreaterThan(0);
      });
    }
  }

  it('the values themselves: norms squared, cosines times the norms of their two vectors', () => {
    const m: MetricsDict = {
      'l2_norm/moment/a/b.w': 2,
      'l2_norm/param/a/b.w': 3,
      'l2_norm/update/a/b.w': 0.5,
      'l2_norm/grad/a/b.w': 4,
      'cosine/update_grad/a/b.w': 0.25,
      'cosine/moment_grad/a/b.w': -0.5,
    };
    expect(preReduceMetrics(m)).toEqual({
      'l2_norm/moment/a/b.w': 4,
      'l2_norm/param/a/b.w': 9,
      'l2_norm/update/a/b.w': 0.25,
      'l2_norm/grad/a/b.w': 16,
      'cosine/update_grad/a/b.w': 0.25 * 0.5 * 4,
      'cosine/moment_grad/a/b.w': -0.5 * 2 * 4,
    });
    // One worker: reduce(pre(m)) gives m back.
    expectMetricsClose(reduceMetrics([preReduceMetrics(m)]), m, 'round trip', { rtol: 1e-15, atol: 1e-15 });
    // Does not modify its input.
    expect(m['l2_norm/grad/a/b.w']).toBe(4);
  });

  it('several params and workers: each name is reduced on its own; a param missing on one worker is fine', () => {
    const x = { 'l2_norm/grad/x': 3, 'l2_norm/update/x': 4, 'cosine/update_grad/x': 0.5 };
    const y = { 'l2_norm/grad/y': 1, 'l2_norm/update/y': 1, 'cosine/update_grad/y': 1 };
    const x2 = { 'l2_norm/grad/x': 4, 'l2_norm/update/x': 3, 'cosine/update_grad/x': -0.5 };
    const r = reduceMetrics([preReduceMetrics({ ...x, ...y }), preReduceMetrics(x2)]);
    expect(r['l2_norm/grad/x']).toBeCloseTo(5, 14);
    expect(r['l2_norm/update/x']).toBeCloseTo(5, 14);
    expect(r['cosine/update_grad/x']).toBeCloseTo((0.5 * 12 - 0.5 * 12) / 25, 14);
    expect(r['l2_norm/grad/y']).toBeCloseTo(1, 14);
    expect(r['cosine/update_grad/y']).toBeCloseTo(1, 14);
    expect(reduceMetrics([])).toEqual({});
  });

  describe('malformed metric keys are rejected with a RangeError naming the key', () => {
    const bad: Array<[string, MetricsDict]> = [
      ['no slash at all', { loss: 1 }],
      ['no param name', { 'l2_norm/grad': 1 }],
      ['an unknown family', { 'norm/grad/w': 1 }],
      ['a cosine without an a_b pair', { 'l2_norm/grad/w': 1, 'cosine/grad/w': 0.5 }],
      ['a cosine whose norms are missing', { 'cosine/update_grad/w': 0.5 }],
    ];
    for (const [label, dict] of bad) {
      it(`preReduceMetrics: ${label}`, () => {
        expect(() => preReduceMetrics(dict)).toThrow(RangeError);
      });
    }
    for (const [label, dict] of bad.slice(0, 3)) {
      it(`reduceMetrics: ${label}`, () => {
        expect(() => reduceMetrics([dict])).toThrow(RangeError);
        expect(() => reduceMetrics([dict])).toThrow(new RegExp(Object.keys(dict)[0].replace(/[/]/g, '\\/')));
      });
    }
    it('reduceMetrics: a pre-reduced cosine without the two squared norms is rejected, not divided by the 1e-8 floor', () => {
      // A cosine sum without its norms cannot be turned back into a cosine; returning
      // dot / 1e-8 would be a silently wrong number.
      expect(() => reduceMetrics([{ 'cosine/update_grad/w': 0.5 }])).toThrow(RangeError);
    });
  });
});

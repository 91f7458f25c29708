// The CUDA backend against the CPU backend for Lion and AdamWDL, element for element (both
// run native/common/{lion_rule,adamw_rule}.h without FMA contraction, so the bits must
// agree), and CUDA metrics: equal to the CPU's bit for bit (both add in one order), close to
// the float64 reference, and the same bits on every call.
import { describe, expect, it } from 'vitest';
import { AdamWDL, type DType, Lion, Parameter, Tensor, preReduceMetrics, reduceMetrics } from '../src/index';
import { native } from '../src/native';
import { bitsOf, expectSameBits } from './support/compare';
import { expectMetricsClose } from './support/metrics_reference';
import { type AnyOptimizer, KINDS, expectedMetrics, makeSetup, stateBits, warmUp } from './support/optimizer_setups';
import { randn, rng } from './support/random';

const probe = native().nativeInfo();
const reason = probe.cudaUsable ? '' : ` (skipped: ${probe.cudaError})`;
// Say why in the run's output, not only in the test names.
if (!probe.cudaUsable)
  console.warn(`CUDA-vs-CPU tests for Lion and AdamWDL skipped: no usable GPU: ${probe.cudaError}`);

const COMBOS: Array<[DType, DType]> = [
  ['float32', 'float32'],
  ['float16', 'float16'],
  ['float16', 'float32'],
  ['bfloat16', 'bfloat16'],
  ['bfloat16', 'float32'],
];
// Odd and unaligned sizes, a chunk plus one, several chunks.
const SIZES = [1, 3, 1000, 4099, 65537, 300007];
// AdamWDL reads layers from names: one param per layer, an embedding, a bias without decay.
const DL_NAMES = [
  'embeddings.word.weight',
  'encoder.layers.0.q.bias',
  'encoder.layers.1.q.weight',
  'encoder.layers.2.ffn.weight',
  'encoder.layers.3.ffn.bias',
  'pooler.weight',
];

type Build = (params: Parameter[]) => AnyOptimizer;

const buildLion: Build = (params) =>
  new Lion([
    { params: params.slice(0, 3), lr: 1e-2, weightDecay: 5e-4 },
    { params: params.slice(3), lr: 3e-3, betas: [0.95, 0.98], weightDecay: 2e-4 },
  ]) as unknown as AnyOptimizer;

const buildDL: Build = (params) =>
  new AdamWDL(
    [
      { params: params.slice(0, 3), lr: 1e-2, weightDecay: 0.1, amsgrad: true },
      { params: params.slice(3), lr: 3e-3, weightDecay: 0.01, maximize: true },
    ],
    { betas: [0.9, 0.99], layerwiseDecay: 0.7, nLayers: 3, applyDecayParamFun: (n) => !n.endsWith('.bias') },
  ) as unknown as AnyOptimizer;

interface Run {
  params: Parameter[];
  opt: AnyOptimizer;
}

/** Five steps with the same grads on both devices (one param skipped once, an lr change). */
function runBoth(build: Build, dtype: DType, gradDtype: DType): { cpu: Run; gpu: Run } {
  const next = rng(7);
  const inits = SIZES.map((n) => randn(n, next, 0.5));
  const make = (device: 'cpu' | 'cuda'): Run => {
    const params = inits.map((v, i) => new Parameter(Tensor.from(v, { dtype, device }), { name: DL_NAMES[i] }));
    return { params, opt: build(params) };
  };
  const cpu = make('cpu');
  const gpu = make('cuda');
  for (let s = 0; s < 5; s++) {
    if (s === 3) for (const o of [cpu.opt, gpu.opt]) o.paramGroups[1].lr = 1e-3; // Lion: lr / initial_lr = 1/3
    inits.forEach((v, i) => {
      const g = i === 2 && s === 1 ? null : randn(v.length, next, 0.05);
      cpu.params[i].grad = g ? Tensor.from(g, { dtype: gradDtype, device: 'cpu' }) : null;
      gpu.params[i].grad = g ? Tensor.from(g, { dtype: gradDtype, device: 'cuda' }) : null;
    });
    cpu.opt.step();
    gpu.opt.step();
  }
  gpu.opt.synchronize();
  return { cpu, gpu };
}

function expectSameState(cpu: Run, gpu: Run, dtype: DType, where: string): void {
  type S = Record<string, Float32Array | number | undefined>;
  const a = cpu.opt.stateDict() as { state: Record<number, S> };
  const b = gpu.opt.stateDict() as { state: Record<number, S> };
  expect(Object.keys(b.state), `${where}: params with state`).toEqual(Object.keys(a.state));
  SIZES.forEach((n, i) => {
    const at = `${where} param ${i} (${n})`;
    if (dtype === 'float32') {
      expectSameBits(
        bitsOf(gpu.params[i].data.toFloat32Array()),
        bitsOf(cpu.params[i].data.toFloat32Array()),
        `${at} param`,
      );
    } else {
      expectSameBits(gpu.params[i].data.toBits(), cpu.params[i].data.toBits(), `${at} param bits`);
    }
    expect(Object.keys(b.state[i]).sort(), `${at} state keys`).toEqual(Object.keys(a.state[i]).sort());
    for (const [key, value] of Object.entries(a.state[i])) {
      if (value instanceof Float32Array)
        expectSameBits(bitsOf(b.state[i][key] as Float32Array), bitsOf(value), `${at} ${key}`);
      else expect(b.state[i][key], `${at} ${key}`).toBe(value);
    }
  });
}

describe.skipIf(!probe.cudaUsable)(`Lion and AdamWDL: CUDA equals the CPU bit for bit${reason}`, () => {
  for (const [name, build] of [
    ['Lion', buildLion],
    ['AdamWDL', buildDL],
  ] as Array<[string, Build]>) {
    for (const [dtype, gradDtype] of COMBOS) {
      it(`${name}: ${dtype} params, ${gradDtype} grads`, () => {
        const { cpu, gpu } = runBoth(build, dtype, gradDtype);
        expectSameState(cpu, gpu, dtype, `${name} ${dtype}/${gradDtype}`);
      });
    }
  }

  it('AdamWDL on CUDA: ratio 0 multiplies by exactly float32(1 - lr * wd), and no decay leaves the param unchanged', () => {
    const make = (name: string, seed: number) =>
      new Parameter(Tensor.from(randn(70001, rng(seed), 0.5), { device: 'cuda' }), { name });
    const [decayed, kept] = [make('a.decayed', 1), make('a.kept', 2)];
    const opt = new AdamWDL([decayed, kept], {
      lr: 0.01,
      weightDecay: 0.1,
      setParamLrFun: () => 0,
      applyDecayParamFun: (n) => n.endsWith('decayed'),
    });
    const before = [decayed.data.toFloat32Array(), kept.data.toFloat32Array()];
    decayed.grad = Tensor.from(randn(70001, rng(3), 0.1), { device: 'cuda' });
    kept.grad = Tensor.from(randn(70001, rng(4), 0.1), { device: 'cuda' });
    opt.step();
    opt.synchronize();
    const factor = Math.fround(1 - 0.01 * 0.1);
    expectSameBits(
      bitsOf(decayed.data.toFloat32Array()),
      bitsOf(Float32Array.from(before[0], (x) => Math.fround(x * factor))),
      'decayed',
    );
    expectSameBits(bitsOf(kept.data.toFloat32Array()), bitsOf(before[1]), 'kept');
  });

  it('Lion on CUDA: sign(0) = 0 (a zero grad on a zero moment leaves the params unchanged)', () => {
    for (const dtype of ['float32', 'float16', 'bfloat16'] as DType[]) {
      const p = new Parameter(Tensor.from(randn(65537 + 5, rng(5), 0.5), { dtype, device: 'cuda' }), { name: 'w' });
      const opt = new Lion([p], { lr: 0.1 });
      const before = dtype === 'float32' ? Array.from(bitsOf(p.data.toFloat32Array())) : Array.from(p.data.toBits());
      p.grad = Tensor.zeros([65537 + 5], { dtype, device: 'cuda' });
      opt.step();
      opt.synchronize();
      const after = dtype === 'float32' ? Array.from(bitsOf(p.data.toFloat32Array())) : Array.from(p.data.toBits());
      expect(after, dtype).toEqual(before);
    }
  });

  it('Lion stepAsync on CUDA resolves after the kernels finished, with the same bits as step()', async () => {
    const init = randn(100003, rng(3), 0.5);
    const grad = randn(100003, rng(4), 0.1);
    const ps = [0, 1].map(() => new Parameter(Tensor.from(init, { dtype: 'bfloat16', device: 'cuda' }), { name: 'w' }));
    const opts = ps.map((p) => new Lion([p], { lr: 1e-3 }));
    ps.forEach((p) => (p.grad = Tensor.from(grad, { device: 'cuda' })));
    await opts[0].stepAsync();
    opts[1].step();
    opts[1].synchronize();
    expectSameBits(ps[0].data.toBits(), ps[1].data.toBits(), 'stepAsync vs step');
    const initBits = Tensor.from(init, { dtype: 'bfloat16', device: 'cpu' }).toBits();
    expect(
      ps[0].data.toBits().some((b, i) => b !== initBits[i]),
      'the step moved the params',
    ).toBe(true);
  });
});

describe.skipIf(!probe.cudaUsable)(`metrics on CUDA${reason}`, () => {
  for (const kind of KINDS) {
    it(`${kind}: the state after warm-up equals the CPU's, and the metrics equal the CPU's bit for bit (one summation order)`, () => {
      const cpu = makeSetup(kind, { device: 'cpu' });
      const gpu = makeSetup(kind, { device: 'cuda' });
      warmUp(cpu);
      warmUp(gpu);
      expect(stateBits(gpu.opt)).toEqual(stateBits(cpu.opt));
      cpu.metricGrads();
      gpu.metricGrads();
      const a = cpu.opt.metrics();
      const b = gpu.opt.metrics();
      // Both backends add in the CUDA block's order: NOTE(deterministic reductions) in
      // native/common/block_reduce.h.
      expect(b, `${kind}: CUDA vs CPU metrics`).toEqual(a);
      expectMetricsClose(b, expectedMetrics(gpu, 'float64'), `${kind}: CUDA vs float64 reference`, {
        rtol: 1e-6,
        atol: 1e-6,
      });
    });

    it(`${kind}: CUDA metrics are deterministic (two calls, the same bits) and change nothing`, () => {
      const gpu = makeSetup(kind, { device: 'cuda' });
      warmUp(gpu);
      gpu.metricGrads();
      const before = stateBits(gpu.opt);
      const first = gpu.opt.metrics();
      const second = gpu.opt.metrics();
      expect(Object.keys(second)).toEqual(Object.keys(first));
      for (const k of Object.keys(first)) expect(Object.is(second[k], first[k]), k).toBe(true);
      expect(stateBits(gpu.opt)).toEqual(before);
    });
  }

  it('metrics of a CUDA tensor split in two, pre-reduced and reduced, equal those of the whole (Lion)', () => {
    const n = 300007;
    const cut = 131072 + 17;
    const next = rng(77);
    const [p, g, m] = [randn(n, next, 0.02), randn(n, next, 0.1), randn(n, next, 0.05)];
    const metricsOf = (b: number, e: number) => {
      const w = new Parameter(Tensor.from(p.slice(b, e), { device: 'cuda' }), { name: 'encoder.layers.1.w' });
      const opt = new Lion([w], { lr: 0.01, weightDecay: 5e-4 });
      opt.loadStateDict({ state: { 0: { exp_avg: m.slice(b, e) } }, param_groups: opt.stateDict().param_groups });
      w.grad = Tensor.from(g.slice(b, e), { device: 'cuda' });
      return opt.metrics();
    };
    const whole = metricsOf(0, n);
    expect(Object.keys(whole)).toHaveLength(6);
    const reduced = reduceMetrics([preReduceMetrics(metricsOf(0, cut)), preReduceMetrics(metricsOf(cut, n))]);
    expectMetricsClose(reduced, whole, 'split on CUDA', { rtol: 1e-10, atol: 1e-10 });
  });
});

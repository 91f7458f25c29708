// Mixed-precision utilities beyond the torch fixtures: a skipped step changes nothing (bit
// for bit, every optimizer and dtype, step and stepAsync), stochastic rounding is unbiased
// and resumable, clipping inside step() is deterministic, and bad input is rejected.
import { describe, expect, it } from 'vitest';
import {
  AdamW,
  AdamWDL,
  type DType,
  GradScaler,
  Lion,
  Parameter,
  Tensor,
  clipGradNorm,
  clipGradValue,
} from '../src/index';
import type { FusedOptimizer } from '../src/fused_optimizer';
import type { ParamGroup } from '../src/optimizer';
import { bitsOf } from './support/compare';
import { randn, rng } from './support/random';

type AnyOptimizer = FusedOptimizer<ParamGroup, object, object>;
const SIZES = [1, 3, 1000, 70001];

function setup(kind: 'adamw' | 'adamwdl' | 'lion', dtype: DType, seed = 1) {
  const next = rng(seed);
  const params = SIZES.map(
    (n, i) => new Parameter(Tensor.from(randn(n, next), { dtype, device: 'cpu' }), { name: `encoder.layers.${i}.w` }),
  );
  const opt = (kind === 'adamw'
    ? new AdamW(params, { lr: 1e-2 })
    : kind === 'adamwdl'
      ? new AdamWDL(params, { lr: 1e-2, layerwiseDecay: 0.7, nLayers: 4 })
      : new Lion(params, { lr: 1e-3, weightDecay: 1e-4 })) as unknown as AnyOptimizer;
  const setGrads = (scale: number, poison?: number) =>
    params.forEach((p, i) => {
      const g = randn(p.data.numel, next, scale);
      if (poison !== undefined && i === 2) g[17] = poison;
      p.grad = Tensor.from(g, { device: 'cpu' });
    });
  return { params, opt, setGrads };
}

function snapshot(params: Parameter[], opt: AnyOptimizer): string {
  const parts = params.map((p) =>
    Buffer.from(p.data.dtype === 'float32' ? bitsOf(p.data.toFloat32Array()).buffer : p.data.toBits().buffer).toString(
      'base64',
    ),
  );
  const sd = opt.stateDict() as { state: Record<number, Record<string, Float32Array | number>> };
  for (const [i, s] of Object.entries(sd.state)) {
    for (const [k, v] of Object.entries(s))
      parts.push(`${i}.${k}=${typeof v === 'number' ? v : Buffer.from(v.buffer).toString('base64')}`);
  }
  return parts.join('|');
}

describe('a step with an inf/NaN grad changes nothing', () => {
  for (const kind of ['adamw', 'adamwdl', 'lion'] as const) {
    for (const dtype of ['float32', 'bfloat16', 'float16'] as DType[]) {
      for (const poison of [Infinity, -Infinity, NaN]) {
        it(`${kind} ${dtype} (${poison})`, async () => {
          const { params, opt, setGrads } = setup(kind, dtype);
          const scaler = new GradScaler({ initScale: 1024 });
          for (let s = 0; s < 3; s++) {
            setGrads(1024);
            expect(scaler.step(opt).skipped).toBe(false);
            scaler.update();
          }
          const before = snapshot(params, opt);
          setGrads(1024, poison);
          expect(scaler.step(opt).skipped).toBe(true);
          expect(snapshot(params, opt)).toBe(before);
          scaler.update();
          expect(scaler.getScale()).toBe(512);
          setGrads(512, poison);
          expect((await scaler.stepAsync(opt)).skipped).toBe(true);
          expect(snapshot(params, opt)).toBe(before);
        });
      }
    }
  }

  it('a clean step after skipped ones equals a run that never saw them', () => {
    const a = setup('adamw', 'bfloat16', 5);
    const b = setup('adamw', 'bfloat16', 5);
    const scaler = new GradScaler({ initScale: 256 });
    const grads = SIZES.map((n) => randn(n, rng(9), 256));
    const feed = (params: Parameter[]) => params.forEach((p, i) => (p.grad = Tensor.from(grads[i], { device: 'cpu' })));
    a.setGrads(256, NaN);
    expect(scaler.step(a.opt).skipped).toBe(true);
    scaler.update(); // 128
    scaler.update(256); // back to the scale b uses
    feed(a.params);
    expect(scaler.step(a.opt).skipped).toBe(false);
    const s2 = new GradScaler({ initScale: 256 });
    feed(b.params);
    s2.step(b.opt);
    expect(snapshot(a.params, a.opt)).toBe(snapshot(b.params, b.opt));
  });
});

describe('stochastic rounding', () => {
  it('is unbiased: the mean of many rounded bfloat16 params is the fp32 value', () => {
    // One step of Lion moves every element of a constant param by exactly lr; bf16 cannot
    // represent the result, so round-to-nearest always lands on the same neighbour.
    const n = 200_000;
    const x = 1 + 2 ** -9; // between the bf16 neighbours 1 and 1 + 2^-7 (a quarter of the way)
    const run = (stochasticRounding: boolean) => {
      const p = new Parameter(Tensor.from(new Float32Array(n).fill(1 + 2 ** -8), { dtype: 'float32', device: 'cpu' }), {
        name: 'w',
      });
      const half = new Parameter(Tensor.zeros([n], { dtype: 'bfloat16', device: 'cpu' }), { name: 'h' });
      const opt = new Lion([half], { lr: 2 ** -8 - 2 ** -9, masterWeights: true, stochasticRounding, seed: 42 });
      // Load a master of 1 + 2^-8 so the step lands on x exactly.
      opt.loadStateDict({
        state: { 0: { exp_avg: new Float32Array(n), master: p.data.toFloat32Array() } },
        param_groups: opt.stateDict().param_groups,
      } as never);
      half.grad = Tensor.from(new Float32Array(n).fill(1), { device: 'cpu' });
      opt.step();
      const out = half.data.toFloat32Array();
      return out.reduce((a, b) => a + b, 0) / n;
    };
    const nearest = run(false);
    const stochastic = run(true);
    expect(Math.abs(nearest - x)).toBeGreaterThan(2 ** -10); // round to nearest is biased here
    // Standard error of the mean: (2^-7 * sqrt(p(1-p))) / sqrt(n) ~ 7e-6; allow 6 sigma.
    expect(Math.abs(stochastic - x)).toBeLessThan(5e-5);
  });

  it('is deterministic for a seed and resumes exactly from a state dict', () => {
    const make = () => {
      const { params, setGrads } = setup('adamw', 'bfloat16', 3);
      const opt = new AdamW(params, { lr: 1e-3, stochasticRounding: true, seed: 7 }) as unknown as AnyOptimizer;
      return { params, opt, setGrads };
    };
    const a = make();
    const b = make();
    for (let s = 0; s < 3; s++) {
      a.setGrads(1);
      b.setGrads(1);
      a.opt.step();
      b.opt.step();
    }
    expect(snapshot(a.params, a.opt)).toBe(snapshot(b.params, b.opt));
    const sd = a.opt.stateDict() as { rng?: { seed: number; counter: number } };
    expect(sd.rng).toEqual({ seed: 7, counter: 3 });
    // A fresh optimizer (different seed) restored from a's dict continues like a.
    const c = make();
    const restored = new AdamW(c.params, { lr: 1e-3, stochasticRounding: true, seed: 99 }) as unknown as AnyOptimizer;
    c.params.forEach((p, i) => p.data.copyFrom(a.params[i].data.toBits()));
    restored.loadStateDict(sd as never);
    const grads = SIZES.map((n) => randn(n, rng(11)));
    a.params.forEach((p, i) => (p.grad = Tensor.from(grads[i], { device: 'cpu' })));
    c.params.forEach((p, i) => (p.grad = Tensor.from(grads[i], { device: 'cpu' })));
    a.opt.step();
    restored.step();
    c.params.forEach((p, i) => expect(Array.from(p.data.toBits())).toEqual(Array.from(a.params[i].data.toBits())));
  });
});

describe('clipping inside step()', () => {
  it('globalNorm matches clipGradNorm-then-step without the epsilon, and is the same for 1 or many threads', () => {
    const a = setup('adamw', 'float32', 4);
    const b = setup('adamw', 'float32', 4);
    a.opt.gradClip = { type: 'globalNorm', maxNorm: 1 };
    a.setGrads(1);
    b.setGrads(1);
    // The two optimizers saw the same grads (same seeds); clip b's by hand in float64.
    const grads = b.params.map((p) => p.grad!.toFloat32Array());
    const norm = Math.sqrt(grads.reduce((s, g) => s + g.reduce((t, x) => t + x * x, 0), 0));
    expect(norm).toBeGreaterThan(1);
    const coef = Math.fround(1 / norm);
    b.params.forEach((p, i) => p.grad!.copyFrom(grads[i].map((x) => Math.fround(x * coef))));
    a.opt.step();
    b.opt.step();
    expect(snapshot(a.params, a.opt)).toBe(snapshot(b.params, b.opt));
  });

  it('rejects bad clip settings before anything changes', () => {
    const { opt } = setup('adamw', 'float32');
    expect(() => (opt.gradClip = { type: 'globalNorm', maxNorm: NaN })).toThrow(
      /gradClip.maxNorm must be a finite number/,
    );
    expect(() => (opt.gradClip = { type: 'norm', maxNorm: 0 })).toThrow(/gradClip.maxNorm must be > 0/);
    expect(() => (opt.gradClip = { type: 'value', max: 1, min: 2 })).toThrow(/min \(2\) must be <= max \(1\)/);
    expect(() => (opt.gradClip = { type: 'bogus' } as never)).toThrow(/gradClip.type must be/);
    expect(opt.gradClip).toBeNull();
  });
});

describe('clipGradNorm / clipGradValue bad input', () => {
  const param = () => {
    const p = new Parameter(Tensor.zeros([4], { device: 'cpu' }), { name: 'w' });
    p.grad = Tensor.from([1, -2, 3, -4], { device: 'cpu' });
    return p;
  };
  it('rejects a non-finite max norm and changes nothing', () => {
    const p = param();
    expect(() => clipGradNorm([p], Infinity)).toThrow(RangeError);
    expect(() => clipGradNorm([p], NaN)).toThrow(/clipGradNorm: maxNorm must be a finite number/);
    expect(() => clipGradNorm([p], 1, { normType: 0 })).toThrow(/normType must be a number > 0/);
    expect(Array.from(p.grad!.toFloat32Array())).toEqual([1, -2, 3, -4]);
  });
  it('rejects a negative clip value and changes nothing', () => {
    const p = param();
    expect(() => clipGradValue([p], -1)).toThrow(/clipGradValue: value must be >= 0/);
    expect(Array.from(p.grad!.toFloat32Array())).toEqual([1, -2, 3, -4]);
  });
  it('errorIfNonfinite throws before scaling', () => {
    const p = param();
    p.grad!.copyFrom(Float32Array.from([1, Infinity, 0, 0]));
    expect(() => clipGradNorm([p], 1, { errorIfNonfinite: true })).toThrow(/total norm of order 2 is Infinity/);
    expect(Array.from(p.grad!.toFloat32Array())).toEqual([1, Infinity, 0, 0]);
  });
});

describe('GradScaler misuse', () => {
  it('step twice on one optimizer before update() throws and changes nothing', () => {
    const { params, opt, setGrads } = setup('adamw', 'float32');
    const scaler = new GradScaler();
    setGrads(65536);
    scaler.step(opt);
    const before = snapshot(params, opt);
    expect(() => scaler.step(opt)).toThrow(/step\(\) was already called on this optimizer since the last update\(\)/);
    expect(snapshot(params, opt)).toBe(before);
  });
  it('unscale after step, twice, and update without a step throw', () => {
    const { opt, setGrads } = setup('lion', 'float32');
    const scaler = new GradScaler();
    expect(() => scaler.update()).toThrow(/no optimizer was stepped/);
    setGrads(65536);
    scaler.unscale(opt);
    expect(() => scaler.unscale(opt)).toThrow(/already called on this optimizer/);
    scaler.step(opt);
    expect(() => scaler.unscale(opt)).toThrow(/called after step\(\)/);
    scaler.update();
  });
  it('two optimizers: each steps once per iteration, and an overflow in either backs off the scale', () => {
    const a = setup('adamw', 'float32', 1);
    const b = setup('lion', 'float32', 2);
    const scaler = new GradScaler({ initScale: 8 });
    a.setGrads(8);
    b.setGrads(8, Infinity);
    expect(scaler.step(a.opt).skipped).toBe(false);
    expect(scaler.step(b.opt).skipped).toBe(true);
    scaler.update();
    expect(scaler.getScale()).toBe(4);
  });
  it('rejects bad options', () => {
    expect(() => new GradScaler({ initScale: 0 })).toThrow(/initScale must be > 0/);
    expect(() => new GradScaler({ growthFactor: 1 })).toThrow(/growthFactor must be > 1/);
    expect(() => new GradScaler({ backoffFactor: 1 })).toThrow(/backoffFactor must be in \(0, 1\)/);
    expect(() => new GradScaler({ growthInterval: 0 })).toThrow(/growthInterval must be >= 1, got 0/);
  });
});

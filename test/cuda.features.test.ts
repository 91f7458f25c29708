// The CUDA backend against the CPU backend, bit for bit, for what the step does beyond the
// plain update: clipping inside step(), GradScaler skips, lazy row-sparse updates,
// stochastic rounding, stepAsync, device-pointer views (offsets that force the scalar path),
// more hyperparameter slots than travel inline, thousands of small tensors, and tensors of
// several chunks with unaligned tails. Runs wherever CUDA is usable: on a GPU, or on the
// CUDA host emulator (FUSED_OPTIM_CUDA=EMULATE, docs/cuda-emulator.md) in CI.
import { describe, expect, it } from 'vitest';
import { AdamW, AdamWDL, type DType, GradScaler, Lion, Parameter, Tensor, clipGradNorm } from '../src/index';
import type { FusedOptimizer, GradClip } from '../src/fused_optimizer';
import type { ParamGroup } from '../src/optimizer';
import { native } from '../src/native';
import { bitsOf, expectSameBits } from './support/compare';
import { randn, rng } from './support/random';

type AnyOptimizer = FusedOptimizer<ParamGroup, object, object>;
type Device = 'cpu' | 'cuda';

const probe = native().nativeInfo();
const reason = probe.cudaUsable ? '' : ` (skipped: ${probe.cudaError})`;
if (!probe.cudaUsable) console.warn(`CUDA-vs-CPU feature tests skipped: no usable CUDA device: ${probe.cudaError}`);

const CHUNK = 65536;

/** Every bit of the params and the state dict, for comparing two optimizers. */
function everyBit(params: Parameter[], opt: AnyOptimizer): Map<string, Uint32Array | Uint16Array | number> {
  const out = new Map<string, Uint32Array | Uint16Array | number>();
  params.forEach((p, i) =>
    out.set(`param ${i} (${p.name})`, p.data.dtype === 'float32' ? bitsOf(p.data.toFloat32Array()) : p.data.toBits()),
  );
  const sd = opt.stateDict() as { state: Record<number, Record<string, Float32Array | number>>; rng?: object };
  for (const [i, s] of Object.entries(sd.state))
    for (const [k, v] of Object.entries(s)) out.set(`state ${i}.${k}`, typeof v === 'number' ? v : bitsOf(v));
  if (sd.rng) out.set('rng', JSON.stringify(sd.rng) as unknown as number);
  return out;
}

function expectSameEverything(cpu: Map<string, unknown>, gpu: Map<string, unknown>, where: string): void {
  expect([...gpu.keys()], `${where}: the same params and state`).toEqual([...cpu.keys()]);
  for (const [k, a] of cpu) {
    const b = gpu.get(k);
    if (a instanceof Uint32Array || a instanceof Uint16Array) expectSameBits(b as typeof a, a, `${where}: ${k}`);
    else expect(b, `${where}: ${k}`).toEqual(a);
  }
}

interface Twin {
  params: Parameter[];
  opt: AnyOptimizer;
}

/**
 * Builds the same setup on both devices and steps both with the same grads; `grads(step)`
 * gives each param's grad values (null: no grad this step).
 */
function runTwins(
  sizes: number[],
  dtype: DType,
  build: (params: Parameter[]) => AnyOptimizer,
  grads: (step: number, i: number, n: number) => Float32Array | null,
  steps: number,
  options: { gradDtype?: DType; between?: (step: number, twins: Twin[]) => void; seed?: number } = {},
): { cpu: Twin; gpu: Twin } {
  const next = rng(options.seed ?? 11);
  const inits = sizes.map((n) => randn(n, next, 0.5));
  const make = (device: Device): Twin => {
    const params = inits.map((v, i) => new Parameter(Tensor.from(v, { dtype, device }), { name: `w${i}` }));
    return { params, opt: build(params) };
  };
  const twins = [make('cpu'), make('cuda')];
  for (let s = 0; s < steps; s++) {
    options.between?.(s, twins);
    sizes.forEach((n, i) => {
      const g = grads(s, i, n);
      for (const [t, device] of [
        [twins[0], 'cpu'],
        [twins[1], 'cuda'],
      ] as const)
        t.params[i].grad = g ? Tensor.from(g, { dtype: options.gradDtype ?? 'float32', device }) : null;
    });
    for (const t of twins) t.opt.step();
  }
  twins[1].opt.synchronize();
  return { cpu: twins[0], gpu: twins[1] };
}

function expectTwinsEqual({ cpu, gpu }: { cpu: Twin; gpu: Twin }, where: string): void {
  expectSameEverything(everyBit(cpu.params, cpu.opt), everyBit(gpu.params, gpu.opt), where);
}

const SIZES = [1, 3, 1000, 4099, CHUNK + 1, 3 * CHUNK + 5];
const randomGrads = (seed: number, scale = 0.05) => {
  const next = rng(seed);
  return (s: number, i: number, n: number) => (i === 2 && s === 1 ? null : randn(n, next, scale));
};

describe.skipIf(!probe.cudaUsable)(`CUDA equals the CPU bit for bit: step features${reason}`, () => {
  const clips: Array<[string, GradClip]> = [
    ['globalNorm', { type: 'globalNorm', maxNorm: 0.5 }],
    ['norm', { type: 'norm', maxNorm: 0.3 }],
    ['value', { type: 'value', max: 0.04, min: -0.03 }],
  ];
  for (const [name, gradClip] of clips) {
    for (const dtype of ['float32', 'bfloat16'] as DType[]) {
      it(`gradClip ${name}, ${dtype} params: AdamW and Lion`, () => {
        for (const make of [
          (ps: Parameter[]) => new AdamW(ps, { lr: 1e-2, weightDecay: 0.1, gradClip }),
          (ps: Parameter[]) => new Lion(ps, { lr: 1e-3, weightDecay: 1e-4, gradClip }),
        ]) {
          const twins = runTwins(SIZES, dtype, (ps) => make(ps) as unknown as AnyOptimizer, randomGrads(5), 4);
          expectTwinsEqual(twins, `gradClip ${name} ${dtype}`);
        }
      });
    }
  }

  it('clipGradNorm: the same total norm and clipped grads, bit for bit, for norm types 2, 1 and inf', () => {
    for (const normType of [2, 1, Infinity]) {
      for (const dtype of ['float32', 'float16', 'bfloat16'] as DType[]) {
        const next = rng(71);
        const values = SIZES.map((n) => randn(n, next, 0.3));
        const [cpu, gpu] = (['cpu', 'cuda'] as Device[]).map((device) =>
          values.map((v, i) => {
            const p = new Parameter(Tensor.zeros([v.length], { dtype, device }), { name: `w${i}` });
            p.grad = Tensor.from(v, { dtype, device });
            return p;
          }),
        );
        // The float64 sums per tensor first (the returned norm is rounded to float32, which
        // would hide a last-bit difference), then the clipping itself.
        const sums = [cpu, gpu].map((ps) =>
          Array.from(
            native().gradNormSums(
              ps.map((p) => p.grad!.handle),
              normType,
            ),
          ),
        );
        expect(sums[1], `${dtype} norm ${normType}: float64 sums`).toEqual(sums[0]);
        const norms = [clipGradNorm(cpu, 0.5, { normType }), clipGradNorm(gpu, 0.5, { normType })];
        expect(Object.is(norms[1], norms[0]), `${dtype} norm ${normType}: ${norms[1]} vs ${norms[0]}`).toBe(true);
        cpu.forEach((p, i) => {
          const a = p.grad!;
          const b = gpu[i].grad!;
          if (dtype === 'float32') expectSameBits(bitsOf(b.toFloat32Array()), bitsOf(a.toFloat32Array()), `grad ${i}`);
          else expectSameBits(b.toBits(), a.toBits(), `${dtype} grad ${i}`);
        });
      }
    }
  });

  it('GradScaler: unscale in the kernels, a skipped step on an inf grad, the same scale on both', () => {
    for (const dtype of ['float32', 'float16', 'bfloat16'] as DType[]) {
      const scalers = [new GradScaler({ initScale: 1024 }), new GradScaler({ initScale: 1024 })];
      const next = rng(3);
      const inits = SIZES.map((n) => randn(n, next, 0.5));
      const twins = (['cpu', 'cuda'] as Device[]).map((device) => {
        const params = inits.map((v, i) => new Parameter(Tensor.from(v, { dtype, device }), { name: `w${i}` }));
        return { params, opt: new AdamW(params, { lr: 1e-2 }) as unknown as AnyOptimizer, device };
      });
      const skipped: boolean[][] = [[], []];
      for (let s = 0; s < 5; s++) {
        const grads = SIZES.map((n) => {
          const g = randn(n, next, 0.05 * 1024);
          if (s === 2) g[n - 1] = Infinity; // the last element: the scalar tail on both backends
          return g;
        });
        twins.forEach((t, k) => {
          t.params.forEach((p, i) => (p.grad = Tensor.from(grads[i], { device: t.device })));
          skipped[k].push(scalers[k].step(t.opt as never).skipped);
          scalers[k].update();
        });
      }
      twins[1].opt.synchronize();
      expect(skipped[0], `${dtype}: skipped steps`).toEqual([false, false, true, false, false]);
      expect(skipped[1], `${dtype}: CUDA skipped the same steps`).toEqual(skipped[0]);
      expect(scalers[1].getScale()).toBe(scalers[0].getScale());
      expectSameEverything(
        everyBit(twins[0].params, twins[0].opt),
        everyBit(twins[1].params, twins[1].opt),
        `GradScaler ${dtype}`,
      );
    }
  });

  it('lazy mode: row-sparse grads update the same rows with the same bits', () => {
    const V = 300;
    const D = 12;
    for (const dtype of ['float32', 'bfloat16'] as DType[]) {
      const init = randn(V * D, rng(8), 0.5);
      const twins = (['cpu', 'cuda'] as Device[]).map((device) => {
        const p = new Parameter(Tensor.from(init, { shape: [V, D], dtype, device }), { name: 'embedding.weight' });
        const q = new Parameter(Tensor.from(init.subarray(0, 1001), { dtype, device }), { name: 'dense' });
        return {
          params: [p, q],
          opt: new AdamW([p, q], { lr: 1e-2, lazyMode: true }) as unknown as AnyOptimizer,
          device,
        };
      });
      const next = rng(9);
      for (let s = 0; s < 4; s++) {
        const rows = Int32Array.from([(7 * s + 3) % V, 0, V - 1, (31 * s + 100) % V]);
        const values = randn(rows.length * D, next, 0.05);
        const dense = randn(1001, next, 0.05);
        for (const t of twins) {
          t.params[0].sparseGrad = { rows, values: Tensor.from(values, { shape: [rows.length, D], device: t.device }) };
          t.params[1].grad = Tensor.from(dense, { device: t.device });
          t.opt.step();
        }
      }
      twins[1].opt.synchronize();
      expectSameEverything(
        everyBit(twins[0].params, twins[0].opt),
        everyBit(twins[1].params, twins[1].opt),
        `lazy ${dtype}`,
      );
    }
  });

  it('stochastic rounding of bfloat16 params draws the same bits on both backends', () => {
    for (const make of [
      (ps: Parameter[], masterWeights: boolean) =>
        new AdamW(ps, { lr: 1e-3, stochasticRounding: true, seed: 1234, masterWeights }),
      (ps: Parameter[], masterWeights: boolean) =>
        new Lion(ps, { lr: 1e-4, stochasticRounding: true, seed: 99, masterWeights }),
    ]) {
      for (const masterWeights of [true, false]) {
        const twins = runTwins(
          SIZES,
          'bfloat16',
          (ps) => make(ps, masterWeights) as unknown as AnyOptimizer,
          randomGrads(12, 0.01),
          4,
          {
            between: (s, ts) => {
              if (s === 2) for (const t of ts) t.opt.paramGroups[0].lr = 2e-3;
            },
          },
        );
        expectTwinsEqual(twins, `stochastic rounding masterWeights=${masterWeights}`);
      }
    }
  });

  it('stepAsync on CUDA gives the bits of step() on the CPU', async () => {
    const next = rng(21);
    const inits = SIZES.map((n) => randn(n, next, 0.5));
    const build = (device: Device) => {
      const params = inits.map(
        (v, i) => new Parameter(Tensor.from(v, { dtype: 'float16', device }), { name: `w${i}` }),
      );
      return { params, opt: new AdamW(params, { lr: 1e-2, amsgrad: true }) as unknown as AnyOptimizer, device };
    };
    const [cpu, gpu] = [build('cpu'), build('cuda')];
    for (let s = 0; s < 3; s++) {
      const grads = SIZES.map((n) => randn(n, next, 0.05));
      for (const t of [cpu, gpu]) t.params.forEach((p, i) => (p.grad = Tensor.from(grads[i], { device: t.device })));
      cpu.opt.step();
      await gpu.opt.stepAsync();
    }
    expectSameEverything(everyBit(cpu.params, cpu.opt), everyBit(gpu.params, gpu.opt), 'stepAsync');
  });

  it('fromDevicePointer views at element offsets (the scalar path) equal CPU tensors', () => {
    // Views one element into a larger allocation: 4-byte aligned, never 16-byte aligned.
    const n = 2 * CHUNK + 7;
    const init = randn(n, rng(31), 0.5);
    const backing = Tensor.zeros([n + 8], { device: 'cuda' });
    const gradBacking = Tensor.zeros([n + 8], { device: 'cuda' });
    const view = Tensor.fromDevicePointer(backing.devicePointer + 4n, { shape: [n] });
    view.copyFrom(init);
    const gradView = Tensor.fromDevicePointer(gradBacking.devicePointer + 12n, { shape: [n] });
    const pGpu = new Parameter(view, { name: 'view' });
    const pCpu = new Parameter(Tensor.from(init, { device: 'cpu' }), { name: 'view' });
    const opts = [new AdamW([pCpu], { lr: 1e-2 }), new AdamW([pGpu], { lr: 1e-2 })];
    const next = rng(32);
    for (let s = 0; s < 3; s++) {
      const g = randn(n, next, 0.05);
      pCpu.grad = Tensor.from(g, { device: 'cpu' });
      gradView.copyFrom(g);
      pGpu.grad = gradView;
      opts.forEach((o) => o.step());
    }
    opts[1].synchronize();
    expectSameEverything(
      everyBit([pCpu], opts[0] as unknown as AnyOptimizer),
      everyBit([pGpu], opts[1] as unknown as AnyOptimizer),
      'views',
    );
    // Nothing outside the views was written.
    const around = backing.toFloat32Array();
    expect(around[0]).toBe(0);
    expect(Array.from(around.subarray(n + 1))).toEqual(new Array(7).fill(0));
  });

  it('AdamWDL with 40 layers: more hyperparameter slots than travel inline', () => {
    const layers = 40;
    const names = Array.from({ length: layers }, (_, l) => [
      `encoder.layers.${l}.w`,
      `encoder.layers.${l}.bias`,
    ]).flat();
    const sizes = names.map((_, i) => 1 + ((i * 37) % 300));
    const next = rng(41);
    const inits = sizes.map((n) => randn(n, next, 0.5));
    const build = (device: Device) => {
      const params = inits.map((v, i) => new Parameter(Tensor.from(v, { device }), { name: names[i] }));
      const opt = new AdamWDL(params, {
        lr: 1e-2,
        weightDecay: 0.1,
        layerwiseDecay: 0.9,
        nLayers: layers,
        applyDecayParamFun: (nm) => !nm.endsWith('.bias'),
      }) as unknown as AnyOptimizer;
      return { params, opt, device };
    };
    const [cpu, gpu] = [build('cpu'), build('cuda')];
    for (let s = 0; s < 3; s++) {
      const grads = sizes.map((n) => randn(n, next, 0.05));
      for (const t of [cpu, gpu]) {
        t.params.forEach((p, i) => (p.grad = Tensor.from(grads[i], { device: t.device })));
        t.opt.step();
      }
    }
    gpu.opt.synchronize();
    expectSameEverything(everyBit(cpu.params, cpu.opt), everyBit(gpu.params, gpu.opt), 'AdamWDL 40 layers');
  });

  it('3,000 small tensors in one launch', () => {
    const sizes = Array.from({ length: 3000 }, (_, i) => 1 + ((i * 7) % 17));
    const twins = runTwins(
      sizes,
      'float32',
      (ps) => new AdamW(ps, { lr: 1e-2, weightDecay: 0.01 }) as unknown as AnyOptimizer,
      randomGrads(51),
      2,
    );
    expectTwinsEqual(twins, '3000 tensors');
  });

  it('a tensor of several chunks with an unaligned tail, every dtype pair', () => {
    const n = 5 * CHUNK + 3;
    const pairs: Array<[DType, DType]> = [
      ['float32', 'float32'],
      ['float16', 'float16'],
      ['bfloat16', 'float32'],
    ];
    for (const [dtype, gradDtype] of pairs) {
      const twins = runTwins(
        [n],
        dtype,
        (ps) => new Lion(ps, { lr: 1e-3 }) as unknown as AnyOptimizer,
        randomGrads(61),
        2,
        {
          gradDtype,
        },
      );
      expectTwinsEqual(twins, `${n} elements ${dtype}/${gradDtype}`);
    }
  });
});

// bf16 and 8-bit optimizer state on the CUDA backend against the CPU backend, bit for bit:
// params, masters, bf16 state bits, 8-bit codes and absmax, metrics and stateBytes, for
// AdamW (with and without amsgrad), Lion and SGD (with and without momentum), fp32, fp16
// and bf16 params. Both backends run the same fp32 rules and the same coding
// (native/common/blockwise_quant.h, stochastic_rounding.h), so nothing may differ; the
// quantization itself is checked against a float64 reference elsewhere (the CPU suites).
//
// The handles are driven directly (addParams' stateDtype code and block size), so this
// suite does not depend on the TypeScript option.
import { describe, expect, it } from 'vitest';
import { type DType, Tensor } from '../src/index';
import { deviceCode } from '../src/dtype';
import { type NativeOptimizerHandle, native, optimizerHandle } from '../src/native';
import { bitsOf, expectSameBits } from './support/compare';
import { randn, rng } from './support/random';

const probe = native().nativeInfo();
const reason = probe.cudaUsable ? '' : ` (skipped: ${probe.cudaError})`;
if (!probe.cudaUsable) console.warn(`CUDA-vs-CPU tests of low-bit state skipped: no usable GPU: ${probe.cudaError}`);

// 1 and 3 stay fp32 under 'uint8' (below 4096 elements); 4096 is the smallest quantized
// size; 4097 ends in a partial block of either size; 3 * 2048 + 77 holds several blocks of
// either size in one chunk; 65536 + 300 spans two chunks, the second holding one and a
// partial 256-block or a partial 2048-block.
const SIZES = [1, 3, 4096, 4097, 3 * 2048 + 77, 65536 + 300];
const NO_GRAD_AT_STEP1 = 3; // this param gets no grad in step 1
const STEPS = 4;

type StateCode = 0 | 1 | 2; // float32, bfloat16, uint8
interface Format {
  name: string;
  code: StateCode;
  block?: number;
}
const FORMATS: Format[] = [
  { name: 'bfloat16', code: 1 },
  { name: 'uint8 / 256', code: 2, block: 256 },
  { name: 'uint8 / 2048', code: 2, block: 2048 },
];

interface Algo {
  name: string;
  handle: string;
  /** The group's hyperparameter row (the handle's hyperFields order) for learning rate lr. */
  hyper: (lr: number) => number[];
  lr: number;
}
const ALGOS: Algo[] = [
  { name: 'AdamW', handle: 'AdamWHandle', lr: 1e-2, hyper: (lr) => [lr, 0.9, 0.999, 1e-8, 0.01, 0, 0] },
  {
    name: 'AdamW amsgrad maximize',
    handle: 'AdamWHandle',
    lr: 3e-3,
    hyper: (lr) => [lr, 0.8, 0.99, 1e-6, 0.1, 1, 1],
  },
  { name: 'Lion', handle: 'LionHandle', lr: 1e-3, hyper: (lr) => [lr, 0.9, 0.99, 0.05, 1e-3] },
  { name: 'SGD momentum', handle: 'SgdHandle', lr: 0.05, hyper: (lr) => [lr, 0.9, 0.1, 1e-3, 0, 0] },
  { name: 'SGD nesterov', handle: 'SgdHandle', lr: 0.02, hyper: (lr) => [lr, 0.7, 0, 0, 1, 0] },
  { name: 'SGD without momentum', handle: 'SgdHandle', lr: 0.1, hyper: (lr) => [lr, 0, 0, 1e-2, 0, 1] },
];

interface Side {
  handle: NativeOptimizerHandle;
  params: Tensor[];
}

type Raw = Float32Array | Uint16Array | Uint8Array;
type State = Record<string, Raw | number | string | undefined>;

const PARAM_DTYPES: DType[] = ['float32', 'float16', 'bfloat16'];

/**
 * Two groups on each device: group 0 in the format under test, group 1 (size 1 again and
 * 5003) in fp32 state, so the step's launches mix state dtypes. STEPS steps with the
 * same grads on both devices; the lr of group 0 drops after step 1.
 */
function runBoth(algo: Algo, format: Format, dtype: DType): { cpu: Side; gpu: Side; hyper: Float64Array } {
  const next = rng(11);
  const sizes1 = [SIZES[0], 5003];
  const inits = [...SIZES, ...sizes1].map((n) => randn(n, next, 0.5));
  const gradDtype = dtype; // half grads for half params (fp32 grads: test/cuda.test.ts and others)
  const make = (device: 'cpu' | 'cuda'): Side => {
    const handle = optimizerHandle(algo.handle, deviceCode(device));
    handle.setRng(1234, 0);
    const params = inits.map((v) => Tensor.from(v, { dtype, device }));
    const master = dtype !== 'float32';
    const names = params.map((_, i) => `p${i}`);
    handle.addParams(
      params.slice(0, SIZES.length).map((p) => p.handle),
      0,
      names.slice(0, SIZES.length),
      master,
      undefined,
      undefined,
      format.code,
      format.block,
    );
    handle.addParams(
      params.slice(SIZES.length).map((p) => p.handle),
      1,
      names.slice(SIZES.length),
      master,
      undefined,
      undefined,
      0,
    );
    return { handle, params };
  };
  const cpu = make('cpu');
  const gpu = make('cuda');
  let hyper = new Float64Array(0);
  for (let s = 0; s < STEPS; s++) {
    const lr0 = s >= 2 ? algo.lr / 3 : algo.lr;
    hyper = Float64Array.from([...algo.hyper(lr0), ...algo.hyper(algo.lr)]);
    const grads = inits.map((v, i) => (i === NO_GRAD_AT_STEP1 && s === 1 ? null : randn(v.length, next, 0.05)));
    for (const [side, device] of [
      [cpu, 'cpu'],
      [gpu, 'cuda'],
    ] as Array<[Side, 'cpu' | 'cuda']>) {
      side.handle.setGrads(
        0,
        grads.map((g) => (g ? Tensor.from(g, { dtype: gradDtype, device }).handle : null)),
      );
      side.handle.step(hyper, { stochasticRounding: dtype === 'bfloat16' });
    }
  }
  gpu.handle.synchronize();
  return { cpu, gpu, hyper };
}

/** 16-bit words of bf16 bits or 8-bit codes, for expectSameBits. */
function words(a: Raw): Uint16Array {
  return a instanceof Uint16Array ? a : Uint16Array.from(a);
}

function expectSameParams(cpu: Side, gpu: Side, dtype: DType, where: string): void {
  cpu.params.forEach((p, i) => {
    const at = `${where} param ${i} (${p.numel})`;
    if (dtype === 'float32')
      expectSameBits(bitsOf(gpu.params[i].toFloat32Array()), bitsOf(p.toFloat32Array()), `${at} values`);
    else expectSameBits(gpu.params[i].toBits(), p.toBits(), `${at} bits`);
  });
}

function expectSameStates(cpu: Side, gpu: Side, where: string): Array<State | null> {
  const states: Array<State | null> = [];
  cpu.params.forEach((p, i) => {
    const at = `${where} param ${i} (${p.numel})`;
    const a = cpu.handle.getState(i) as State | null;
    const b = gpu.handle.getState(i) as State | null;
    expect(b === null, `${at}: has state`).toBe(a === null);
    states.push(a);
    if (!a || !b) return;
    expect(Object.keys(b).sort(), `${at} keys`).toEqual(Object.keys(a).sort());
    for (const [key, value] of Object.entries(a)) {
      if (ArrayBuffer.isView(value)) {
        const other = b[key] as Raw;
        expect(other.constructor, `${at} ${key} type`).toBe(value.constructor);
        if (value instanceof Float32Array) expectSameBits(bitsOf(other as Float32Array), bitsOf(value), `${at} ${key}`);
        else expectSameBits(words(other), words(value as Raw), `${at} ${key}`);
      } else {
        expect(b[key], `${at} ${key}`).toBe(value);
      }
    }
  });
  return states;
}

/** What the CPU's states must look like for the comparison to mean something. */
function expectFormatApplied(states: Array<State | null>, algo: Algo, format: Format, where: string): void {
  const moment = algo.handle === 'SgdHandle' ? 'momentum_buffer' : 'exp_avg';
  const hasState = !algo.name.includes('without momentum');
  SIZES.forEach((n, i) => {
    const s = states[i] ?? {};
    const lowBit = format.code === 1 || n >= 4096;
    if (!hasState) {
      expect(s[moment], `${where} param ${i}: no momentum buffer`).toBeUndefined();
      return;
    }
    expect(s[moment], `${where} param ${i} ${moment}`).toBeInstanceOf(
      !lowBit ? Float32Array : format.code === 1 ? Uint16Array : Uint8Array,
    );
    if (format.code === 2 && lowBit) {
      const absmax = s[`${moment}_absmax`] as Float32Array;
      expect(absmax.length, `${where} param ${i} absmax count`).toBe(Math.ceil(n / (format.block as number)));
      expect(
        absmax.every((x) => x > 0),
        `${where} param ${i}: every block absmax positive`,
      ).toBe(true);
      const codes = s[moment] as Uint8Array;
      expect(new Set(codes).size, `${where} param ${i}: distinct codes`).toBeGreaterThan(16);
    }
  });
}

describe.skipIf(!probe.cudaUsable)(`low-bit optimizer state: CUDA equals the CPU bit for bit${reason}`, () => {
  for (const algo of ALGOS) {
    for (const format of FORMATS) {
      // Every param dtype for AdamW (the kernels and paths every algorithm shares); fp32 and
      // bf16 params for the others, to keep the emulated suite short.
      const dtypes = algo.name === 'AdamW' ? PARAM_DTYPES : (['float32', 'bfloat16'] as DType[]);
      for (const dtype of dtypes) {
        it(`${algo.name}, ${format.name} state, ${dtype} params`, () => {
          const where = `${algo.name} ${format.name} ${dtype}`;
          const { cpu, gpu, hyper } = runBoth(algo, format, dtype);
          expectSameParams(cpu, gpu, dtype, where);
          const states = expectSameStates(cpu, gpu, where);
          expectFormatApplied(states, algo, format, where);
          expect(gpu.handle.stateBytes, `${where} stateBytes`).toBe(cpu.handle.stateBytes);
          // Metrics read the state in its own dtype: the same sums, in the same order.
          const ma = cpu.handle.metrics(hyper);
          const mb = gpu.handle.metrics(hyper);
          expect(ma.length, `${where} metrics rows`).toBeGreaterThan(0);
          expectSameBits(
            new Uint32Array(mb.buffer, mb.byteOffset, mb.length * 2),
            new Uint32Array(ma.buffer, ma.byteOffset, ma.length * 2),
            `${where} metrics`,
          );
        });
      }
    }
  }

  it('bf16 and 8-bit state (both block sizes, amsgrad) side by side; one launch each for element and 8-bit state', () => {
    const next = rng(5);
    const sizes = [5000, 65536 + 1, 9000];
    const inits = sizes.map((n) => randn(n, next, 1));
    const make = (device: 'cpu' | 'cuda'): Side => {
      const handle = optimizerHandle('AdamWHandle', deviceCode(device));
      handle.setRng(77, 0);
      const params = inits.map((v) => Tensor.from(v, { device }));
      handle.addParams([params[0].handle], 0, ['a'], false, undefined, undefined, 1);
      handle.addParams([params[1].handle], 1, ['b'], false, undefined, undefined, 2, 2048);
      handle.addParams([params[2].handle], 2, ['c'], false, undefined, undefined, 2, 256);
      return { handle, params };
    };
    const cpu = make('cpu');
    const gpu = make('cuda');
    const hyper = Float64Array.from([0, 1, 2].flatMap(() => [1e-2, 0.9, 0.999, 1e-8, 0.01, 1, 0]));
    const emulator = (native() as unknown as { cudaEmulator?: { counters(): { launches: number } } }).cudaEmulator;
    let launches = 0;
    for (let s = 0; s < 3; s++) {
      const grads = inits.map((v) => randn(v.length, next, 0.1));
      for (const [side, device] of [
        [cpu, 'cpu'],
        [gpu, 'cuda'],
      ] as Array<[Side, 'cpu' | 'cuda']>) {
        side.handle.setGrads(
          0,
          grads.map((g) => Tensor.from(g, { device }).handle),
        );
        const before = emulator?.counters().launches ?? 0;
        side.handle.step(hyper);
        if (device === 'cuda') {
          side.handle.synchronize(); // the emulator counts kernels when they run
          launches = (emulator?.counters().launches ?? 0) - before;
        }
      }
    }
    gpu.handle.synchronize();
    // fp32 params and grads: the element-state kernel (the bf16 tensor) and the 8-bit one.
    if (emulator) expect(launches, 'kernels per step').toBe(2);
    expectSameParams(cpu, gpu, 'float32', 'mixed');
    const states = expectSameStates(cpu, gpu, 'mixed');
    expect(states.map((s) => s?.stateDtype)).toEqual(['bfloat16', 'uint8', 'uint8']);
    expect(states.map((s) => s?.blockSize)).toEqual([undefined, 2048, 256]);
    expect(states[1]?.max_exp_avg_sq, 'amsgrad state quantized too').toBeInstanceOf(Uint8Array);
  });
});

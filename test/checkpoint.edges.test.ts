// Checkpoint and state-dict edge cases: params with 0 elements (every state dict the library
// writes loads back, for every optimizer and dtype), values `extra` cannot hold (a clear
// TypeError naming the value's type, not a stack overflow), and the stable error codes.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  AdamWDL,
  CheckpointError,
  type DType,
  FusedOptimizer,
  Lion,
  Parameter,
  SafetensorsError,
  Tensor,
  loadCheckpoint,
  readSafetensors,
  saveCheckpoint,
} from '../src/index';
import { tempDir } from './support/checkpoint_files';

const { dir, cleanup } = tempDir();
afterAll(cleanup);
let counter = 0;
const tmp = () => join(dir, `edge-${counter++}.safetensors`);

const OPTIMIZERS = {
  AdamW: (ps: Parameter[]) => new AdamW(ps, { lr: 0.01, amsgrad: true }),
  AdamWDL: (ps: Parameter[]) => new AdamWDL(ps, { lr: 0.01, amsgrad: true, layerwiseDecay: 0.9, nLayers: 2 }),
  Lion: (ps: Parameter[]) => new Lion(ps, { lr: 0.01 }),
} as const;
const DTYPES: DType[] = ['float32', 'float16', 'bfloat16'];

/** Params of shapes [0], [4], [3, 0], [5] (values from `seed`), with an optimizer stepped `steps` times. */
function model(kind: keyof typeof OPTIMIZERS, dtype: DType, seed: number, steps: number) {
  const shapes = [[0], [4], [3, 0], [5]];
  const params = shapes.map((shape, i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = Float32Array.from({ length: n }, (_, j) => Math.sin(seed * 7 + i * 3 + j));
    return new Parameter(Tensor.from(values, { dtype, shape }), { name: `p${i}` });
  });
  const opt = OPTIMIZERS[kind](params);
  const train = (from: number, to: number) => {
    for (let s = from; s < to; s++) {
      params.forEach((p, i) => {
        const g = Float32Array.from({ length: p.data.numel }, (_, j) => Math.cos(s * 5 + i + j));
        p.grad = Tensor.from(g, { dtype, shape: p.data.shape });
      });
      opt.step();
    }
  };
  train(0, steps);
  return { params, opt, train };
}

function values(m: ReturnType<typeof model>) {
  const sd = m.opt.stateDict();
  const state = Object.fromEntries(
    Object.entries(sd.state).map(([k, s]) => [
      k,
      Object.fromEntries(
        Object.entries(s as object).map(([b, v]) => [b, ArrayBuffer.isView(v) ? Array.from(v as Float32Array) : v]),
      ),
    ]),
  );
  return {
    params: m.params.map((p) => Array.from(p.data.dtype === 'float32' ? p.data.toFloat32Array() : p.data.toBits())),
    state,
  };
}

describe('params with 0 elements, among normal ones', () => {
  for (const kind of Object.keys(OPTIMIZERS) as Array<keyof typeof OPTIMIZERS>) {
    for (const dtype of DTYPES) {
      it(`${kind}, ${dtype}: stateDict -> loadStateDict, and a checkpoint, load back and resume exactly`, async () => {
        const a = model(kind, dtype, 1, 3);
        const sd = a.opt.stateDict();
        expect(Object.keys(sd.state)).toEqual(['0', '1', '2', '3']); // the empty ones have state too
        const buffers = kind === 'Lion' ? ['exp_avg'] : ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'];
        for (const b of buffers)
          expect((sd.state[0] as unknown as Record<string, Float32Array>)[b]).toEqual(new Float32Array(0));

        const b = model(kind, dtype, 2, 1);
        b.opt.loadStateDict(sd as never);
        expect(values(b)).toEqual({ ...values(a), params: values(b).params });

        const file = tmp();
        await saveCheckpoint(file, { params: a.params, optimizer: a.opt });
        const c = model(kind, dtype, 3, 0);
        await loadCheckpoint(file, { params: c.params, optimizer: c.opt });
        expect(values(c)).toEqual(values(a));
        const { tensors } = await readSafetensors(file);
        expect(tensors['param.p0'].shape).toEqual([0]);
        expect(tensors['param.p2'].shape).toEqual([3, 0]);
        expect(tensors['optimizer.state.p2.exp_avg'].data.length).toBe(0);

        a.train(3, 5);
        c.train(3, 5);
        expect(values(c)).toEqual(values(a));
      });
    }
  }

  it('through a subclass whose stateDict is its own (the checkpoint then goes through the dicts)', async () => {
    class Tagged extends AdamW {
      override stateDict() {
        return { ...super.stateDict(), tag: 'mine' };
      }
      // Its own key is its own to take out: loadStateDict refuses keys it does not know.
      override loadStateDict(sd: ReturnType<Tagged['stateDict']>) {
        const { tag, ...rest } = sd;
        expect(tag).toBe('mine');
        super.loadStateDict(rest);
      }
    }
    const make = (seed: number) => {
      const m = model('AdamW', 'bfloat16', seed, 0);
      return { ...m, opt: new Tagged(m.params, { lr: 0.01 }) };
    };
    const a = make(1);
    a.params.forEach((p) => (p.grad = Tensor.zeros(p.data.shape, { dtype: 'bfloat16' })));
    a.opt.step();
    const file = tmp();
    await saveCheckpoint(file, { params: a.params, optimizer: a.opt });
    const b = make(2);
    await loadCheckpoint(file, { params: b.params, optimizer: b.opt });
    expect(Object.keys(b.opt.stateDict().state)).toEqual(['0', '1', '2', '3']);
  });
});

describe('extra that a checkpoint cannot hold: a TypeError naming the value and its type', () => {
  const params = () => [new Parameter(Tensor.from([1, 2]), { name: 'w' })];

  it('a Uint8ClampedArray, a DataView, a Map, a class instance', async () => {
    class Point {
      x = 1;
    }
    const cases: Array<[unknown, RegExp]> = [
      [{ pixels: new Uint8ClampedArray(4) }, /extra\.pixels is a Uint8ClampedArray, which a checkpoint cannot hold/],
      [{ view: new DataView(new ArrayBuffer(4)) }, /extra\.view is a DataView, which a checkpoint cannot hold/],
      [{ m: new Map() }, /extra\.m is a Map/],
      [{ nested: [{ p: new Point() }] }, /extra\.nested\[0\]\.p is a Point/],
    ];
    for (const [extra, message] of cases) {
      const file = tmp();
      const e = await saveCheckpoint(file, { params: params(), extra }).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e, String(message)).toBeInstanceOf(TypeError);
      expect((e as Error).message).toMatch(message);
      expect(existsSync(file)).toBe(false);
    }
  });

  it('values nested deeper than 1000 levels (was a stack overflow), and 1000 levels save and load', async () => {
    const nest = (depth: number) => {
      let v: unknown = 'leaf';
      for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { a: v };
      return v;
    };
    for (const depth of [1001, 100_000]) {
      const e = await saveCheckpoint(tmp(), { params: params(), extra: nest(depth) }).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(TypeError);
      expect((e as Error).message).toMatch(
        /^extra(\.a|\[0\])+\.\.\. is nested more than 1000 levels deep \((an Object|an Array|a string) there\)/,
      );
    }
    const file = tmp();
    await saveCheckpoint(file, { params: params(), extra: nest(999) });
    expect(await loadCheckpoint(file, { params: params() })).toEqual(nest(999));
  });
});

describe('error codes', () => {
  it('SafetensorsError and CheckpointError carry the code of the problem', async () => {
    const w = [new Parameter(Tensor.from([1, 2, 3]), { name: 'w' })];
    const opt = new AdamW(w);
    w[0].grad = Tensor.from([1, 1, 1]);
    opt.step();
    const file = tmp();
    await saveCheckpoint(file, { params: w, optimizer: opt });
    const good = readFileSync(file);
    const variant = (edit: (b: Buffer) => Buffer) => {
      const f = tmp();
      writeFileSync(f, edit(Buffer.from(good)));
      return f;
    };
    const codeOf = async (f: string, targets: Parameters<typeof loadCheckpoint>[1] = { params: w }) => {
      const e = await loadCheckpoint(f, targets).then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(CheckpointError);
      expect((e as CheckpointError).file).toBe(f);
      return (e as CheckpointError).code;
    };
    expect(await codeOf(join(dir, 'missing'))).toBe('IoError');
    expect(await codeOf(variant(() => Buffer.alloc(3)))).toBe('HeaderTooSmall');
    expect(await codeOf(variant((b) => (b.writeBigUInt64LE(200_000_000n, 0), b)))).toBe('HeaderTooLarge');
    expect(await codeOf(variant((b) => b.subarray(0, 100)))).toBe('InvalidHeaderLength');
    expect(await codeOf(variant((b) => b.subarray(0, b.length - 4)))).toBe('InvalidOffset');
    expect(await codeOf(variant((b) => Buffer.concat([b, Buffer.from([0])])))).toBe('MetadataIncompleteBuffer');
    expect(await codeOf(variant((b) => ((b[8] = 0x20), b)))).toBe('InvalidHeaderStart');
    expect(await codeOf(variant((b) => ((b[b.length - 1] ^= 1), b)))).toBe('ChecksumMismatch');
    expect(await codeOf(join(__dirname, 'fixtures', 'safetensors_hf.safetensors'))).toBe('NotACheckpoint');
    expect(await codeOf(file, { params: [new Parameter(Tensor.zeros([4]), { name: 'w' })] })).toBe('ParamMismatch');
    const lion = new Lion(w);
    expect(await codeOf(file, { params: w, optimizer: lion })).toBe('OptimizerMismatch');
    expect(
      await codeOf(file, { params: w, optimizer: opt, scaler: { stateDict: () => ({}), loadStateDict() {} } }),
    ).toBe('ScalerMismatch');

    const st = await readSafetensors(join(dir, 'missing')).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(st).toBeInstanceOf(SafetensorsError);
    expect((st as SafetensorsError).code).toBe('IoError');
    // A save into a folder that does not exist.
    const e = await saveCheckpoint(join(dir, 'no', 'x.safetensors'), { params: w }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect((e as CheckpointError).code).toBe('WriteFailed');
    expect(FusedOptimizer).toBeDefined();
  });
});

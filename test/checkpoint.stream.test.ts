// How checkpoints move bytes: through staging budgets small enough to split tensors and
// coalesce small ones, widening state tensors saved in other float types (files imported
// from PyTorch), and background saves (a consistent snapshot, training going on while it is
// written, one save at a time, failures reported on `written` or by the next save).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index';
import {
  AdamW,
  CheckpointError,
  Parameter,
  Tensor,
  loadCheckpoint,
  readSafetensors,
  saveCheckpoint,
  writeSafetensors,
} from '../src/index';
import { crc32, crcHex } from '../src/checkpoint/crc32';
import { bf16BitsToFloat32, f16BitsToFloat32 } from '../src/checkpoint/half';
import { tempDir } from './support/checkpoint_files';
import type * as ModelTypes from './support/checkpoint_model.cjs';

const model = createRequire(__filename)('./support/checkpoint_model.cjs') as typeof ModelTypes;
const { build, fingerprint } = model;

const { dir, cleanup } = tempDir();
afterAll(cleanup);
let counter = 0;
const tmp = (name = 'stream') => join(dir, `${name}-${counter++}.safetensors`);
const MiB = 2 ** 20;

describe('staging budgets', () => {
  it('1 MiB of staging: tensors split across chunks, small ones coalesced, every dtype, exact round trip', async () => {
    // 512 KiB chunks: 200k fp32 elements (800 KB) span two, 600k (2.4 MB; 1.2 MB in bf16)
    // are written directly, the small ones share chunks.
    const sizes = [200_000, 600_000, 7, 1, 65_537];
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const make = (seed: number) => {
        const params = sizes.map(
          (n, i) =>
            new Parameter(
              Tensor.from(
                Float32Array.from({ length: n }, (_, j) => Math.sin(seed + i + j * 1e-3)),
                { dtype },
              ),
              {
                name: `p${i}`,
              },
            ),
        );
        const opt = new AdamW(params, { lr: 0.01, amsgrad: true });
        const grads = params.map((p, i) =>
          Tensor.from(
            Float32Array.from({ length: p.data.numel }, (_, j) => Math.cos(i + j)),
            { dtype },
          ),
        );
        const train = (steps: number) => {
          for (let s = 0; s < steps; s++) {
            params.forEach((p, i) => (p.grad = grads[i]));
            opt.step();
          }
        };
        return { params, opt, train };
      };
      const bytes = (m: ReturnType<typeof make>) => {
        const sd = m.opt.stateDict();
        const arrays = [
          ...m.params.map((p) => (dtype === 'float32' ? p.data.toFloat32Array() : p.data.toBits())),
          ...Object.values(sd.state).flatMap((st) => Object.values(st as object).filter((v) => ArrayBuffer.isView(v))),
        ] as ArrayBufferView[];
        return Buffer.concat(arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
      };
      const a = make(1);
      a.train(2);
      const file = tmp();
      const big = new Float64Array(100_000).fill(0.5);
      await saveCheckpoint(file, { params: a.params, optimizer: a.opt, extra: { big } }, { stagingBytes: MiB });
      const b = make(2);
      b.train(1); // state of its own, overwritten in place
      const extra = await loadCheckpoint(file, { params: b.params, optimizer: b.opt }, { stagingBytes: MiB });
      expect(bytes(b).equals(bytes(a)), dtype).toBe(true);
      expect(Buffer.from((extra as { big: Float64Array }).big.buffer).equals(Buffer.from(big.buffer))).toBe(true);
      const c = make(3); // fresh state buffers, filled while the file is checked
      await loadCheckpoint(file, { params: c.params, optimizer: c.opt });
      expect(bytes(c).equals(bytes(a)), dtype).toBe(true);
    }
  }, 60_000);

  it('stagingBytes and unknown options are checked', async () => {
    const p = [new Parameter(Tensor.from([1]), { name: 'w' })];
    const file = tmp();
    await expect(saveCheckpoint(file, { params: p }, { stagingBytes: 1000 })).rejects.toThrow(
      /options\.stagingBytes must be an integer from 1048576/,
    );
    await expect(saveCheckpoint(file, { params: p }, { stagingBytes: MiB + 0.5 })).rejects.toThrow(RangeError);
    await expect(saveCheckpoint(file, { params: p }, { backgroud: true } as never)).rejects.toThrow(
      /options: unknown option 'backgroud'/,
    );
    await expect(saveCheckpoint(file, { params: p, extras: 1 } as never)).rejects.toThrow(
      /state: unknown option 'extras'/,
    );
    await expect(loadCheckpoint(file, { params: p }, { background: true } as never)).rejects.toThrow(
      /options: unknown option 'background'/,
    );
    expect(existsSync(file)).toBe(false);
  });
});

describe('state saved in another float type (a file imported from PyTorch) is widened to fp32', () => {
  it('BF16, F16 and F64 state tensors, split across 512 KiB chunks', async () => {
    const n = 150_003; // F64: 1.2 MB, over three chunks
    const bf16 = new Uint16Array(n).map((_, i) => 0x3f80 + (i % 200)); // 1.0 ... in bfloat16
    const f16 = new Uint16Array(n).map((_, i) => 0x3c00 + (i % 700));
    const f64 = Float64Array.from({ length: n }, (_, i) => 1 + i / 3);
    const w = Float32Array.from({ length: n }, (_, i) => i / n);
    // A version-1 checkpoint, written here from the format's description.
    const tensors = {
      'param.w': { data: w },
      'optimizer.state.w.exp_avg': { data: bf16, dtype: 'BF16' as const },
      'optimizer.state.w.exp_avg_sq': { data: f64 },
      'optimizer.state.w.max_exp_avg_sq': { data: f16, dtype: 'F16' as const },
    };
    const table = (name: string, data: ArrayBufferView, dtype: string) => [
      name,
      { dtype, shape: [n], crc32: crcHex(crc32(data)) },
    ];
    const manifest = {
      format: 'fused-optim/checkpoint',
      version: 1,
      tensors: Object.fromEntries([
        table('param.w', w, 'F32'),
        table('optimizer.state.w.exp_avg', bf16, 'BF16'),
        table('optimizer.state.w.exp_avg_sq', f64, 'F64'),
        table('optimizer.state.w.max_exp_avg_sq', f16, 'F16'),
      ]),
      params: [{ name: 'w', dtype: 'float32', shape: [n], tensor: 'param.w' }],
      optimizer: {
        class: 'AdamW',
        dict: {},
        param_groups: [
          {
            dict: { lr: 0.001, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01, amsgrad: true, maximize: false },
            params: [0],
            param_names: ['w'],
          },
        ],
        state: {
          w: {
            step: 7,
            exp_avg: { $tensor: 'optimizer.state.w.exp_avg' },
            exp_avg_sq: { $tensor: 'optimizer.state.w.exp_avg_sq' },
            max_exp_avg_sq: { $tensor: 'optimizer.state.w.max_exp_avg_sq' },
          },
        },
      },
    };
    const text = JSON.stringify(manifest);
    const file = tmp('imported');
    await writeSafetensors(file, tensors, {
      metadata: {
        format: 'fused-optim/checkpoint',
        format_version: '1',
        'fused_optim.manifest': text,
        'fused_optim.manifest_crc32': crcHex(crc32(Buffer.from(text))),
      },
    });
    for (const fresh of [true, false]) {
      const p = new Parameter(Tensor.zeros([n]), { name: 'w' });
      const opt = new AdamW([p], { amsgrad: true });
      if (!fresh) {
        p.grad = Tensor.zeros([n]);
        opt.step(); // buffers exist: read into in place
      }
      await loadCheckpoint(file, { params: [p], optimizer: opt }, { stagingBytes: MiB });
      const s = opt.stateDict().state[0] as unknown as Record<string, Float32Array | number>;
      const same = (x: unknown, y: Float32Array) =>
        Buffer.from((x as Float32Array).buffer).equals(Buffer.from(y.buffer));
      expect(s.step).toBe(7);
      expect(same(s.exp_avg, bf16BitsToFloat32(bf16))).toBe(true);
      expect(same(s.max_exp_avg_sq, f16BitsToFloat32(f16))).toBe(true);
      expect(same(s.exp_avg_sq, Float32Array.from(f64))).toBe(true);
      expect(same(p.data.toFloat32Array(), w)).toBe(true);
    }
  });
});

describe('background saves', () => {
  it('return once the snapshot is taken; training goes on; the file holds the state at the call', async () => {
    const m = build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'TransformerLR', scale: 300 });
    m.train(0, 3);
    const atCall = fingerprint(m);
    const ids = new Int32Array([1, 2, 3]);
    const file = tmp('bg');
    const { written } = await saveCheckpoint(
      file,
      { params: m.params, optimizer: m.opt, scheduler: m.sched, extra: { ids } },
      { background: true },
    );
    // Not blocked: steps and param writes work while the file is written.
    m.train(3, 5);
    ids[0] = 99;
    await written;
    expect(fingerprint(m)).not.toEqual(atCall);
    const b = build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'TransformerLR', scale: 300, init: 4 });
    const extra = await loadCheckpoint(file, { params: b.params, optimizer: b.opt, scheduler: b.sched });
    expect(fingerprint(b)).toEqual(atCall);
    expect(extra).toEqual({ ids: new Int32Array([1, 2, 3]) });
  });

  it('a second save waits for the first; a load waits too', async () => {
    const m = build(lib, { kind: 'Lion', dtype: 'float32', scale: 300 });
    m.train(0, 1);
    const file = tmp('bg2');
    const order: string[] = [];
    const { written } = await saveCheckpoint(file, { params: m.params, extra: { n: 1 } }, { background: true });
    void written.then(() => order.push('written 1'));
    const second = saveCheckpoint(file, { params: m.params, extra: { n: 2 } }).then(() => order.push('saved 2'));
    const loaded = loadCheckpoint(file, { params: m.params }).then((x) => {
      order.push('loaded');
      return x;
    });
    await Promise.all([second, loaded]);
    expect(order).toEqual(['written 1', 'saved 2', 'loaded']);
    expect(await loaded).toEqual({ n: 2 });
  });

  it('a failure rejects written; unobserved, the next save throws it; observed, the next save goes on', async () => {
    const m = build(lib, { kind: 'Lion', dtype: 'float32' });
    const nowhere = join(dir, 'no', 'such', 'folder', 'x.safetensors');
    const file = tmp('bg3');
    // Unobserved (nothing awaits written): reported by the next save, once.
    await saveCheckpoint(nowhere, { params: m.params }, { background: true });
    const e = await saveCheckpoint(file, { params: m.params }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(CheckpointError);
    expect((e as CheckpointError).code).toBe('BackgroundSaveFailed');
    expect((e as Error).message).toMatch(/an earlier background save failed .*no\/such\/folder.*ENOENT/);
    expect(existsSync(file)).toBe(false);
    await saveCheckpoint(file, { params: m.params });
    // Observed: written rejects with the write's error, and the next save is not affected.
    const { written } = await saveCheckpoint(nowhere, { params: m.params }, { background: true });
    const w = await written.then(
      () => undefined,
      (x: unknown) => x,
    );
    expect((w as CheckpointError).code).toBe('WriteFailed');
    await saveCheckpoint(file, { params: m.params, extra: 3 });
    expect(await loadCheckpoint(file, { params: m.params })).toBe(3);
  });

  it('a background save of a large model returns before the file is written (its data is a copy)', async () => {
    const m = build(lib, { kind: 'AdamW', dtype: 'float32', scale: 3000 }); // ~70 MB file
    m.train(0, 1);
    const file = tmp('bg4');
    let done = false;
    const { written } = await saveCheckpoint(file, { params: m.params, optimizer: m.opt }, { background: true });
    void written.then(() => (done = true));
    m.train(1, 2); // would throw if the optimizer were still held
    await written;
    expect(done).toBe(true);
    const { tensors } = await readSafetensors(file);
    expect(Object.keys(tensors).length).toBeGreaterThan(4);
  });
});

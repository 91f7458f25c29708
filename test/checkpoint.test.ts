// saveCheckpoint / loadCheckpoint in one process: round trips for every optimizer, param
// dtype and scheduler (the loaded state equals the saved one bit for bit, and training on
// from it equals training on without a stop); the file's layout; by-name matching; extra;
// and bad files and bad calls, each rejected with a CheckpointError (or TypeError for a bad
// call) that names the file and the problem, leaving params, optimizer, scheduler and scaler
// exactly as they were.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as lib from '../src/index';
import {
  AdamW,
  CheckpointError,
  FusedOptimizer,
  Lion,
  Parameter,
  SafetensorsFile,
  Tensor,
  loadCheckpoint,
  readSafetensors,
  saveCheckpoint,
} from '../src/index';
import { temporaryPathFor } from '../src/checkpoint/atomic';
import {
  bytesOf,
  editHeader,
  fullManifest,
  joinFile,
  resealHeader,
  setFullManifest,
  splitFile,
  tempDir,
} from './support/checkpoint_files';
import type * as ModelTypes from './support/checkpoint_model.cjs';

const model = createRequire(__filename)('./support/checkpoint_model.cjs') as typeof ModelTypes;
const { build, fingerprint, KINDS, DTYPES, SCHEDULERS } = model;

const { dir, cleanup } = tempDir();
afterAll(cleanup);
let counter = 0;
const tmp = (name = 'ckpt') => join(dir, `${name}-${counter++}.safetensors`);

/** A duck-typed loss scaler (the GradScaler arrives in a later issue). */
class ToyScaler {
  scale = 65536;
  growthTracker = 0;
  refuse = false;
  stateDict() {
    return { scale: this.scale, _growth_tracker: this.growthTracker };
  }
  loadStateDict(sd: { scale: number; _growth_tracker: number }) {
    if (this.refuse) throw new Error('ToyScaler refuses');
    if (typeof sd?.scale !== 'number') throw new TypeError('ToyScaler: scale must be a number');
    this.scale = sd.scale;
    this.growthTracker = sd._growth_tracker;
  }
}

const hex = (crc: number) => crc.toString(16).padStart(8, '0');

/** Rewrites the manifest of a checkpoint and reseals its header CRC, keeping the file otherwise valid. */
function editManifest(file: string, edit: (manifest: Record<string, any>) => void, out: string): void {
  editHeader(
    file,
    (h) => {
      const m = fullManifest(h.__metadata__);
      edit(m);
      setFullManifest(h.__metadata__, m);
    },
    out,
  );
  resealHeader(out);
}

function everything(m: ModelTypes.Model, scaler?: ToyScaler) {
  return { ...fingerprint(m), scaler: scaler?.stateDict() };
}

describe('round trips: every optimizer x param dtype x scheduler', () => {
  for (const kind of KINDS) {
    for (const dtype of DTYPES) {
      it(`${kind}, ${dtype}: every scheduler; loaded state equals saved, and 10 more steps equal 20 uninterrupted`, async () => {
        for (const scheduler of SCHEDULERS) {
          const what = `${kind} ${dtype} ${scheduler}`;
          const a = build(lib, { kind, dtype, scheduler });
          a.train(0, 10);
          const file = tmp(`${kind}-${dtype}-${scheduler}`);
          const scaler = new ToyScaler();
          scaler.scale = 1024;
          await saveCheckpoint(file, {
            params: a.params,
            optimizer: a.opt,
            scheduler: a.sched ?? undefined,
            scaler,
            extra: { step: 10 },
          });

          const b = build(lib, { kind, dtype, scheduler, init: 99 }); // other initial values
          expect(fingerprint(b).params, what).not.toEqual(fingerprint(a).params);
          const bScaler = new ToyScaler();
          const extra = await loadCheckpoint(file, {
            params: b.params,
            optimizer: b.opt,
            scheduler: b.sched ?? undefined,
            scaler: bScaler,
          });
          expect(extra, what).toEqual({ step: 10 });
          expect(everything(b, bScaler), what).toEqual(everything(a, scaler));

          a.train(10, 20);
          b.train(10, 20);
          const c = build(lib, { kind, dtype, scheduler });
          c.train(0, 20);
          expect(fingerprint(b), what).toEqual(fingerprint(c));
          expect(fingerprint(a), what).toEqual(fingerprint(c));
        }
      });
    }
  }

  it('without master weights, and with params listed in another order (state follows names)', async () => {
    for (const kind of KINDS) {
      for (const dtype of ['bfloat16', 'float16'] as const) {
        const a = build(lib, { kind, dtype, scheduler: 'TransformerLR', masterWeights: false });
        a.train(0, 10);
        const file = tmp();
        await saveCheckpoint(file, { params: a.params, optimizer: a.opt, scheduler: a.sched });
        const b = build(lib, {
          kind,
          dtype,
          scheduler: 'TransformerLR',
          masterWeights: false,
          init: 5,
          reversed: true,
        });
        await loadCheckpoint(file, { params: [...b.params].reverse(), optimizer: b.opt, scheduler: b.sched });
        expect(fingerprint(b)).toEqual(fingerprint(a));
        a.train(10, 20);
        b.train(10, 20);
        expect(fingerprint(b), `${kind} ${dtype}`).toEqual(fingerprint(a));
      }
    }
  });

  it('params only (no optimizer), and a half param re-seeds its master from the loaded value', async () => {
    const a = build(lib, { kind: 'AdamW', dtype: 'bfloat16' });
    a.train(0, 3);
    const file = tmp();
    await saveCheckpoint(file, { params: a.params });
    const b = build(lib, { kind: 'AdamW', dtype: 'bfloat16', init: 3 });
    await loadCheckpoint(file, { params: b.params });
    expect(fingerprint(b).params).toEqual(fingerprint(a).params);
    expect(Object.keys(b.opt.stateDict().state)).toEqual([]);
    // Loading weights only also works when the file has optimizer state.
    const file2 = tmp();
    await saveCheckpoint(file2, { params: a.params, optimizer: a.opt });
    const c = build(lib, { kind: 'Lion', dtype: 'bfloat16', init: 4 });
    await loadCheckpoint(file2, { params: c.params });
    expect(fingerprint(c).params).toEqual(fingerprint(a).params);
  });
});

describe('the file', () => {
  it('is a safetensors file: params in their dtype, fp32 state by name, a manifest with CRC-32s', async () => {
    const m = build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'TransformerLR' });
    m.train(0, 3);
    const file = tmp();
    await saveCheckpoint(file, {
      params: m.params,
      optimizer: m.opt,
      scheduler: m.sched,
      extra: { note: 'hi', ids: new Int32Array([1, 2]) },
    });
    const { tensors, metadata } = await readSafetensors(file);
    expect(metadata.format).toBe('fused-optim/checkpoint');
    expect(metadata.format_version).toBe('2');
    const manifest = fullManifest(metadata);
    // The header's CRC, over the whole header with its own digits as zeros.
    const bytes = readFileSync(file);
    const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
    const sealed = Buffer.from(bytes.subarray(0, headerEnd));
    const at = sealed.indexOf(metadata['fused_optim.header_crc32']);
    expect(sealed.toString('latin1', 8, at)).toBe('{"__metadata__":{"fused_optim.header_crc32":"');
    sealed.write('00000000', at, 'latin1');
    expect(metadata['fused_optim.header_crc32']).toBe(hex(zlibCrc32(sealed)));
    const w = tensors['param.encoder.layers.0.attention.weight'];
    expect(w).toMatchObject({ dtype: 'BF16', shape: [37, 3] });
    expect(Array.from(w.data as Uint16Array)).toEqual(Array.from(m.params[0].data.toBits()));
    const sd = m.opt.stateDict();
    expect(
      Array.from(tensors['optimizer.state.encoder.layers.0.attention.weight.master'].data as Float32Array),
    ).toEqual(Array.from(sd.state[0].master as Float32Array));
    expect(tensors['extra.ids'].dtype).toBe('I32');
    // One CRC per tensor, in file order.
    const f0 = await SafetensorsFile.open(file);
    const crcs = f0.names.map((name) => hex(zlibCrc32(bytesOf(tensors[name].data))));
    await f0.close();
    expect(metadata['fused_optim.tensor_crc32']).toBe(crcs.join(''));
    expect(manifest).not.toHaveProperty('tensors');
    expect(manifest.optimizer.class).toBe('AdamW');
    expect(manifest.optimizer.param_groups[0].param_names).toEqual([
      'encoder.layers.0.attention.weight',
      'embeddings.word_embeddings.weight',
    ]);
    expect(manifest.optimizer.param_groups[0].params).toEqual([0, 1]);
    expect(manifest.optimizer.param_groups[0].dict).toMatchObject({
      weight_decay: 0.1,
      amsgrad: true,
      betas: [0.9, 0.99],
    });
    expect(manifest.optimizer.state['encoder.layers.1.output.bias']).toEqual({
      step: 3,
      exp_avg: { $tensor: 'optimizer.state.encoder.layers.1.output.bias.exp_avg' },
      exp_avg_sq: { $tensor: 'optimizer.state.encoder.layers.1.output.bias.exp_avg_sq' },
      master: { $tensor: 'optimizer.state.encoder.layers.1.output.bias.master' },
    });
    expect(manifest.optimizer.state).not.toHaveProperty('head.late.weight'); // never stepped
    expect(manifest.scheduler).toMatchObject({ class: 'TransformerLR', state_dict: { last_epoch: 3, d_model: 64 } });
    expect(manifest.extra).toEqual({ note: 'hi', ids: { $tensor: 'extra.ids' } });
    const f = await SafetensorsFile.open(file);
    for (const [, info] of f.tensors) expect(info.dataOffsets[0] % (info.dtype === 'BF16' ? 2 : 4)).toBe(0);
    await f.close();
  });

  it('streams params and state from native memory: no host copy of a tensor, no stateDict()', async () => {
    const m = build(lib, { kind: 'AdamW', dtype: 'float16' });
    m.train(0, 2);
    const copies: string[] = [];
    const restore: Array<() => void> = [];
    const spy = (o: object, method: string, what: string) => {
      const original = (o as Record<string, (...a: unknown[]) => unknown>)[method];
      Object.defineProperty(o, method, {
        value: function (this: unknown, ...a: unknown[]) {
          copies.push(what);
          return original.apply(this, a);
        },
        configurable: true,
        writable: true,
      });
      restore.push(() => Object.defineProperty(o, method, { value: original, configurable: true, writable: true }));
    };
    const b = build(lib, { kind: 'AdamW', dtype: 'float16', init: 4 });
    for (const x of [m, b]) {
      for (const p of x.params) {
        spy(p.data, 'toBits', `toBits ${p.name}`);
        spy(p.data, 'toFloat32Array', `toFloat32Array ${p.name}`);
        spy(p.data, 'copyFrom', `copyFrom ${p.name}`);
      }
    }
    // On the prototype: an override on the instance would be a subclass's own state dict.
    spy(FusedOptimizer.prototype, 'stateDict', 'stateDict');
    spy(FusedOptimizer.prototype, 'loadStateDict', 'loadStateDict');
    const file = tmp();
    try {
      await saveCheckpoint(file, { params: m.params, optimizer: m.opt });
      await loadCheckpoint(file, { params: b.params, optimizer: b.opt });
    } finally {
      for (const r of restore.reverse()) r();
    }
    expect(copies).toEqual([]);
    expect(fingerprint(b)).toEqual(fingerprint(m));
    const f = await SafetensorsFile.open(file);
    expect(f.names.filter((n) => n.startsWith('param.'))).toEqual(m.params.map((p) => `param.${p.name}`));
    await f.close();
  });

  it('extra: JSON values, typed arrays, NaN, -0, bigints, $ keys and __proto__ come back as saved', async () => {
    const m = build(lib, { kind: 'Lion', dtype: 'float32' });
    const extra = {
      epoch: 3,
      neg0: -0,
      specials: [NaN, Infinity, -Infinity, 1e-310, Number.MAX_VALUE],
      big: 2n ** 70n,
      nested: { a: [1, 'two', null, true, { b: new Float64Array([1.5, -2]) }], $tensor: 'not a tensor', $$x: 1 },
      arrays: {
        f32: new Float32Array([1, NaN]),
        i64: new BigInt64Array([-3n]),
        u8: new Uint8Array([7]),
        u16: new Uint16Array([0xffff]),
        i8: new Int8Array([-1]),
      },
      skipped: undefined,
      ['__proto__']: 'own',
    };
    Object.defineProperty(extra, '__proto__', { value: { polluted: true }, enumerable: true });
    const file = tmp();
    await saveCheckpoint(file, { params: m.params, extra });
    const back = (await loadCheckpoint(file, { params: m.params })) as Record<string, any>;
    expect(Object.is(back.neg0, -0)).toBe(true);
    expect(back.specials).toEqual([NaN, Infinity, -Infinity, 1e-310, Number.MAX_VALUE]);
    expect(back.big).toBe(2n ** 70n);
    expect(back.nested.a[4].b).toEqual(new Float64Array([1.5, -2]));
    expect(back.nested.$tensor).toBe('not a tensor');
    expect(back.nested.$$x).toBe(1);
    expect(back.arrays.f32).toBeInstanceOf(Float32Array);
    expect(Array.from(back.arrays.f32)).toEqual([1, NaN]);
    expect(back.arrays.i64).toEqual(new BigInt64Array([-3n]));
    expect(back.arrays.u16).toEqual(new Uint16Array([0xffff]));
    expect(back.arrays.i8).toEqual(new Int8Array([-1]));
    expect('skipped' in back).toBe(false);
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toEqual({ polluted: true });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(
      await loadCheckpoint(
        await (async () => {
          const f = tmp();
          await saveCheckpoint(f, { params: m.params });
          return f;
        })(),
        { params: m.params },
      ),
    ).toBeUndefined();
  });

  it('extra that a checkpoint cannot hold is a TypeError, and no file is written', async () => {
    const m = build(lib, { kind: 'Lion', dtype: 'float32' });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const cases: Array<[unknown, RegExp]> = [
      [{ when: new Date() }, /extra\.when is a Date/],
      [{ m: new Map() }, /extra\.m is a Map/],
      [{ f: () => 1 }, /extra\.f is a function/],
      [cyclic, /extra\.self refers to itself/],
      [{ c: new Uint8ClampedArray(1) }, /Uint8ClampedArray/],
      [{ s: Symbol('x') }, /symbol/],
    ];
    for (const [extra, message] of cases) {
      const file = tmp();
      await expect(saveCheckpoint(file, { params: m.params, extra })).rejects.toThrow(message);
      expect(existsSync(file)).toBe(false);
    }
  });

  it('optimizer state dict entries beyond state and param_groups (e.g. an RNG stream) are saved and restored', async () => {
    class AdamWWithRng extends AdamW {
      rng = { seed: 0, counter: 0 };
      override stateDict() {
        return { ...super.stateDict(), rng: { ...this.rng } };
      }
      override loadStateDict(sd: ReturnType<AdamWWithRng['stateDict']>) {
        super.loadStateDict(sd);
        this.rng = { ...sd.rng };
      }
    }
    const p = () => [new Parameter(Tensor.from([1, 2, 3]), { name: 'w' })];
    const a = new AdamWWithRng(p());
    a.rng = { seed: 7, counter: 2 ** 40 + 3 };
    const file = tmp();
    await saveCheckpoint(file, { params: a.paramGroups[0].params, optimizer: a });
    const b = new AdamWWithRng(p());
    await loadCheckpoint(file, { params: b.paramGroups[0].params, optimizer: b });
    expect(b.rng).toEqual({ seed: 7, counter: 2 ** 40 + 3 });
  });

  it('a step, a state change or a param write during a save is refused; the save writes the state it started with', async () => {
    const m = build(lib, { kind: 'AdamW', dtype: 'float32', scale: 1000 }); // 1.1M params: a save of a few ms
    m.train(0, 2);
    const before = fingerprint(m);
    const sd = m.opt.stateDict();
    const file = tmp();
    let done = false;
    const saving = saveCheckpoint(file, { params: m.params, optimizer: m.opt, extra: { v: 2 } }).finally(
      () => (done = true),
    );
    // Reloading the same dict changes nothing when it is allowed: poll with it until the
    // save holds the optimizer, then try the rest in the same synchronous block.
    let refused: unknown;
    while (!done && !refused) {
      try {
        m.opt.loadStateDict(sd);
      } catch (e) {
        refused = e;
        expect(() => m.opt.step()).toThrow(
          /cannot step while a checkpoint save or load is reading or writing this optimizer/,
        );
        expect(() => m.params[0].data.copyFrom(new Float32Array(m.params[0].data.numel))).toThrow(/in use/);
      }
      await new Promise((r) => setImmediate(r));
    }
    await saving;
    expect(String(refused)).toMatch(/cannot load optimizer state while a checkpoint save or load/);
    expect(fingerprint(m)).toEqual(before);
    const b = build(lib, { kind: 'AdamW', dtype: 'float32', scale: 1000, init: 7 });
    expect(await loadCheckpoint(file, { params: b.params, optimizer: b.opt })).toEqual({ v: 2 });
    expect(fingerprint(b)).toEqual(before);
    m.train(2, 3); // and it steps again once the save is done
  });

  it('saveCheckpoint and loadCheckpoint while a stepAsync() runs: a CheckpointError naming the file', async () => {
    const m = build(lib, { kind: 'AdamW', dtype: 'float32' });
    m.train(0, 1);
    const file = tmp();
    m.grads(1);
    const stepping = m.opt.stepAsync();
    const e = await saveCheckpoint(file, { params: m.params, optimizer: m.opt }).then(
      () => undefined,
      (x: unknown) => x,
    );
    await stepping;
    expect(e).toBeInstanceOf(CheckpointError);
    expect((e as CheckpointError).code).toBe('Busy');
    expect((e as CheckpointError).file).toBe(file);
    expect((e as Error).message).toMatch(
      /^saveCheckpoint: .*: a stepAsync\(\) is running: await it before saving or loading/,
    );
    expect(existsSync(file)).toBe(false);
    await saveCheckpoint(file, { params: m.params, optimizer: m.opt });
    const stepping2 = m.opt.stepAsync();
    const e2 = await loadCheckpoint(file, { params: m.params, optimizer: m.opt }).then(
      () => undefined,
      (x: unknown) => x,
    );
    await stepping2;
    expect((e2 as CheckpointError).code).toBe('Busy');
  });

  it("a successful save removes temporary files that dead processes of this host left, and keeps live ones'", async () => {
    const m = build(lib, { kind: 'Lion', dtype: 'float32' });
    const file = tmp();
    const dead = temporaryPathFor(file, 2 ** 22 + 12345); // above Linux's pid_max default
    const live = temporaryPathFor(file, 1);
    writeFileSync(dead, 'partial');
    writeFileSync(live, 'partial');
    await saveCheckpoint(file, { params: m.params });
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
    await loadCheckpoint(file, { params: m.params });
  });
});

describe('by name, strict, and the checks before anything changes', () => {
  async function saved(kind: ModelTypes.Kind = 'AdamW', dtype: lib.DType = 'bfloat16') {
    const a = build(lib, { kind, dtype, scheduler: 'TransformerLR' });
    a.train(0, 10);
    const file = tmp();
    await saveCheckpoint(file, {
      params: a.params,
      optimizer: a.opt,
      scheduler: a.sched,
      scaler: new ToyScaler(),
      extra: { step: 10 },
    });
    return { a, file };
  }

  /** Runs `load`, which must fail with `message`, and checks that nothing changed. */
  async function rejects(
    file: string,
    message: RegExp,
    target?: ModelTypes.Model,
    extra: { scaler?: ToyScaler; errorType?: typeof Error } = {},
  ) {
    const b = target ?? build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'TransformerLR', init: 42 });
    b.train(0, 2); // some state of its own
    const scaler = extra.scaler ?? new ToyScaler();
    scaler.scale = 8;
    const before = everything(b, scaler);
    const err = await loadCheckpoint(file, { params: b.params, optimizer: b.opt, scheduler: b.sched, scaler }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, String(message)).toBeInstanceOf(extra.errorType ?? CheckpointError);
    expect((err as Error).message).toMatch(message);
    if (err instanceof CheckpointError) {
      expect(err.file).toBe(file);
      expect(err.message.startsWith(`loadCheckpoint: ${file}: `)).toBe(true);
    }
    expect(everything(b, scaler), String(message)).toEqual(before);
    return err as CheckpointError;
  }

  it('a missing file, an empty file, a truncated file, a foreign file', async () => {
    const { file } = await saved();
    const bytes = readFileSync(file);
    await rejects(join(dir, 'nope.safetensors'), /cannot open the file \(ENOENT\)/);
    const empty = tmp();
    writeFileSync(empty, '');
    await rejects(empty, /the file is empty/);
    for (const cut of [3, 8, 100, bytes.length >> 1, bytes.length - 1]) {
      const t = tmp();
      writeFileSync(t, bytes.subarray(0, cut));
      await rejects(t, /too short|has only \d+ bytes after|ends at byte|cover \d+ bytes/);
    }
    const png = tmp();
    writeFileSync(png, Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex'));
    await rejects(png, /over the 100000000-byte limit/);
    // A valid safetensors file that is not a checkpoint.
    await rejects(join(__dirname, 'fixtures', 'safetensors_hf.safetensors'), /not a fused-optim checkpoint/);
  });

  it('an oversized header length, a bad JSON header, an out-of-bounds offset', async () => {
    const { file } = await saved();
    const bytes = readFileSync(file);
    const big = Buffer.from(bytes);
    big.writeBigUInt64LE(200_000_000n, 0);
    const t1 = tmp();
    writeFileSync(t1, big);
    await rejects(t1, /header length is 200000000 bytes, over the 100000000-byte limit/);
    const { headerText, data } = splitFile(bytes);
    const t2 = tmp();
    writeFileSync(t2, joinFile(headerText.replace('"dtype"', '"dtype":'), data));
    await rejects(t2, /the header is not valid JSON/);
    const t3 = tmp();
    editHeader(
      file,
      (h) => {
        const [name] = Object.keys(h)
          .filter((k) => k !== '__metadata__')
          .slice(-1);
        h[name].data_offsets[1] += 4;
        h[name].shape[0] += 2;
      },
      t3,
    );
    await rejects(t3, /ends at byte \d+ but the data is only \d+ bytes/);
  });

  it('a flipped bit in a tensor, in the manifest, or in the header', async () => {
    const { file } = await saved();
    const bytes = readFileSync(file);
    const { headerText, data } = splitFile(bytes);
    const dataStart = bytes.length - data.length;
    for (const at of [dataStart, dataStart + 1000, bytes.length - 1]) {
      const t = tmp();
      const flipped = Buffer.from(bytes);
      flipped[at] ^= 0x10;
      writeFileSync(t, flipped);
      await rejects(t, /fails its checksum \(stored crc32 [0-9a-f]{8}, computed [0-9a-f]{8}\): the file is corrupt/);
    }
    // A digit of a hyperparameter inside the manifest: valid JSON, caught by the header's CRC.
    const t = tmp();
    writeFileSync(t, joinFile(headerText.replace('\\"weight_decay\\":0.1', '\\"weight_decay\\":0.3'), data));
    expect((await rejects(t, /the header fails its checksum/)).code).toBe('ChecksumMismatch');
    // A tensor's dtype in the header (a consistent header otherwise): caught by the header's CRC,
    // and when resealed (a tool that rewrote the header), by what the optimizer accepts.
    const t2 = tmp();
    const name = 'optimizer.state.encoder.layers.1.output.bias.exp_avg';
    editHeader(file, (h) => (h[name].dtype = 'I32'), t2);
    await rejects(t2, /the header fails its checksum/);
    resealHeader(t2);
    expect((await rejects(t2, /is I32; optimizer state must be a float type/)).code).toBe('OptimizerMismatch');
    // A flipped digit in the list of tensor CRCs.
    const t3 = tmp();
    editHeader(
      file,
      (h) => (h.__metadata__['fused_optim.tensor_crc32'] = '0' + h.__metadata__['fused_optim.tensor_crc32'].slice(1)),
      t3,
    );
    resealHeader(t3);
    await rejects(t3, /fails its checksum \(stored crc32 0/);
    // A header rewritten with its keys in another order.
    const t4 = tmp();
    editHeader(file, (h) => (h.__metadata__ = { format: h.__metadata__.format, ...h.__metadata__ }), t4);
    await rejects(t4, /header_crc32 is missing or not where fused-optim writes it/);
  });

  it('a checkpoint format from a newer version, and a file without the manifest', async () => {
    const { file } = await saved();
    const t = tmp();
    editHeader(file, (h) => (h.__metadata__.format_version = '4'), t);
    expect(
      (await rejects(t, /format version 4, by a newer fused-optim; this version reads versions 1 to 3/)).code,
    ).toBe('UnsupportedVersion');
    const t2 = tmp();
    editHeader(file, (h) => delete h.__metadata__['fused_optim.manifest'], t2);
    await rejects(t2, /no fused_optim\.manifest/);
  });

  it('params that do not fit: shape, dtype, missing, unexpected (strict), and strict: false', async () => {
    const { a, file } = await saved('AdamW', 'float32');
    const fresh = () => build(lib, { kind: 'AdamW', dtype: 'float32', scheduler: 'TransformerLR', init: 42 });
    await rejects(file, /param 'encoder\.layers\.0\.attention\.weight' is float32 in the checkpoint but bfloat16 here/);
    // Shape: the same names and sizes except one.
    const b = fresh();
    const other = new Parameter(Tensor.zeros([3, 37]), { name: 'encoder.layers.0.attention.weight' });
    const err = await loadCheckpoint(file, { params: [other, ...b.params.slice(1)] }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/has shape \[37, 3\] in the checkpoint but \[3, 37\] here/);
    // Missing in the checkpoint / not among params.
    const c = fresh();
    const extraParam = new Parameter(Tensor.zeros([2]), { name: 'not.saved' });
    const e2 = await loadCheckpoint(file, { params: [...c.params, extraParam] }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(e2?.message).toMatch(/the checkpoint has no param 'not\.saved' \(pass strict: false/);
    const e3 = await loadCheckpoint(file, { params: c.params.slice(1) }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(e3?.message).toMatch(/has param 'encoder\.layers\.0\.attention\.weight', which is not among params/);
    // strict: false loads what matches.
    await loadCheckpoint(file, { params: [...c.params.slice(1), extraParam], strict: false });
    expect(fingerprint(c).params['encoder.layers.1.output.bias']).toEqual(
      fingerprint(a).params['encoder.layers.1.output.bias'],
    );
    expect(fingerprint(c).params['encoder.layers.0.attention.weight']).not.toEqual(
      fingerprint(a).params['encoder.layers.0.attention.weight'],
    );
  });

  it('an optimizer, scheduler or scaler that does not fit', async () => {
    const { file } = await saved();
    await rejects(
      file,
      /the checkpoint holds the state of a AdamW but the optimizer is a Lion/,
      build(lib, { kind: 'Lion', dtype: 'bfloat16', scheduler: 'TransformerLR' }),
    );
    await rejects(
      file,
      /the checkpoint holds the state of a TransformerLR scheduler but the scheduler is a LinearLR/,
      build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'LinearLR' }),
    );
    // Groups: the same params, in one group.
    const b = build(lib, { kind: 'AdamW', dtype: 'bfloat16', init: 3 });
    const one = new AdamW(b.params);
    const e1 = await loadCheckpoint(file, { params: b.params, optimizer: one }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(e1?.message).toMatch(/the checkpoint has 2 param groups but the optimizer has 1/);
    // A param moved to the other group.
    const c = build(lib, { kind: 'AdamW', dtype: 'bfloat16', init: 3 });
    const moved = new AdamW([{ params: [c.params[0], c.params[1]] }, { params: [c.params[2], c.params[3]] }]);
    const e2 = await loadCheckpoint(file, { params: c.params, optimizer: moved }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(e2?.message).toMatch(
      /param 'embeddings\.word_embeddings\.weight' is in param group 0 in the checkpoint but in group 1/,
    );
    // Asked for parts the file does not have.
    const t = tmp();
    await saveCheckpoint(t, { params: b.params });
    await rejects(
      t,
      /the checkpoint has no optimizer state/,
      build(lib, { kind: 'AdamW', dtype: 'bfloat16', scheduler: 'TransformerLR', init: 3 }),
    );
    const t2 = tmp();
    await saveCheckpoint(t2, { params: b.params, optimizer: b.opt });
    const d = build(lib, { kind: 'AdamW', dtype: 'bfloat16', init: 3 });
    const e3 = await loadCheckpoint(t2, { params: d.params, optimizer: d.opt, scaler: new ToyScaler() }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(e3?.message).toMatch(/the checkpoint has no scaler state/);
    // A scheduler dict that the scheduler refuses (checked before anything changes).
    const t3 = tmp();
    editManifest(file, (m) => (m.scheduler.state_dict.base_lrs = [0.1]), t3);
    await rejects(
      t3,
      /the scheduler's state does not fit the scheduler \(TransformerLR\.loadStateDict: base_lrs has 1 entries but 2 were expected/,
    );
    // State tensors of the wrong length for their param (consistent file, wrong manifest).
    const t4 = tmp();
    editManifest(
      file,
      (m) => {
        const st = m.optimizer.state;
        st['encoder.layers.1.output.bias'].exp_avg = st['encoder.layers.0.attention.weight'].exp_avg;
        st['encoder.layers.0.attention.weight'].exp_avg = {
          $tensor: 'optimizer.state.encoder.layers.1.output.bias.exp_avg',
        };
      },
      t4,
    );
    await rejects(
      t4,
      /optimizer state of param 'encoder\.layers\.0\.attention\.weight'.exp_avg has 5 elements but the param has 111/,
    );
    // A tensor nothing refers to, and one referred to twice.
    const t5 = tmp();
    editManifest(file, (m) => delete m.optimizer.state['encoder.layers.1.output.bias'].master, t5);
    await rejects(
      t5,
      /tensor "optimizer\.state\.encoder\.layers\.1\.output\.bias\.master" belongs to nothing in the manifest/,
    );
    const t6 = tmp();
    editManifest(file, (m) => (m.extra.again = { $tensor: 'param.encoder.layers.1.output.bias' }), t6);
    await rejects(t6, /tensor "param\.encoder\.layers\.1\.output\.bias" is used twice/);
  });

  it('a part that refuses its state while being applied undoes the parts before it', async () => {
    const { file } = await saved();
    // The scaler refuses: nothing else has changed yet.
    const scaler = new ToyScaler();
    scaler.refuse = true;
    await rejects(file, /the scaler rejected its state \(ToyScaler refuses\); nothing was changed/, undefined, {
      scaler,
    });
    // The optimizer refuses (its params keep no masters, the file has them): the scaler,
    // already loaded, is put back.
    const noMasters = build(lib, {
      kind: 'AdamW',
      dtype: 'bfloat16',
      scheduler: 'TransformerLR',
      masterWeights: false,
      init: 3,
    });
    const err = await rejects(
      file,
      /the optimizer rejected its state \(.*keeps no master weights.*\); nothing was changed/,
      noMasters,
    );
    expect(err).toBeInstanceOf(CheckpointError);
  });

  it('bad calls are TypeErrors, before any file is touched', async () => {
    const m = build(lib, { kind: 'AdamW', dtype: 'float32' });
    const file = tmp();
    const unnamed = new Parameter(Tensor.zeros([2]));
    await expect(saveCheckpoint(file, { params: [unnamed] })).rejects.toThrow(/params\[0\] has no name/);
    await expect(
      saveCheckpoint(file, { params: [m.params[0], new Parameter(Tensor.zeros([2]), { name: m.params[0].name })] }),
    ).rejects.toThrow(/two params are named/);
    await expect(saveCheckpoint(file, { params: [m.params[0], m.params[0]] })).rejects.toThrow(/is listed twice/);
    await expect(saveCheckpoint(file, { params: m.params.slice(1), optimizer: m.opt })).rejects.toThrow(
      /the optimizer's param 'encoder\.layers\.0\.attention\.weight' is not among params/,
    );
    await expect(saveCheckpoint(file, { params: m.params, scheduler: {} as never })).rejects.toThrow(
      /scheduler must have stateDict\(\) and loadStateDict\(\)/,
    );
    await expect(saveCheckpoint(file, { params: 5 as never })).rejects.toThrow(TypeError);
    await expect(saveCheckpoint('', { params: m.params })).rejects.toThrow(/non-empty path/);
    await expect(loadCheckpoint(file, { params: [unnamed] })).rejects.toThrow(TypeError);
    await expect(loadCheckpoint(file, { params: m.params, strict: 'no' as never })).rejects.toThrow(
      /strict must be a boolean/,
    );
    expect(existsSync(file)).toBe(false);
    // A folder that does not exist: a CheckpointError naming the file.
    const nowhere = join(dir, 'no', 'such', 'folder', 'x.safetensors');
    const e = await saveCheckpoint(nowhere, { params: m.params }).then(
      () => undefined,
      (x: Error) => x,
    );
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e?.message).toMatch(
      new RegExp(
        `^saveCheckpoint: ${nowhere.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: .*ENOENT.*the previous file \\(if any\\) is unchanged`,
      ),
    );
  });
});

describe('Lion: a checkpoint loads into the same optimizer only', () => {
  it('Lion to Lion resumes; Lion into AdamW is refused', async () => {
    const a = build(lib, { kind: 'Lion', dtype: 'bfloat16', scheduler: 'CosineAnnealingLR' });
    a.train(0, 4);
    const file = tmp();
    await saveCheckpoint(file, { params: a.params, optimizer: a.opt, scheduler: a.sched });
    const b = build(lib, { kind: 'AdamW', dtype: 'bfloat16', init: 2 });
    const e = await loadCheckpoint(file, { params: b.params, optimizer: b.opt }).then(
      () => undefined,
      (x: Error) => x,
    );
    expect(e?.message).toMatch(/holds the state of a Lion but the optimizer is a AdamW/);
    const c = build(lib, { kind: 'Lion', dtype: 'bfloat16', scheduler: 'CosineAnnealingLR', init: 2 });
    await loadCheckpoint(file, { params: c.params, optimizer: c.opt, scheduler: c.sched });
    expect(c.opt).toBeInstanceOf(Lion);
    expect(fingerprint(c)).toEqual(fingerprint(a));
  });
});

// The stateDtype / stateBlockSize options of the TypeScript optimizers: validation (bad
// values, unknown keys, per group, changed between steps), stateBytes() against the buffer
// layout of native/common/state_dtype.h, state dicts in each dtype (own dtype bit for bit,
// fp32 on request, cross-dtype loads), checkpoints of low-bit state, exact resume, and a
// stateDtype changed mid-run. The 8-bit and bf16 arithmetic itself is checked against a
// reference elsewhere (the lead's suites); here, that state travels and converts intact.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import {
  AdamW,
  AdamWDL,
  type DType,
  Lion,
  MIN_QUANTIZED_NUMEL,
  Parameter,
  SGD,
  STATE_DTYPES,
  type StateDtype,
  Tensor,
  type CheckpointError,
  loadCheckpoint,
  saveCheckpoint,
} from '../src/index';
import { native } from '../src/native';
import type { FusedOptimizer } from '../src/fused_optimizer';
import type { ParamGroup } from '../src/optimizer';
import { expectThrows } from './support/expect_throws';
import { randn, rng } from './support/random';
import { editHeader, resealHeader, splitFile, tempDir } from './support/checkpoint_files';

type Any = FusedOptimizer<ParamGroup, Record<string, unknown>, object>;
type Kind = 'AdamW' | 'AdamWDL' | 'Lion' | 'SGD';
const KINDS: Kind[] = ['AdamW', 'AdamWDL', 'Lion', 'SGD'];
// State buffers per kind (SGD with momentum), for the byte counts.
const BUFFERS: Record<Kind, number> = { AdamW: 2, AdamWDL: 2, Lion: 1, SGD: 1 };

// Odd sizes: 1, 3, just under and at the 8-bit threshold, a partial last block, more than
// one 65536-element chunk; and a bfloat16 param (fp32 master) above the threshold.
const SIZES = [1, 3, MIN_QUANTIZED_NUMEL - 1, MIN_QUANTIZED_NUMEL, 5000, 70001];
const SPECS: Array<{ n: number; dtype: DType }> = [
  ...SIZES.map((n) => ({ n, dtype: 'float32' as DType })),
  { n: 5003, dtype: 'bfloat16' },
];

function makeParams(seed: number): Parameter[] {
  const next = rng(seed);
  return SPECS.map(
    (s, i) => new Parameter(Tensor.from(randn(s.n, next, 0.5), { dtype: s.dtype }), { name: `p${i}.n${s.n}` }),
  );
}

function make(kind: Kind, params: Parameter[], options: Record<string, unknown> = {}): Any {
  const groups = [{ params: params.slice(0, 4) }, { params: params.slice(4), lr: 0.02 }];
  switch (kind) {
    case 'AdamW':
      return new AdamW(groups, { lr: 0.01, ...options }) as unknown as Any;
    case 'AdamWDL':
      return new AdamWDL(groups, { lr: 0.01, layerwiseDecay: 0.9, nLayers: 2, ...options }) as unknown as Any;
    case 'Lion':
      return new Lion(groups, { lr: 0.001, ...options }) as unknown as Any;
    case 'SGD':
      return new SGD(groups, { lr: 0.01, momentum: 0.9, ...options }) as unknown as Any;
  }
}

/** Deterministic grads for step s; the param at index 2 has none on odd steps. */
function setGrads(params: Parameter[], s: number): void {
  params.forEach((p, i) => {
    if (i === 2 && s % 2 === 1) {
      p.grad = null;
      return;
    }
    const next = rng(1000 * s + i + 1);
    p.grad = Tensor.from(randn(p.data.numel, next, 0.1));
  });
}

function run(opt: Any, params: Parameter[], from: number, to: number): void {
  for (let s = from; s < to; s++) {
    setGrads(params, s);
    opt.step();
  }
}

/** Each param's value as raw bits (fp32 or bf16). */
function paramBits(params: Parameter[]): Array<Uint32Array | Uint16Array> {
  return params.map((p) => {
    if (p.data.dtype !== 'float32') return p.data.toBits();
    const f = p.data.toFloat32Array();
    return new Uint32Array(f.buffer, f.byteOffset, f.length);
  });
}

/** A state dict's buffers as bytes, for bit-for-bit comparisons. */
function stateBytesOf(sd: { state: Record<number, object> }): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [i, s] of Object.entries(sd.state))
    for (const [k, v] of Object.entries(s))
      out[`${i}.${k}`] = ArrayBuffer.isView(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex') : v;
  return out;
}

// native/common/state_dtype.h: the bytes of one state buffer of n elements.
function bufferBytes(dtype: StateDtype, n: number, block: number): number {
  const effective = dtype === 'uint8' && n < MIN_QUANTIZED_NUMEL ? 'float32' : dtype;
  if (effective === 'float32') return 4 * n;
  if (effective === 'bfloat16') return 2 * n;
  return Math.ceil(n / 64) * 64 + 4 * Math.ceil(n / block);
}

describe('stateDtype options', () => {
  it('the addon exports the state dtype names in their code order', () => {
    expect(native().layouts.stateDtypes).toEqual([...STATE_DTYPES]);
  });

  for (const kind of KINDS) {
    it(`${kind}: bad values, unknown keys and per-group values are refused with the option and group named`, () => {
      const params = makeParams(1);
      expectThrows(() => make(kind, params, { stateDtype: 'int8' }), TypeError, [
        new RegExp(`${kind} options: stateDtype must be one of 'float32', 'bfloat16' or 'uint8'`),
        /int8/,
      ]);
      expectThrows(() => make(kind, params, { stateDtype: 'uint8', stateBlockSize: 512 }), TypeError, [
        /stateBlockSize must be one of 256 or 2048/,
      ]);
      expectThrows(() => make(kind, params, { stateBlockSize: '256' }), TypeError, [/stateBlockSize/]);
      expectThrows(() => make(kind, params, { stateDtypes: 'uint8' }), Error, [/stateDtypes/]);
      const groups = [{ params: params.slice(0, 4) }, { params: params.slice(4), stateDtype: 'fp16' }];
      const ctor = { AdamW, AdamWDL, Lion, SGD }[kind] as unknown as new (g: unknown, o?: unknown) => Any;
      expectThrows(() => new ctor(groups, { lr: 0.01 }), TypeError, [/param group 1: stateDtype must be one of/]);
      expectThrows(
        () => new ctor([{ params, state_dtype: 'uint8' }], { lr: 0.01 }),
        Error,
        [/state_dtype/],
        'a snake_case group key is unknown',
      );
    });

    it(`${kind}: a bad stateDtype set between steps is refused by the next step, which changes nothing`, () => {
      const params = makeParams(2);
      const opt = make(kind, params, { stateDtype: 'bfloat16' });
      run(opt, params, 0, 2);
      const before = stateBytesOf(opt.stateDict());
      const bytes = opt.stateBytes();
      opt.paramGroups[1].stateDtype = 'uint4';
      setGrads(params, 2);
      expectThrows(() => opt.step(), TypeError, [/paramGroups\[1\]: stateDtype must be one of/]);
      opt.paramGroups[1].stateDtype = 'uint8';
      opt.paramGroups[0].stateBlockSize = 1024;
      expectThrows(() => opt.step(), TypeError, [/paramGroups\[0\]: stateBlockSize must be one of 256 or 2048/]);
      expect(stateBytesOf(opt.stateDict())).toEqual(before);
      expect(opt.stateBytes()).toBe(bytes);
    });
  }

  it('stateDict options: only stateDtype float32, unknown keys refused', () => {
    const params = makeParams(3);
    const opt = make('AdamW', params);
    run(opt, params, 0, 1);
    expectThrows(() => opt.stateDict({ stateDtype: 'uint8' } as never), TypeError, [
      /stateDict: options.stateDtype must be one of 'float32'/,
    ]);
    expectThrows(() => opt.stateDict({ dtype: 'float32' } as never), Error, [/dtype/]);
  });
});

describe('stateBytes() against the layout', () => {
  for (const kind of KINDS)
    for (const stateDtype of STATE_DTYPES)
      for (const block of stateDtype === 'uint8' ? [256, 2048] : [256]) {
        it(`${kind}, ${stateDtype}${stateDtype === 'uint8' ? `, blocks of ${block}` : ''}`, () => {
          const params = makeParams(4);
          const opt = make(kind, params, { stateDtype, stateBlockSize: block });
          expect(opt.stateBytes()).toBe(0);
          run(opt, params, 0, 1);
          // Param 2 had a grad at step 0, so every param has state now.
          const expected = SPECS.reduce((sum, s) => sum + BUFFERS[kind] * bufferBytes(stateDtype, s.n, block), 0);
          expect(opt.stateBytes()).toBe(expected);
        });
      }

  it('AdamW on fp32 params: 8 bytes of state per element in fp32, 4 in bf16, about 2 + 8/256 in uint8', () => {
    const n = 70001;
    const perElement = (stateDtype: StateDtype) => {
      const p = new Parameter(Tensor.from(randn(n, rng(5))), { name: 'w' });
      const opt = new AdamW([p], { stateDtype });
      p.grad = Tensor.from(randn(n, rng(6)));
      opt.step();
      return opt.stateBytes() / n;
    };
    expect(perElement('float32')).toBe(8);
    expect(perElement('bfloat16')).toBe(4);
    const u8 = perElement('uint8');
    expect(u8).toBeGreaterThan(2 + 8 / 256);
    expect(u8).toBeLessThan(2 + 8 / 256 + 0.002); // the codes' padding to 64 bytes, the partial block
  });

  it('a small param keeps fp32 state under uint8; amsgrad adds a third buffer', () => {
    const small = new Parameter(Tensor.from(randn(MIN_QUANTIZED_NUMEL - 1, rng(7))), { name: 's' });
    const big = new Parameter(Tensor.from(randn(MIN_QUANTIZED_NUMEL, rng(8))), { name: 'b' });
    const opt = new AdamW([small, big], { stateDtype: 'uint8', amsgrad: true });
    small.grad = Tensor.from(randn(small.data.numel, rng(9)));
    big.grad = Tensor.from(randn(big.data.numel, rng(10)));
    opt.step();
    expect(opt.stateBytes()).toBe(3 * 4 * (MIN_QUANTIZED_NUMEL - 1) + 3 * (MIN_QUANTIZED_NUMEL + 4 * 16));
    const sd = opt.stateDict();
    expect(sd.state[0].stateDtype).toBeUndefined();
    expect(sd.state[0].exp_avg).toBeInstanceOf(Float32Array);
    expect(sd.state[1].stateDtype).toBe('uint8');
    expect(sd.state[1].max_exp_avg_sq).toBeInstanceOf(Uint8Array);
  });
});

describe('state dicts of low-bit state', () => {
  for (const kind of KINDS)
    for (const stateDtype of ['bfloat16', 'uint8'] as const) {
      it(`${kind}, ${stateDtype}: in its own dtype, bit for bit through a fresh optimizer, which resumes exactly`, () => {
        const options = { stateDtype, stateBlockSize: 2048 };
        const a = makeParams(11);
        const oa = make(kind, a, options);
        run(oa, a, 0, 3);
        const sd = oa.stateDict() as unknown as {
          state: Record<number, Record<string, unknown>>;
          param_groups: Array<Record<string, unknown>>;
          rng?: unknown;
        };
        expect(sd.param_groups.map((g) => [g.state_dtype, g.state_block_size])).toEqual([
          [stateDtype, 2048],
          [stateDtype, 2048],
        ]);
        SPECS.forEach((s, i) => {
          const st = sd.state[i];
          const own = stateDtype === 'uint8' && s.n < MIN_QUANTIZED_NUMEL ? undefined : stateDtype;
          expect(st.stateDtype, `param ${i}`).toBe(own);
          const buffer = st.exp_avg ?? st.momentum_buffer;
          const type = own === undefined ? Float32Array : own === 'bfloat16' ? Uint16Array : Uint8Array;
          expect(buffer).toBeInstanceOf(type);
          expect((buffer as ArrayLike<number>).length).toBe(s.n);
          const name = kind === 'SGD' ? 'momentum_buffer' : 'exp_avg';
          if (own === 'uint8') {
            expect(st.blockSize).toBe(2048);
            expect((st[`${name}_absmax`] as Float32Array).length).toBe(Math.ceil(s.n / 2048));
          } else {
            expect(st.blockSize).toBeUndefined();
            expect(st[`${name}_absmax`]).toBeUndefined();
          }
          if (s.dtype !== 'float32') expect(st.master).toBeInstanceOf(Float32Array);
        });
        // bf16 state rounds stochastically: its stream travels (stochasticRounding is off).
        if (stateDtype === 'bfloat16') expect((sd.rng as { counter: number }).counter).toBe(3);
        else expect(sd.rng).toBeUndefined();

        const b = makeParams(12); // other values: everything must come from the dict
        b.forEach((p, i) =>
          p.data.copyFrom(a[i].data.dtype === 'float32' ? a[i].data.toFloat32Array() : a[i].data.toBits()),
        );
        const ob = make(kind, b, options);
        ob.loadStateDict(sd as never);
        expect(stateBytesOf(ob.stateDict())).toEqual(stateBytesOf(sd));
        expect(ob.stateBytes()).toBe(oa.stateBytes());
        run(oa, a, 3, 6);
        run(ob, b, 3, 6);
        expect(paramBits(b)).toEqual(paramBits(a));
        expect(stateBytesOf(ob.stateDict())).toEqual(stateBytesOf(oa.stateDict()));
      });
    }

  it('stateDict({ stateDtype: "float32" }) decodes every buffer; it loads back into the low-bit optimizer', () => {
    for (const stateDtype of ['bfloat16', 'uint8'] as const) {
      const a = makeParams(13);
      const oa = make('AdamW', a, { stateDtype });
      run(oa, a, 0, 2);
      const own = oa.stateDict();
      const fp32 = oa.stateDict({ stateDtype: 'float32' });
      for (const [i, st] of Object.entries(fp32.state)) {
        expect(st.stateDtype, `param ${i}`).toBeUndefined();
        expect(st.blockSize).toBeUndefined();
        expect(st.exp_avg).toBeInstanceOf(Float32Array);
        expect(st.exp_avg_sq).toBeInstanceOf(Float32Array);
        expect(Object.keys(st).some((k) => k.endsWith('_absmax'))).toBe(false);
      }
      const ob = make('AdamW', makeParams(14), { stateDtype });
      ob.loadStateDict(fp32);
      if (stateDtype === 'bfloat16') {
        // bf16 values are fp32 values: encoded again, the same bits.
        expect(stateBytesOf(ob.stateDict())).toEqual(stateBytesOf(own));
        continue;
      }
      // 8-bit: encoded again from the decoded values, within a code step of them (an absmax
      // shrinks to the largest decoded value), exactly for the small params (fp32 state).
      const again = ob.stateDict({ stateDtype: 'float32' });
      for (const [i, st] of Object.entries(fp32.state)) {
        const [x, y] = [st.exp_avg as Float32Array, again.state[Number(i)].exp_avg as Float32Array];
        const absmax = own.state[Number(i)].exp_avg_absmax as Float32Array | undefined;
        for (let k = 0; k < x.length; k++) {
          const tolerance = absmax ? 0.05 * absmax[Math.floor(k / 256)] : 0;
          if (Math.abs(x[k] - y[k]) > tolerance) expect(y[k], `param ${i} element ${k}`).toBe(x[k]);
        }
      }
    }
  });

  it('cross-dtype loads: an fp32 dict into a uint8 optimizer and back, bf16 into uint8', () => {
    const a = makeParams(15);
    const o32 = make('AdamW', a);
    run(o32, a, 0, 3);
    const sd32 = o32.stateDict();
    const o8 = make('AdamW', makeParams(16), { stateDtype: 'uint8' });
    o8.loadStateDict(sd32);
    const sd8 = o8.stateDict();
    expect(sd8.param_groups[0].state_dtype).toBe('uint8');
    expect(sd8.state[5].stateDtype).toBe('uint8');
    expect(sd8.state[0].stateDtype).toBeUndefined();
    // The 8-bit state decodes to the fp32 one within the codes' resolution.
    const decoded = o8.stateDict({ stateDtype: 'float32' });
    const [x, y] = [sd32.state[5].exp_avg as Float32Array, decoded.state[5].exp_avg as Float32Array];
    const absmax = sd8.state[5].exp_avg_absmax as Float32Array;
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]) / absmax[Math.floor(i / 256)]);
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThan(0.05);
    // Small params kept fp32 state: exact.
    expect(stateBytesOf({ state: { 0: decoded.state[0] } })).toEqual(stateBytesOf({ state: { 0: sd32.state[0] } }));
    // And back: the uint8 dict into an fp32 optimizer holds the decoded values.
    const back = make('AdamW', makeParams(17));
    back.loadStateDict(sd8);
    expect(stateBytesOf(back.stateDict())).toEqual(stateBytesOf(decoded));
    // bf16 into uint8 converts as well.
    const o16 = make('AdamW', makeParams(18), { stateDtype: 'bfloat16' });
    o16.loadStateDict(sd32);
    const o8b = make('AdamW', makeParams(19), { stateDtype: 'uint8' });
    o8b.loadStateDict(o16.stateDict());
    expect(o8b.stateBytes()).toBe(o8.stateBytes());
  });

  it('the new keys are checked before anything changes', () => {
    const a = makeParams(20);
    const oa = make('AdamW', a, { stateDtype: 'uint8' });
    run(oa, a, 0, 2);
    const good = oa.stateDict();
    const ob = make('AdamW', makeParams(21), { stateDtype: 'uint8' });
    run(ob, makeParams(22), 0, 1);
    const before = stateBytesOf(ob.stateDict());
    const bad = (edit: (s: Record<string, unknown>) => void, cls: typeof Error, re: RegExp) => {
      const sd = structuredClone(good) as unknown as { state: Record<number, Record<string, unknown>> };
      edit(sd.state[5]);
      expectThrows(() => ob.loadStateDict(sd as never), cls, [/state 5 \(param 'p5\.n70001'\)/, re]);
      expect(stateBytesOf(ob.stateDict())).toEqual(before);
    };
    bad((s) => (s.stateDtype = 'int4'), TypeError, /stateDtype must be one of/);
    bad((s) => (s.blockSize = 1024), TypeError, /blockSize must be one of 256 or 2048/);
    bad((s) => delete s.blockSize, TypeError, /blockSize is missing/);
    bad((s) => delete s.exp_avg_absmax, TypeError, /exp_avg_absmax must be a Float32Array/);
    bad(
      (s) => (s.exp_avg_absmax = new Float32Array(3)),
      RangeError,
      /exp_avg_absmax has 3 values but 70001 elements in blocks of 256 need 274/,
    );
    bad((s) => (s.exp_avg = new Float32Array(70001)), TypeError, /exp_avg must be a Uint8Array of 8-bit codes/);
    bad((s) => (s.exp_avg = new Uint8Array(7)), RangeError, /exp_avg has 7 elements but the param has 70001/);
    bad((s) => (s.max_exp_avg_sq_absmax = new Float32Array(274)), TypeError, /max_exp_avg_sq_absmax is given without/);
    bad(
      (s) => {
        s.stateDtype = 'bfloat16';
        delete s.blockSize;
      },
      TypeError,
      /exp_avg must be a Uint16Array of bfloat16 bits/,
    );
    bad(
      (s) => {
        s.stateDtype = 'float32';
        s.exp_avg = new Float32Array(70001);
        s.exp_avg_sq = new Float32Array(70001);
      },
      TypeError,
      /blockSize is only for stateDtype 'uint8'/,
    );
    bad(
      (s) => {
        delete s.stateDtype;
        delete s.blockSize;
        s.exp_avg = new Float32Array(70001);
        s.exp_avg_sq = new Float32Array(70001);
      },
      TypeError,
      /exp_avg_absmax is only for stateDtype 'uint8'/,
    );
    const sd = structuredClone(good) as unknown as { param_groups: Array<Record<string, unknown>> };
    sd.param_groups[1].state_dtype = 'fp8';
    expectThrows(() => ob.loadStateDict(sd as never), TypeError, [/param_groups\[1\]: state_dtype must be one of/]);
    expect(stateBytesOf(ob.stateDict())).toEqual(before);
  });
});

describe('changing stateDtype between steps', () => {
  it('converts the state at the next step (and only that group), as a load of the decoded state would', () => {
    const a = makeParams(30);
    const oa = make('AdamW', a);
    run(oa, a, 0, 2);
    oa.paramGroups[1].stateDtype = 'uint8';
    const fp32 = oa.stateDict();
    // A second optimizer gets the same state as a uint8 optimizer's load of the fp32 dict.
    const b = makeParams(31);
    b.forEach((p, i) =>
      p.data.copyFrom(a[i].data.dtype === 'float32' ? a[i].data.toFloat32Array() : a[i].data.toBits()),
    );
    const ob = make('AdamW', b);
    ob.paramGroups[1].stateDtype = 'uint8';
    run(oa, a, 2, 3); // converts group 1, then steps
    ob.loadStateDict(fp32); // a load does not apply the group's new dtype: the next step does
    run(ob, b, 2, 3);
    const sd = oa.stateDict();
    expect(sd.state[0].stateDtype).toBeUndefined();
    expect(sd.state[5].stateDtype).toBe('uint8');
    expect(stateBytesOf(ob.stateDict())).toEqual(stateBytesOf(sd));
    expect(paramBits(b)).toEqual(paramBits(a));
    // And back to float32.
    oa.paramGroups[1].stateDtype = 'float32';
    run(oa, a, 3, 4);
    expect(oa.stateDict().state[5].exp_avg).toBeInstanceOf(Float32Array);
    expect(oa.stateBytes()).toBe(SPECS.reduce((sum, s) => sum + 8 * s.n, 0));
  });
});

describe('checkpoints of low-bit state', () => {
  const { dir, cleanup } = tempDir();
  afterAll(cleanup);
  let count = 0;
  const file = () => join(dir, `ck${count++}.safetensors`);

  for (const kind of KINDS)
    for (const stateDtype of ['bfloat16', 'uint8'] as const)
      it(`${kind}, ${stateDtype}: saved in its own dtype, restored into a fresh optimizer, which resumes exactly`, async () => {
        const options = { stateDtype };
        const a = makeParams(40);
        const oa = make(kind, a, options);
        run(oa, a, 0, 3);
        const f = file();
        await saveCheckpoint(f, { params: a, optimizer: oa });
        const { headerText } = splitFile(readFileSync(f));
        const header = JSON.parse(headerText);
        expect(header.__metadata__.format_version).toBe('3');
        const buf = kind === 'SGD' ? 'momentum_buffer' : 'exp_avg';
        const big = `optimizer.state.p5.n70001.${buf}`;
        expect(header[big].dtype).toBe(stateDtype === 'bfloat16' ? 'BF16' : 'U8');
        expect(header[big].shape).toEqual([70001]);
        if (stateDtype === 'uint8') {
          expect(header[`${big}_absmax`]).toMatchObject({ dtype: 'F32', shape: [Math.ceil(70001 / 256)] });
          expect(header[`optimizer.state.p0.n1.${buf}`].dtype).toBe('F32'); // a small param keeps fp32 state
        }
        expect(header['optimizer.state.p6.n5003.master'].dtype).toBe('F32');

        const b = makeParams(41);
        const ob = make(kind, b, options);
        await loadCheckpoint(f, { params: b, optimizer: ob });
        expect(stateBytesOf(ob.stateDict())).toEqual(stateBytesOf(oa.stateDict()));
        run(oa, a, 3, 6);
        run(ob, b, 3, 6);
        expect(paramBits(b)).toEqual(paramBits(a));

        // Into an optimizer of another state dtype: converted, as a load of the state dict is.
        for (const other of STATE_DTYPES.filter((d) => d !== stateDtype)) {
          const c = makeParams(42);
          const oc = make(kind, c, { stateDtype: other });
          await loadCheckpoint(f, { params: c, optimizer: oc });
          const od = make(kind, makeParams(43), { stateDtype: other });
          const e = makeParams(44);
          const oe = make(kind, e, options);
          await loadCheckpoint(f, { params: e, optimizer: oe });
          od.loadStateDict(oe.stateDict() as never);
          expect(stateBytesOf(oc.stateDict()), `into ${other}`).toEqual(stateBytesOf(od.stateDict()));
        }
      });

  it('an fp32-state file is still version 2, and loads into a uint8 optimizer (converted)', async () => {
    const a = makeParams(50);
    const oa = make('AdamW', a);
    run(oa, a, 0, 2);
    const f = file();
    await saveCheckpoint(f, { params: a, optimizer: oa });
    expect(JSON.parse(splitFile(readFileSync(f)).headerText).__metadata__.format_version).toBe('2');
    const b = makeParams(51);
    const ob = make('AdamW', b, { stateDtype: 'uint8' });
    await loadCheckpoint(f, { params: b, optimizer: ob });
    const c = make('AdamW', makeParams(52), { stateDtype: 'uint8' });
    c.loadStateDict(oa.stateDict());
    expect(stateBytesOf(ob.stateDict())).toEqual(stateBytesOf(c.stateDict()));
    // And a uint8 file back into fp32.
    const f8 = file();
    await saveCheckpoint(f8, { params: b, optimizer: ob });
    const p32 = makeParams(53);
    const o32 = make('AdamW', p32);
    await loadCheckpoint(f8, { params: p32, optimizer: o32 });
    expect(stateBytesOf(o32.stateDict())).toEqual(stateBytesOf(ob.stateDict({ stateDtype: 'float32' })));
  });

  it('a low-bit state tensor of the wrong dtype, or an absmax of the wrong count, is refused before anything changes', async () => {
    const a = makeParams(65);
    const oa = make('AdamW', a, { stateDtype: 'uint8' });
    run(oa, a, 0, 2);
    const f = file();
    await saveCheckpoint(f, { params: a, optimizer: oa });
    const b = makeParams(66);
    const ob = make('AdamW', b, { stateDtype: 'uint8' });
    run(ob, b, 0, 1);
    const before = stateBytesOf(ob.stateDict());
    const name = 'optimizer.state.p5.n70001.exp_avg';
    const t = file();
    editHeader(f, (h) => (h[name].dtype = 'I8'), t); // same size: a consistent header otherwise
    resealHeader(t);
    const e1 = await loadCheckpoint(t, { params: b, optimizer: ob }).catch((e: CheckpointError) => e);
    expect((e1 as CheckpointError).code).toBe('OptimizerMismatch');
    expect((e1 as Error).message).toMatch(/is I8; uint8 state must be U8/);
    // The absmax of another block size: the manifest says 2048, the tensor has 256's count.
    const t2 = file();
    editHeader(
      f,
      (h) => {
        const chunk = JSON.parse(h.__metadata__['fused_optim.state.0']);
        chunk['p5.n70001'].blockSize = 2048;
        h.__metadata__['fused_optim.state.0'] = JSON.stringify(chunk);
      },
      t2,
    );
    resealHeader(t2);
    const e2 = await loadCheckpoint(t2, { params: b, optimizer: ob }).catch((e: CheckpointError) => e);
    expect((e2 as CheckpointError).code).toBe('Rejected');
    expect((e2 as Error).message).toMatch(/exp_avg_absmax has 274 values but 70001 elements in blocks of 2048 need 35/);
    expect(stateBytesOf(ob.stateDict())).toEqual(before);
  });

  it('a background save of 8-bit state writes the same file', async () => {
    const a = makeParams(60);
    const oa = make('AdamW', a, { stateDtype: 'uint8' });
    run(oa, a, 0, 2);
    const [f1, f2] = [file(), file()];
    await saveCheckpoint(f1, { params: a, optimizer: oa });
    const bg = await saveCheckpoint(f2, { params: a, optimizer: oa }, { background: true });
    await bg.written;
    expect(readFileSync(f2).equals(readFileSync(f1))).toBe(true);
  });
});

describe('the addon checks the state formats a load stages', () => {
  it('checkpointStage: state dtype codes and block sizes, one per param', () => {
    const handle = new (native().AdamWHandle)(0);
    const w = Tensor.from(randn(5000, rng(70)), { device: 'cpu' });
    handle.addParams([w.handle], 0, ['w'], true, undefined, undefined, 2, 256);
    const [one, mask] = [Int32Array.of(0), Uint8Array.of(3)];
    expectThrows(() => handle.checkpointStage(one, mask, Uint8Array.of(3), Int32Array.of(256)), RangeError, [
      /stateDtypes\[0\] must be 0 \(float32\), 1 \(bfloat16\) or 2 \(uint8\)/,
    ]);
    expectThrows(() => handle.checkpointStage(one, mask, Uint8Array.of(2), Int32Array.of(100)), RangeError, [
      /blockSizes\[0\] must be 256 or 2048, got 100/,
    ]);
    expectThrows(() => handle.checkpointStage(one, mask, Uint8Array.of(2, 2), Int32Array.of(256)), TypeError, [
      /stateDtypes must be a typed array with one entry per param index/,
    ]);
    expectThrows(
      () => handle.checkpointStage(one, mask, Uint8Array.of(2), Float64Array.of(256) as unknown as Int32Array),
      TypeError,
      [/blockSizes must be a typed array/],
    );
    // Staged in another format than the param's: two entries per 8-bit buffer, all fresh.
    const staged = handle.checkpointStage(one, mask, Uint8Array.of(2), Int32Array.of(2048));
    expect([...staged.fresh]).toEqual([1, 1, 1, 1]);
    handle.checkpointAbort(one);
    handle.dispose();
  });
});

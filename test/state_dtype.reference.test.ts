// bf16 and 8-bit optimizer state against an independent reference (test/support/
// state_reference.ts), bit for bit: every step's params, codes, absmax and bf16 bits, for
// AdamW, Lion and SGD, on sizes around the 8-bit threshold (4096), a chunk (65536) and the
// blocks (256, 2048), with a param that has no grad on some steps and lr changed mid-run.
import { describe, expect, it } from 'vitest';
import { AdamW, Lion, Parameter, SGD, Tensor } from '../src/index';
import { bitsOf, expectSameBits } from './support/compare';
import { roundTo } from './support/half_reference';
import { randn, rng } from './support/random';
import {
  adamwElement,
  adamwScalars,
  bf16Stochastic,
  bf16ToFloat,
  codeBook,
  decodeQ8,
  definedCodeMap,
  encodeQ8,
  lionElement,
  quantize,
  roundingBits,
  sgdElement,
  stateKey,
  stepKeys,
  torchCodeMaps,
  type CodeBook,
  type Q8Buffer,
} from './support/state_reference';

const SIZES = [1, 3, 4095, 4097, 5000, 65836]; // 4095: fp32 under 'uint8'; 65836: a chunk + a partial block
const STEPS = 5;
const hasGrad = (param: number, step: number) => !(param === 4 && step === 2);
const maps = torchCodeMaps();
const books = { signed: codeBook(maps.signed), unsigned: codeBook(maps.unsigned) };

type StateDtype = 'bfloat16' | 'uint8';
type Algo = 'adamw' | 'lion' | 'sgd';
const SIGNED: Record<Algo, boolean[]> = { adamw: [true, false], lion: [true], sgd: [true] };
const NAMES: Record<Algo, string[]> = { adamw: ['exp_avg', 'exp_avg_sq'], lion: ['exp_avg'], sgd: ['momentum_buffer'] };

// One state buffer of the reference, in its stored form.
type Stored =
  { kind: 'float32'; v: Float32Array } | { kind: 'bfloat16'; v: Uint16Array } | { kind: 'uint8'; q: Q8Buffer };

function decode(s: Stored, book: CodeBook, block: number): Float32Array {
  if (s.kind === 'float32') return s.v;
  if (s.kind === 'bfloat16') return Float32Array.from(s.v, bf16ToFloat);
  return decodeQ8(s.q, book, block);
}

function encode(kind: Stored['kind'], values: Float32Array, book: CodeBook, block: number, key: number): Stored {
  if (kind === 'float32') return { kind, v: values };
  if (kind === 'bfloat16')
    return { kind, v: Uint16Array.from(values, (x, j) => bf16Stochastic(x, roundingBits(key, j))) };
  return { kind, q: encodeQ8(values, book, block) };
}

function makeOptimizer(algo: Algo, params: Parameter[], lr: number, stateDtype: StateDtype, block: number) {
  const common = { lr, stateDtype, stateBlockSize: block } as const;
  if (algo === 'adamw') return new AdamW(params, { ...common, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.01 });
  if (algo === 'lion') return new Lion(params, { ...common, betas: [0.9, 0.99], weightDecay: 0 });
  return new SGD(params, { ...common, momentum: 0.9 });
}

// The fp32 rule of one element: [param, state...] from [param, grad, state...].
function stepElement(algo: Algo, lr: number, step: number, first: boolean) {
  const s = adamwScalars(lr, [0.9, 0.95], 1e-8, 0.01, step);
  return (p: number, g: number, st: number[]): number[] => {
    if (algo === 'adamw') return adamwElement(p, g, st[0], st[1], s);
    if (algo === 'lion') return lionElement(p, g, st[0], lr, [0.9, 0.99], 0);
    return sgdElement(p, g, st[0], lr, 0.9, first);
  };
}

interface Case {
  algo: Algo;
  stateDtype: StateDtype;
  block: number;
  paramDtype: 'float32' | 'bfloat16';
}
const cases: Case[] = [
  { algo: 'adamw', stateDtype: 'uint8', block: 256, paramDtype: 'float32' },
  { algo: 'adamw', stateDtype: 'uint8', block: 2048, paramDtype: 'float32' },
  { algo: 'adamw', stateDtype: 'uint8', block: 256, paramDtype: 'bfloat16' },
  { algo: 'adamw', stateDtype: 'bfloat16', block: 256, paramDtype: 'float32' },
  { algo: 'lion', stateDtype: 'uint8', block: 256, paramDtype: 'float32' },
  { algo: 'lion', stateDtype: 'bfloat16', block: 256, paramDtype: 'float32' },
  { algo: 'sgd', stateDtype: 'uint8', block: 2048, paramDtype: 'float32' },
  { algo: 'sgd', stateDtype: 'bfloat16', block: 256, paramDtype: 'float32' },
];

describe('the code maps', () => {
  it('are bitsandbytes dynamic maps: sorted, 0 and 1 included, within fp32 rounding of their definition', () => {
    for (const signed of [true, false]) {
      const map = signed ? maps.signed : maps.unsigned;
      const defined = definedCodeMap(signed);
      expect(map.length).toBe(256);
      for (let c = 0; c < 256; c++) {
        if (c > 0) expect(map[c]).toBeGreaterThan(map[c - 1]);
        expect(Math.abs(map[c] - defined[c])).toBeLessThanOrEqual(1e-6 * Math.abs(defined[c]));
      }
      expect(map[255]).toBe(1);
      expect(map.indexOf(0)).toBe(signed ? 127 : 0);
    }
  });

  it('code every value to its nearest entry', () => {
    const next = rng(5);
    for (const book of [books.signed, books.unsigned]) {
      for (let k = 0; k < 2000; k++) {
        const y = (next() * 2 - 1) * 10 ** -(next() * 7);
        const c = quantize(book, y);
        const nearest = book.map.reduce((best, v, i) => (Math.abs(v - y) < Math.abs(book.map[best] - y) ? i : best), 0);
        expect(Math.abs(book.map[c] - y)).toBeLessThanOrEqual(Math.abs(book.map[nearest] - y) * (1 + 1e-6));
      }
    }
  });
});

describe('low-bit state matches the reference bit for bit', () => {
  for (const c of cases) {
    it(`${c.algo}, ${c.stateDtype} state${c.stateDtype === 'uint8' ? `, blocks of ${c.block}` : ''}, ${c.paramDtype} params`, () => {
      const next = rng(77);
      const inits = SIZES.map((n) => randn(n, next));
      const params = inits.map((v, i) => new Parameter(Tensor.from(v, { dtype: c.paramDtype }), { name: `w${i}` }));
      let lr = c.algo === 'sgd' ? 0.05 : 1e-2;
      const opt = makeOptimizer(c.algo, params, lr, c.stateDtype, c.block);
      // The reference: fp32 param (the master for bf16 params) and stored state per param.
      const p = params.map((q) => q.data.toFloat32Array());
      const kindOf = (n: number): Stored['kind'] => (c.stateDtype === 'uint8' && n < 4096 ? 'float32' : c.stateDtype);
      const state: Stored[][] = SIZES.map((n) =>
        SIGNED[c.algo].map(() => encode(kindOf(n), new Float32Array(n), books.signed, c.block, 0)),
      );
      const stepsTaken = SIZES.map(() => 0);
      for (let s = 0; s < STEPS; s++) {
        if (s === 3) {
          lr *= 0.5;
          opt.paramGroups[0].lr = lr;
        }
        const keys = stepKeys(0, s); // seed 0; the rounding counter is the number of steps before
        params.forEach((param, i) => {
          if (!hasGrad(i, s)) {
            param.grad = null;
            return;
          }
          const g = randn(param.data.numel, next, 0.1 * (i + 1));
          param.grad = Tensor.from(g);
          stepsTaken[i] += 1;
          const rule = stepElement(c.algo, lr, stepsTaken[i], stepsTaken[i] === 1);
          const book = (k: number) => (SIGNED[c.algo][k] ? books.signed : books.unsigned);
          const values = state[i].map((st, k) => decode(st, book(k), c.block));
          const out = values.map((v) => new Float32Array(v.length));
          for (let j = 0; j < g.length; j++) {
            const r = rule(
              p[i][j],
              g[j],
              values.map((v) => v[j]),
            );
            p[i][j] = r[0];
            out.forEach((o, k) => (o[j] = r[k + 1]));
          }
          state[i] = out.map((o, k) => encode(state[i][k].kind, o, book(k), c.block, stateKey(keys, i, k)));
        });
        opt.step();
        const sd = opt.stateDict();
        params.forEach((param, i) => {
          const where = `step ${s + 1}, param ${i} (${SIZES[i]} elements)`;
          const got = sd.state[i] as Record<string, any> | undefined;
          if (!got) throw new Error(`${where}: no state`);
          expect(got.stateDtype ?? 'float32', where).toBe(kindOf(SIZES[i]));
          if (c.paramDtype === 'float32') {
            expectSameBits(bitsOf(param.data.toFloat32Array()), bitsOf(p[i]), `${where} param`);
          } else {
            expectSameBits(bitsOf(got.master), bitsOf(p[i]), `${where} master`);
            const rounded = Float32Array.from(p[i], (x) => roundTo('bfloat16', x));
            expectSameBits(bitsOf(param.data.toFloat32Array()), bitsOf(rounded), `${where} param`);
          }
          NAMES[c.algo].forEach((name, k) => {
            const st = state[i][k];
            if (st.kind === 'float32') expectSameBits(bitsOf(got[name]), bitsOf(st.v), `${where} ${name}`);
            else if (st.kind === 'bfloat16') expectSameBits(got[name], st.v, `${where} ${name} (bf16 bits)`);
            else {
              expect(got.blockSize, where).toBe(c.block);
              expect(Buffer.compare(Buffer.from(got[name]), Buffer.from(st.q.codes)), `${where} ${name} codes`).toBe(0);
              expectSameBits(bitsOf(got[`${name}_absmax`]), bitsOf(st.q.absmax), `${where} ${name}_absmax`);
            }
          });
        });
      }
    });
  }
});

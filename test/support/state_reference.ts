// bf16 and 8-bit optimizer state computed independently of the addon, for the exact tests of
// test/state_dtype.reference.test.ts: the coding rules of native/common/blockwise_quant.h
// and the stochastic rounding of native/common/stochastic_rounding.h, in float64 with a
// rounding to fp32 after every operation (double rounding is exact for + - * / sqrt of
// fp32 operands), so codes, absmax and bits can be compared bit for bit.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const f = Math.fround;

function decodeFloat32(base64: string): Float32Array {
  const bytes = Buffer.from(base64, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** bitsandbytes' dynamic maps as torch built them (test/fixtures/gen_dynamic_code_maps.py). */
export function torchCodeMaps(): { signed: Float32Array; unsigned: Float32Array } {
  const json = JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'dynamic_code_maps.json'), 'utf8'));
  return { signed: decodeFloat32(json.signed), unsigned: decodeFloat32(json.unsigned) };
}

/**
 * The dynamic map built from its definition in float64 (decades 10^-6 .. 10^0, midpoints of
 * an even grid over [0.1, 1] with 2^i (signed) or 2^(i+1) (unsigned) entries in decade i),
 * independent of torch's float32 linspace: within fp32 rounding of the torch map.
 */
export function definedCodeMap(signed: boolean): Float64Array {
  const values: number[] = [0, 1];
  for (let i = 0; i < 7; i++) {
    const items = 2 ** (i + (signed ? 0 : 1)) + 1;
    const scale = 10 ** (i - 6);
    for (let k = 0; k + 1 < items; k++) {
      const lo = 0.1 + (0.9 * k) / (items - 1);
      const hi = 0.1 + (0.9 * (k + 1)) / (items - 1);
      values.push(scale * ((lo + hi) / 2));
      if (signed) values.push(-scale * ((lo + hi) / 2));
    }
  }
  return Float64Array.from(values.sort((a, b) => a - b));
}

export interface CodeBook {
  map: Float32Array;
  mid: Float32Array; // 256: the fp32 midpoints, +inf last
}

export function codeBook(map: Float32Array): CodeBook {
  const mid = new Float32Array(256);
  for (let c = 0; c < 255; c++) mid[c] = f((map[c] + map[c + 1]) * 0.5);
  mid[255] = Infinity;
  return { map, mid };
}

/** The code of a normalized value: how many midpoints lie below it (NaN: 0). */
export function quantize(book: CodeBook, y: number): number {
  let c = 0;
  while (c < 255 && book.mid[c] < y) c++;
  return c;
}

export interface Q8Buffer {
  codes: Uint8Array;
  absmax: Float32Array;
}

/** Requantizes values (fp32) block by block: new absmax, then codes of value * (1 / absmax). */
export function encodeQ8(values: Float32Array, book: CodeBook, block: number): Q8Buffer {
  const n = values.length;
  const out = { codes: new Uint8Array(n), absmax: new Float32Array(Math.ceil(n / block)) };
  for (let b = 0; b * block < n; b++) {
    const end = Math.min(n, (b + 1) * block);
    let a = 0;
    for (let i = b * block; i < end; i++) {
      const x = Math.abs(values[i]);
      if (Number.isNaN(x) || x > a) a = x;
    }
    const scale = a > 0 ? f(1 / a) : 0;
    for (let i = b * block; i < end; i++) out.codes[i] = quantize(book, f(values[i] * scale));
    out.absmax[b] = a;
  }
  return out;
}

export function decodeQ8(q: Q8Buffer, book: CodeBook, block: number): Float32Array {
  return Float32Array.from(q.codes, (c, i) => f(book.map[c] * q.absmax[Math.floor(i / block)]));
}

// ---- stochastic rounding (native/common/stochastic_rounding.h)

export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

function streamKey(key0: number, key1: number, stream: number): number {
  return mix32((key0 ^ mix32((key1 ^ mix32((stream + 0x9e3779b9) >>> 0)) >>> 0)) >>> 0);
}

/** The step's keys for rounding counter value `counter` (the count before the step) and seed. */
export function stepKeys(seed: number, counter: number): [number, number] {
  const lo = (x: number) => Number(BigInt(x) & 0xffffffffn);
  const hi = (x: number) => Number(BigInt(x) >> 32n);
  const next = counter + 1;
  return [(lo(seed) ^ mix32(hi(seed))) >>> 0, (lo(next) ^ mix32((hi(next) + 0x68e31da4) >>> 0)) >>> 0];
}

/** The key of state buffer k of the param at index `stream` (bf16 state). */
export function stateKey(keys: [number, number], stream: number, k: number): number {
  return streamKey((keys[0] ^ ((0x6a09e667 + Math.imul(0x3c6ef372, k)) >>> 0)) >>> 0, keys[1], stream);
}

export function roundingBits(key: number, index: number): number {
  const inner = mix32((Math.floor(index / 2 ** 32) + 0x85ebca6b) >>> 0);
  return mix32((key ^ mix32(((index >>> 0) ^ inner) >>> 0)) >>> 0);
}

const scratch = new DataView(new ArrayBuffer(4));
export function floatBits(x: number): number {
  scratch.setFloat32(0, x, true);
  return scratch.getUint32(0, true);
}
export function bitsFloat(u: number): number {
  scratch.setUint32(0, u >>> 0, true);
  return scratch.getFloat32(0, true);
}

/** bf16 bits of x, stochastically rounded with 16 random bits (inf/NaN: nearest even). */
export function bf16Stochastic(x: number, random: number): number {
  const u = floatBits(x);
  if ((u & 0x7f800000) >>> 0 === 0x7f800000) {
    if ((u & 0x7fffff) !== 0) return ((u >>> 16) | 0x40) & 0xffff;
    return u >>> 16;
  }
  return Math.floor((u + (random & 0xffff)) / 65536) & 0xffff;
}

export const bf16ToFloat = (h: number) => bitsFloat(h << 16);

// ---- the fp32 update rules (native/common/*_rule.h), one element

export interface AdamWScalars {
  decay: number;
  negStep: number;
  bc2Sqrt: number;
  eps: number;
  b1: number;
  omb1: number;
  b2: number;
  omb2: number;
}

export function adamwScalars(lr: number, betas: [number, number], eps: number, wd: number, step: number): AdamWScalars {
  return {
    decay: f(1 - lr * wd),
    negStep: f(-(lr / (1 - betas[0] ** step))),
    bc2Sqrt: f(Math.sqrt(1 - betas[1] ** step)),
    eps: f(eps),
    b1: f(betas[0]),
    omb1: f(1 - betas[0]),
    b2: f(betas[1]),
    omb2: f(1 - betas[1]),
  };
}

/** [param, m, v] after one AdamW step of one element (no amsgrad, no maximize). */
export function adamwElement(p: number, g: number, m: number, v: number, s: AdamWScalars): [number, number, number] {
  const decayed = f(p * s.decay);
  const m2 = f(f(m * s.b1) + f(s.omb1 * g));
  const v2 = f(f(v * s.b2) + f(f(s.omb2 * g) * g));
  const denom = f(f(f(Math.sqrt(v2)) / s.bc2Sqrt) + s.eps);
  return [f(decayed + f(f(s.negStep * m2) / denom)), m2, v2];
}

function lerp(start: number, end: number, weight: number): number {
  const diff = f(end - start);
  return weight < 0.5 && weight > -0.5 ? f(start + f(weight * diff)) : f(end - f(diff * f(1 - weight)));
}

/** [param, m] after one DecoupledLionW step of one element (no initial_lr). */
export function lionElement(p: number, g: number, m: number, lr: number, betas: [number, number], wd: number) {
  const decayed = wd !== 0 ? f(p * f(1 - wd)) : p;
  const c = lerp(m, g, f(1 - betas[0]));
  const direction = c > 0 ? 1 : c < 0 ? -1 : 0;
  return [f(decayed + f(f(-lr) * direction)), lerp(m, g, f(1 - betas[1]))];
}

/** [param, buf] after one SGD step with momentum (no dampening, nesterov or decay). */
export function sgdElement(p: number, g: number, buf: number, lr: number, momentum: number, first: boolean) {
  const b = first ? g : f(f(buf * f(momentum)) + g);
  return [f(p + f(f(-lr) * b)), b];
}

// Generic encoding of state dicts (optimizer, scheduler, scaler) and `extra` into a checkpoint:
// typed arrays become tensors of the file, everything else JSON. Plain JSON values are
// written as they are; the few values JSON cannot hold are written as one-key objects whose
// key starts with "$":
//   {"$tensor": "<tensor name>"}     a typed array (F32 for Float32Array, F64, I32, U16, ...)
//   {"$number": "NaN" | "Infinity" | "-Infinity" | "-0"}
//   {"$bigint": "<decimal>"}
// and an object key that itself starts with "$" is written with one more "$" in front.
// Values nest at most MAX_DEPTH levels deep (deeper ones are refused with a TypeError, not
// left to overflow the stack).
import { NativeBuffer, type TableEntry } from './native_io';
import { type SafetensorsDType, type TensorData, dtypeOfData } from './safetensors_header';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** How deep values may nest in a state dict or `extra`. */
export const MAX_DEPTH = 1000;

export interface EncodedTensor {
  name: string;
  dtype: SafetensorsDType;
  /** A typed array, or a tensor in native memory (an optimizer state buffer, a param's data). */
  source: TensorData | NativeBuffer | TableEntry;
  byteLength: number;
  numel: number;
  shape: number[];
}

/** Collects the tensors of the values it encodes, under unique names. */
export class StateEncoder {
  readonly tensors: EncodedTensor[] = [];
  readonly #names: Set<string>;

  /** `taken`: tensor names already used in the file. */
  constructor(taken: Iterable<string> = []) {
    this.#names = new Set(taken);
  }

  /** Claims a tensor name (made unique) for a tensor the caller writes itself. */
  reserve(name: string): string {
    return this.#unique(name);
  }

  /** Whether a name taken so far starts with `prefix`. */
  hasNameStartingWith(prefix: string): boolean {
    for (const name of this.#names) if (name.startsWith(prefix)) return true;
    return false;
  }

  /** Encodes `value`; `name` is the tensor-name prefix and `where` names it in errors. */
  encode(value: unknown, name: string, where: string): Json {
    return this.#encode(value, name, where, new Set()) ?? null;
  }

  #encode(value: unknown, name: string, where: string, stack: Set<object>): Json | undefined {
    if (stack.size >= MAX_DEPTH)
      throw new TypeError(
        `${where.slice(0, 80)}... is nested more than ${MAX_DEPTH} levels deep (${describeType(value)} there), which a checkpoint cannot hold`,
      );
    if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
    if (typeof value === 'number') {
      if (Number.isNaN(value)) return { $number: 'NaN' };
      if (value === Infinity) return { $number: 'Infinity' };
      if (value === -Infinity) return { $number: '-Infinity' };
      if (Object.is(value, -0)) return { $number: '-0' };
      return value;
    }
    if (typeof value === 'bigint') return { $bigint: value.toString() };
    if (value === undefined) return undefined;
    if (typeof value !== 'object') throw new TypeError(`${where} is a ${typeof value}, which a checkpoint cannot hold`);
    if (value instanceof NativeBuffer) {
      const tensorName = this.#unique(name);
      this.tensors.push({
        name: tensorName,
        dtype: value.dtype,
        source: value,
        byteLength: value.byteLength,
        numel: value.numel,
        shape: [value.numel],
      });
      return { $tensor: tensorName };
    }
    if (ArrayBuffer.isView(value)) {
      const dtype = dtypeOfData(value);
      if (dtype === undefined || value instanceof Uint8ClampedArray) {
        throw new TypeError(
          `${where} is a ${value.constructor.name}, which a checkpoint cannot hold (use a typed array such as Float32Array)`,
        );
      }
      const tensorName = this.#unique(name);
      const data = value as TensorData;
      this.tensors.push({
        name: tensorName,
        dtype,
        source: data,
        byteLength: data.byteLength,
        numel: data.length,
        shape: [data.length],
      });
      return { $tensor: tensorName };
    }
    if (stack.has(value)) throw new TypeError(`${where} refers to itself (a cycle), which a checkpoint cannot hold`);
    stack.add(value);
    try {
      if (Array.isArray(value)) {
        return value.map((v, i) => this.#encode(v, `${name}.${i}`, `${where}[${i}]`, stack) ?? null);
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new TypeError(
          `${where} is a ${value.constructor?.name ?? 'non-plain object'}; a checkpoint holds plain objects, arrays, strings, numbers, booleans, null, bigints and typed arrays`,
        );
      }
      const out: { [key: string]: Json } = {};
      for (const [k, v] of Object.entries(value)) {
        const encoded = this.#encode(v, `${name}.${k}`, `${where}.${k}`, stack);
        if (encoded !== undefined) define(out, k.startsWith('$') ? `$${k}` : k, encoded);
      }
      return out;
    } finally {
      stack.delete(value);
    }
  }

  #unique(name: string): string {
    let candidate = name;
    for (let i = 2; this.#names.has(candidate); i++) candidate = `${name}#${i}`;
    this.#names.add(candidate);
    return candidate;
  }
}

/** "a string", "an Array", "a Float32Array", "null": for messages. */
function describeType(v: unknown): string {
  if (v === null) return 'null';
  const name = typeof v !== 'object' ? typeof v : ((v as object).constructor?.name ?? 'Object');
  return /^[aeiouAEIOU]/.test(name) ? `an ${name}` : `a ${name}`;
}

/** Defines an own property (safe for keys such as "__proto__"). */
function define(o: object, key: string, value: unknown): void {
  if (key === '__proto__')
    Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
  else (o as Record<string, unknown>)[key] = value;
}

/**
 * Decodes what StateEncoder wrote; `resolve` turns a tensor name into its value (or checks
 * it, when only validating). Throws Error naming `where` on anything malformed.
 */
export function decodeState(
  json: unknown,
  where: string,
  resolve: (tensorName: string, where: string) => unknown,
): unknown {
  return decode(json, where, resolve, 0);
}

function decode(
  json: unknown,
  where: string,
  resolve: (tensorName: string, where: string) => unknown,
  depth: number,
): unknown {
  if (depth > MAX_DEPTH) throw new Error(`${where.slice(0, 80)}... is nested more than ${MAX_DEPTH} levels deep`);
  if (json === null || typeof json === 'boolean' || typeof json === 'string' || typeof json === 'number') return json;
  if (Array.isArray(json)) return json.map((v, i) => decode(v, `${where}[${i}]`, resolve, depth + 1));
  if (typeof json !== 'object') throw new Error(`${where} is not JSON`);
  const keys = Object.keys(json);
  const o = json as Record<string, unknown>;
  if (keys.length === 1 && keys[0].startsWith('$') && !keys[0].startsWith('$$')) {
    const [marker] = keys;
    const v = o[marker];
    if (marker === '$tensor') {
      if (typeof v !== 'string') throw new Error(`${where}: $tensor must name a tensor`);
      return resolve(v, where);
    }
    if (marker === '$number') {
      const n = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity, '-0': -0 }[v as string];
      if (typeof v !== 'string' || n === undefined) throw new Error(`${where}: bad $number ${JSON.stringify(v)}`);
      return n;
    }
    if (marker === '$bigint') {
      if (typeof v !== 'string' || !/^-?\d+$/.test(v)) throw new Error(`${where}: bad $bigint ${JSON.stringify(v)}`);
      return BigInt(v);
    }
    throw new Error(`${where}: unknown marker ${JSON.stringify(marker)}`);
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    if (k.startsWith('$') && !k.startsWith('$$')) throw new Error(`${where}: unexpected key ${JSON.stringify(k)}`);
    const key = k.startsWith('$$') ? k.slice(1) : k;
    define(out, key, decode(o[k], `${where}.${key}`, resolve, depth + 1));
  }
  return out;
}

// Checks on the typed arrays collectives take, and their names in messages.
import type { HostArray } from './backend';

const HOST_ARRAY_TYPES = [
  Float32Array,
  Float64Array,
  Int8Array,
  Uint8Array,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  BigInt64Array,
  BigUint64Array,
] as const;

export function isHostArray(x: unknown): x is HostArray {
  return HOST_ARRAY_TYPES.some((T) => x instanceof T);
}

export function isFloatArray(x: HostArray): boolean {
  return x instanceof Float32Array || x instanceof Float64Array;
}

export function arrayTypeName(x: HostArray): string {
  return x.constructor.name;
}

export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return `a ${(v as object).constructor?.name ?? 'Object'}`;
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

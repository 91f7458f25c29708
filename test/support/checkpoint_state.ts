// Small, comparable fingerprints of params, optimizer state and groups: a hash of each
// buffer's bits (so -0 and NaN payloads count) instead of the buffers themselves, so a
// failing comparison prints a readable diff instead of megabytes of numbers.
import { createHash } from 'node:crypto';
import type { Parameter } from '../../src/index';

export function hashBits(a: ArrayBufferView): string {
  return createHash('sha1')
    .update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex')
    .slice(0, 16);
}

export function paramHash(p: Parameter): string {
  return `${p.data.dtype}:${hashBits(p.data.dtype === 'float32' ? p.data.toFloat32Array() : p.data.toBits())}`;
}

type AnyDict = {
  state: Record<string, Record<string, unknown>>;
  param_groups: Array<Record<string, unknown>>;
  [k: string]: unknown;
};

/** The state dict with every typed array replaced by `dtype:length:hash`. */
export function dictFingerprint(sd: unknown): unknown {
  const walk = (v: unknown): unknown => {
    if (ArrayBuffer.isView(v)) return `${v.constructor.name}:${(v as Float32Array).length}:${hashBits(v)}`;
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    if (typeof v === 'number' && (Number.isNaN(v) || Object.is(v, -0))) return String(Object.is(v, -0) ? '-0' : v);
    return v;
  };
  return walk(sd as AnyDict);
}

export interface HasStateDict {
  stateDict(): unknown;
  paramGroups: Array<{ params: Parameter[] } & Record<string, unknown>>;
}

/** Everything a resume must reproduce: param bits, the optimizer's dict, its live groups. */
export function fingerprint(
  opt: HasStateDict | undefined,
  params: readonly Parameter[],
  scheduler?: { stateDict(): unknown },
): Record<string, unknown> {
  return {
    params: Object.fromEntries(params.map((p) => [p.name, paramHash(p)])),
    ...(opt
      ? {
          state: dictFingerprint(opt.stateDict()),
          groups: opt.paramGroups.map(({ params: ps, ...rest }) => ({ ...rest, params: ps.map((p) => p.name) })),
        }
      : {}),
    ...(scheduler ? { scheduler: dictFingerprint(scheduler.stateDict()) } : {}),
  };
}

// Small JSON values from every rank to every rank (hyperparameters, error messages,
// metrics): an all-gather of the byte lengths, then of the bytes padded to the longest.
import type { ProcessGroup } from './process_group';

// NaN, ±Infinity and -0 survive (a metric can be NaN), as tagged strings.
const TAG = '\u0000number:';

function replacer(_key: string, v: unknown): unknown {
  if (typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0))) return `${TAG}${Object.is(v, -0) ? '-0' : v}`;
  return v;
}

function reviver(_key: string, v: unknown): unknown {
  if (typeof v === 'string' && v.startsWith(TAG)) return Number(v.slice(TAG.length));
  return v;
}

function encode(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value, replacer) ?? 'null');
}

function decode(bytes: Uint8Array, lengths: Int32Array, width: number): unknown[] {
  const text = new TextDecoder();
  return [...lengths].map((n, r) => JSON.parse(text.decode(bytes.subarray(r * width, r * width + n)), reviver));
}

/** Every rank's `value` (JSON), in rank order. */
export async function allGatherJson(group: ProcessGroup, value: unknown, what: string): Promise<unknown[]> {
  const mine = encode(value);
  const lengths = new Int32Array(group.worldSize);
  await group.allGatherAsync(Int32Array.of(mine.length), lengths, { label: `${what}: lengths` });
  const width = Math.max(1, ...lengths);
  const padded = new Uint8Array(width);
  padded.set(mine);
  const all = new Uint8Array(width * group.worldSize);
  await group.allGatherAsync(padded, all, { label: `${what}: values` });
  return decode(all, lengths, width);
}

export function allGatherJsonSync(group: ProcessGroup, value: unknown, what: string): unknown[] {
  const mine = encode(value);
  const lengths = new Int32Array(group.worldSize);
  group.allGather(Int32Array.of(mine.length), lengths, { label: `${what}: lengths` });
  const width = Math.max(1, ...lengths);
  const padded = new Uint8Array(width);
  padded.set(mine);
  const all = new Uint8Array(width * group.worldSize);
  group.allGather(padded, all, { label: `${what}: values` });
  return decode(all, lengths, width);
}

/** Root's `value` (JSON) on every rank; other ranks pass anything (it is ignored). */
export async function broadcastJson(group: ProcessGroup, value: unknown, root: number, what: string): Promise<unknown> {
  const mine = group.rank === root ? encode(value) : new Uint8Array(0);
  const length = Int32Array.of(mine.length);
  await group.broadcastAsync(length, root, { label: `${what}: length` });
  const bytes = new Uint8Array(length[0]);
  if (group.rank === root) bytes.set(mine);
  await group.broadcastAsync(bytes, root, { label: `${what}: value` });
  return JSON.parse(new TextDecoder().decode(bytes), reviver);
}

/**
 * Root's `data` on every rank in chunks of at most `chunk` elements; `sink(offset, values)`
 * sees each chunk (a view valid only during the call). Other ranks pass the length.
 */
export async function broadcastFloats(
  group: ProcessGroup,
  data: Float32Array | number,
  root: number,
  chunk: number,
  sink: (offset: number, values: Float32Array) => void,
  what: string,
): Promise<void> {
  const length = typeof data === 'number' ? data : data.length;
  const buffer = new Float32Array(group.allocateHost(Math.min(length, chunk) * 4));
  for (let offset = 0; offset < length; offset += chunk) {
    const n = Math.min(chunk, length - offset);
    const view = buffer.subarray(0, n);
    if (group.rank === root) view.set((data as Float32Array).subarray(offset, offset + n));
    await group.broadcastAsync(view, root, { label: `${what}: elements ${offset} to ${offset + n}` });
    sink(offset, view);
  }
}

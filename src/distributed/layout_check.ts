// Every rank must pass the same tensors to a bucketed collective, or the buckets would not
// line up (MPI would mix tensors, truncate, or hang). Each call first agrees on a hash of
// the layout: one all-reduce of four numbers, max of (h, -h), which is equal on every rank
// exactly when every rank has the same h.
import type { ProcessGroup } from './process_group';

// FNV-1a, 32 bits, with two offset bases: two independent 32-bit hashes (exact in a double).
function fnv1a(text: string, basis: number): number {
  let h = basis >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function layoutHash(text: string): [number, number] {
  return [fnv1a(text, 0x811c9dc5), fnv1a(text, 0x050c5d1f)];
}

function values(text: string): Float64Array {
  const [a, b] = layoutHash(text);
  return Float64Array.from([a, b, -a, -b]);
}

function agree(v: Float64Array): boolean {
  return v[0] === -v[2] && v[1] === -v[3];
}

/** Throws on every rank unless every rank passes the same layout text. */
export async function checkSameLayout(group: ProcessGroup, text: string, what: string, summary: string): Promise<void> {
  const v = values(text);
  await group.allReduceAsync(v, 'max', { label: `${what}: layout check` });
  if (!agree(v))
    throw new Error(
      `${what}: the ranks passed different tensors (their shapes, dtypes, order, or which ones have grads differ); ` +
        `rank ${group.rank} has ${summary}`,
    );
}

export function checkSameLayoutSync(group: ProcessGroup, text: string, what: string, summary: string): void {
  const v = values(text);
  group.allReduce(v, 'max', { label: `${what}: layout check` });
  if (!agree(v))
    throw new Error(
      `${what}: the ranks passed different tensors (their shapes, dtypes, order, or which ones have grads differ); ` +
        `rank ${group.rank} has ${summary}`,
    );
}

// Flat host buffers that carry many tensors in one collective: grads as fp32 for
// reductions (GradBuckets), tensors' raw bits for broadcasts (RawBuckets). Tensors keep
// their order; a bucket closes when the next tensor would take it past `bucketBytes` (a
// larger tensor gets a bucket of its own). The buffers come from the backend (no copy in
// asynchronous collectives) and are reused from call to call while the layout holds.
import type { Tensor } from '../tensor';
import type { ProcessGroup } from './process_group';
import { rawArrayFor, rawBytesPerElement, readRawValues, readReduceValues } from './staging';

export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024; // torch DDP's bucket_cap_mb

export interface BucketEntry {
  /** Index into the tensor list the plan was made for. */
  index: number;
  numel: number;
  /** Offset in the bucket: elements (grad buckets) or bytes (raw buckets). */
  offset: number;
}

/** Cuts sizes (bytes per tensor, in order) into buckets of at most maxBytes (or one tensor). */
export function cutBuckets(bytes: readonly number[], maxBytes: number, align = 1): number[][] {
  const buckets: number[][] = [];
  let current: number[] = [];
  let used = 0;
  bytes.forEach((b, i) => {
    const start = Math.ceil(used / align) * align;
    if (current.length > 0 && start + b > maxBytes) {
      buckets.push(current);
      current = [];
      used = 0;
    }
    used = Math.ceil(used / align) * align + b;
    current.push(i);
  });
  if (current.length > 0) buckets.push(current);
  return buckets;
}

export function checkBucketBytes(value: unknown, where: string): number {
  const v = value ?? DEFAULT_BUCKET_BYTES;
  if (!Number.isSafeInteger(v) || (v as number) < 1)
    throw new RangeError(`${where}: bucketBytes must be a positive integer, got ${String(value)}`);
  return v as number;
}

/** Grads as fp32, in buckets: pack(), reduce each bucket's `values`, unpack(). */
export class GradBucket {
  readonly entries: BucketEntry[];
  readonly values: Float32Array;

  constructor(group: ProcessGroup, entries: BucketEntry[]) {
    this.entries = entries;
    const numel = entries.reduce((n, e) => n + e.numel, 0);
    this.values = new Float32Array(group.allocateHost(numel * 4));
  }

  pack(grads: readonly Tensor[]): void {
    for (const e of this.entries) readReduceValues(grads[e.index], this.values.subarray(e.offset, e.offset + e.numel));
  }

  unpack(grads: readonly Tensor[]): void {
    for (const e of this.entries) grads[e.index].copyFrom(this.values.subarray(e.offset, e.offset + e.numel));
  }
}

export function gradBuckets(group: ProcessGroup, numels: readonly number[], bucketBytes: number): GradBucket[] {
  return cutBuckets(
    numels.map((n) => n * 4),
    bucketBytes,
  ).map((indices) => {
    let offset = 0;
    const entries = indices.map((index) => {
      const e = { index, numel: numels[index], offset };
      offset += numels[index];
      return e;
    });
    return new GradBucket(group, entries);
  });
}

/** Tensors' exact bits (fp32 values, 16-bit patterns), for broadcasts. */
export class RawBucket {
  readonly entries: BucketEntry[];
  readonly bytes: Uint8Array;
  readonly #buffer: ArrayBuffer;

  constructor(group: ProcessGroup, tensors: readonly Tensor[], indices: readonly number[]) {
    let offset = 0;
    this.entries = indices.map((index) => {
      offset = Math.ceil(offset / 4) * 4; // fp32 views need 4-byte alignment
      const e = { index, numel: tensors[index].numel, offset };
      offset += tensors[index].numel * rawBytesPerElement(tensors[index]);
      return e;
    });
    this.#buffer = group.allocateHost(offset);
    this.bytes = new Uint8Array(this.#buffer);
  }

  pack(tensors: readonly Tensor[]): void {
    for (const e of this.entries) {
      const t = tensors[e.index];
      readRawValues(t, rawArrayFor(t, e.numel, this.#buffer, e.offset));
    }
  }

  unpack(tensors: readonly Tensor[]): void {
    for (const e of this.entries) {
      const t = tensors[e.index];
      t.copyFrom(rawArrayFor(t, e.numel, this.#buffer, e.offset));
    }
  }
}

export function rawBuckets(group: ProcessGroup, tensors: readonly Tensor[], bucketBytes: number): RawBucket[] {
  return cutBuckets(
    tensors.map((t) => t.numel * rawBytesPerElement(t)),
    bucketBytes,
    4,
  ).map((indices) => new RawBucket(group, tensors, indices));
}

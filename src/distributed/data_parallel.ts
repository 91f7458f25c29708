// Data parallelism: every rank holds the whole model, computes grads on its part of the
// batch, and allReduceGrads() averages the grads so every rank takes the same step.
// broadcastParams() starts every rank from root's values.
//
// Grads travel in flat fp32 buckets (buckets.ts), one collective per bucket; while one
// bucket is reduced on the communication thread the next is packed on this one. Before
// the buckets, one small all-reduce checks that every rank passed the same layout.
import { Parameter } from '../parameter';
import type { Tensor } from '../tensor';
import type { ReduceOp } from './backend';
import { type GradBucket, type RawBucket, checkBucketBytes, gradBuckets, rawBuckets } from './buckets';
import { describeValue } from './host_arrays';
import { checkSameLayout } from './layout_check';
import { ProcessGroup } from './process_group';

export interface AllReduceGradsOptions {
  group: ProcessGroup;
  /** 'avg' (default): the mean over ranks, as DDP; 'sum'. */
  op?: Extract<ReduceOp, 'avg' | 'sum'>;
  /** Largest bucket in bytes (fp32), default 25 MiB; a larger grad gets a bucket of its own. */
  bucketBytes?: number;
  /** Sum in rank order (bit for bit the same on every run); see ProcessGroup.allReduce. */
  ordered?: boolean;
}

export interface BroadcastParamsOptions {
  group: ProcessGroup;
  root?: number;
  bucketBytes?: number;
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function checkGroup(group: unknown, where: string): ProcessGroup {
  if (!(group instanceof ProcessGroup))
    throw new TypeError(`${where}: group must be the ProcessGroup from init(), got ${describeValue(group)}`);
  return group;
}

function checkKeys(options: object, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(options))
    if (!allowed.includes(key)) throw new TypeError(`${where}: unknown option '${key}'`);
}

export function paramList(params: unknown, where: string): Parameter[] {
  if (
    params === null ||
    typeof params !== 'object' ||
    typeof (params as Iterable<unknown>)[Symbol.iterator] !== 'function'
  )
    throw new TypeError(`${where}: params must be an iterable of Parameters, got ${describeValue(params)}`);
  const list = [...(params as Iterable<unknown>)];
  const seen = new Set<Parameter>();
  list.forEach((p, i) => {
    if (!(p instanceof Parameter)) throw new TypeError(`${where}: params[${i}] is not a Parameter`);
    if (seen.has(p)) throw new RangeError(`${where}: param '${p.name || `#${i}`}' is listed twice`);
    seen.add(p);
    p.data.checkAlive(`${where}: param '${p.name || `#${i}`}' data`);
  });
  return list as Parameter[];
}

// The grads to reduce, in param order, and the layout every rank must share.
function gradsOf(params: Parameter[], where: string): { grads: Tensor[]; layout: string; summary: string } {
  const grads: Tensor[] = [];
  const parts: string[] = [];
  params.forEach((p, i) => {
    const label = `param '${p.name || `#${i}`}'`;
    if (p.sparseGrad) throw new TypeError(`${where}: ${label} has a row-sparse grad; only dense grads can be reduced`);
    if (!p.grad) return;
    p.grad.checkAlive(`${where}: the grad of ${label}`);
    grads.push(p.grad);
    parts.push(`${i}:${p.grad.numel}:${p.grad.dtype}:${p.grad.device}`);
  });
  return {
    grads,
    layout: `${params.length}|${parts.join(',')}`,
    summary: `grads for ${grads.length} of ${params.length} params (${grads.reduce((n, g) => n + g.numel, 0)} elements)`,
  };
}

// Buckets are kept per group and layout, so a training loop allocates them once.
const gradPlans = new WeakMap<ProcessGroup, Map<string, GradBucket[]>>();

function cachedGradBuckets(group: ProcessGroup, key: string, numels: number[], bucketBytes: number): GradBucket[] {
  let plans = gradPlans.get(group);
  if (!plans) gradPlans.set(group, (plans = new Map()));
  const k = `${bucketBytes}|${key}`;
  let buckets = plans.get(k);
  if (!buckets) {
    if (plans.size >= 4) plans.delete(plans.keys().next().value as string); // a few layouts, not unbounded
    buckets = gradBuckets(group, numels, bucketBytes);
    plans.set(k, buckets);
  }
  return buckets;
}

/**
 * Averages (or sums) every param's grad across the ranks of `group`, in place. Params
 * without a grad are skipped; every rank must pass the same params with grads of the same
 * shapes and dtypes (checked first: a mismatch throws on every rank).
 */
export async function allReduceGrads(params: Iterable<Parameter>, options: AllReduceGradsOptions): Promise<void> {
  const where = 'allReduceGrads';
  if (options === null || typeof options !== 'object')
    throw new TypeError(`${where}: options must be { group, op?, bucketBytes?, ordered? }`);
  checkKeys(options, ['group', 'op', 'bucketBytes', 'ordered'], where);
  const group = checkGroup(options.group, where);
  const op = options.op ?? 'avg';
  if (op !== 'avg' && op !== 'sum')
    throw new TypeError(`${where}: op must be 'avg' or 'sum', got ${describeValue(op)}`);
  const ordered = options.ordered ?? false;
  if (typeof ordered !== 'boolean') throw new TypeError(`${where}: ordered must be a boolean`);
  const bucketBytes = checkBucketBytes(options.bucketBytes, where);
  const list = paramList(params, where);
  const { grads, layout, summary } = gradsOf(list, where);

  await checkSameLayout(group, layout, where, summary);
  if (grads.length === 0) return;
  const buckets = cachedGradBuckets(
    group,
    layout,
    grads.map((g) => g.numel),
    bucketBytes,
  );
  // Pack and queue every bucket (the communication thread starts on the first while the
  // next is packed), then write each back as it completes.
  // The event loop runs between buckets: a bucket's copies take milliseconds, all of them
  // may take far longer.
  const inFlight: Promise<void>[] = [];
  for (const [k, b] of buckets.entries()) {
    if (k > 0) await yieldToEventLoop();
    b.pack(grads);
    inFlight.push(
      group.allReduceAsync(
        b.values,
        { op, ordered },
        { label: `allReduceGrads bucket ${k + 1} of ${buckets.length} (${b.entries.length} grads)` },
      ),
    );
  }
  for (let k = 0; k < buckets.length; k++) {
    await inFlight[k];
    buckets[k].unpack(grads);
  }
}

/** Copies root's param values to every rank (exact bits), e.g. before the first step. */
export async function broadcastParams(params: Iterable<Parameter>, options: BroadcastParamsOptions): Promise<void> {
  const where = 'broadcastParams';
  if (options === null || typeof options !== 'object')
    throw new TypeError(`${where}: options must be { group, root?, bucketBytes? }`);
  checkKeys(options, ['group', 'root', 'bucketBytes'], where);
  const group = checkGroup(options.group, where);
  const root = options.root ?? 0;
  if (!Number.isSafeInteger(root) || root < 0 || root >= group.worldSize)
    throw new RangeError(`${where}: root must be an integer from 0 to ${group.worldSize - 1}, got ${String(root)}`);
  const bucketBytes = checkBucketBytes(options.bucketBytes, where);
  const list = paramList(params, where);
  const tensors = list.map((p) => p.data);
  const layout = list.map((p) => `${p.name}:${p.data.shape.join('x')}:${p.data.dtype}`).join(',');
  await checkSameLayout(group, layout, where, `${list.length} params`);
  await broadcastTensors(group, tensors, root, bucketBytes, where);
}

/**
 * @internal queues the broadcasts of root's tensors, bucket by bucket (root packs each just
 * before); resolves, once all are queued, to a promise per bucket. Every rank queues the
 * same calls in the same order, yielding to the event loop at the same points.
 */
export async function queueBroadcasts(
  group: ProcessGroup,
  tensors: readonly Tensor[],
  root: number,
  buckets: readonly RawBucket[],
  what: string,
): Promise<Promise<void>[]> {
  const inFlight: Promise<void>[] = [];
  for (const [k, b] of buckets.entries()) {
    if (k > 0) await yieldToEventLoop();
    if (group.rank === root) b.pack(tensors);
    inFlight.push(
      group.broadcastAsync(b.bytes, root, {
        label: `${what} bucket ${k + 1} of ${buckets.length} (${b.entries.length} tensors)`,
      }),
    );
  }
  return inFlight;
}

/** @internal root's tensors to every rank, in raw buckets. */
export async function broadcastTensors(
  group: ProcessGroup,
  tensors: readonly Tensor[],
  root: number,
  bucketBytes: number,
  what: string,
): Promise<void> {
  const buckets = rawBuckets(group, tensors, bucketBytes);
  const inFlight = await queueBroadcasts(group, tensors, root, buckets, what);
  for (let k = 0; k < buckets.length; k++) {
    await inFlight[k];
    if (group.rank !== root) buckets[k].unpack(tensors);
  }
}

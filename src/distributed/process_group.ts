// ProcessGroup: the ranks of a job and the collectives between them, on fused-optim
// Tensors and on typed arrays, each in a blocking form and an asynchronous one (run off the
// JavaScript thread). Every rank must issue the same collectives in the same order; the
// backend runs them in submission order, and names each one in its messages ("allReduce #12
// (4096 float32, avg)") so a timeout says which call a rank was waiting in.
import { Tensor } from '../tensor';
import {
  type CollectiveBackend,
  type CollectiveCall,
  CollectiveKind,
  type HostArray,
  REDUCE_OPS,
  type ReduceOp,
} from './backend';
import { arrayTypeName, describeValue, isFloatArray, isHostArray } from './host_arrays';
import { rawArrayFor, rawBytesPerElement, readRawValues, readReduceValues } from './staging';

export interface ReduceOptions {
  /** 'sum' (default), 'avg' (sum / worldSize, floating-point only), 'max' or 'min'. */
  op?: ReduceOp;
  /**
   * Sum in rank order, rank 0 + rank 1 + ..., the same bits on every run (default false:
   * the library's own order, usually faster). Costs an all-to-all plus an all-gather.
   */
  ordered?: boolean;
}

/** Names a collective in timeout and fault messages (e.g. "bucket 2 of 5 of allReduceGrads"). */
export interface CallContext {
  label?: string;
}

type Buffer = Tensor | HostArray;

interface Prepared {
  call: CollectiveCall;
  /** Writes results back into tensors (a no-op for typed arrays). */
  finish(): void;
}

function checkOptions(options: unknown, where: string): Required<ReduceOptions> {
  if (options === undefined) return { op: 'sum', ordered: false };
  if (typeof options === 'string') options = { op: options };
  if (options === null || typeof options !== 'object')
    throw new TypeError(`${where}: options must be an op name or { op, ordered }, got ${describeValue(options)}`);
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o))
    if (key !== 'op' && key !== 'ordered') throw new TypeError(`${where}: unknown option '${key}'`);
  const op = o.op ?? 'sum';
  if (!REDUCE_OPS.includes(op as ReduceOp))
    throw new TypeError(`${where}: op must be one of ${REDUCE_OPS.join(', ')}, got ${describeValue(op)}`);
  const ordered = o.ordered ?? false;
  if (typeof ordered !== 'boolean')
    throw new TypeError(`${where}: ordered must be a boolean, got ${describeValue(ordered)}`);
  return { op: op as ReduceOp, ordered };
}

function checkBuffer(b: unknown, where: string): Buffer {
  if (b instanceof Tensor) {
    b.checkAlive(where);
    return b;
  }
  if (isHostArray(b)) return b;
  throw new TypeError(
    `${where} must be a Tensor or a typed array (Float32Array, Float64Array, Int8/16/32Array, Uint8/16/32Array, BigInt64Array, BigUint64Array), got ${describeValue(b)}`,
  );
}

function countOf(b: Buffer): number {
  return b instanceof Tensor ? b.numel : b.length;
}

function typeOf(b: Buffer): string {
  return b instanceof Tensor ? b.dtype : arrayTypeName(b);
}

export class ProcessGroup {
  /** @internal */
  readonly backend: CollectiveBackend;
  #sequence = 0;

  /** @internal use init(). */
  constructor(backend: CollectiveBackend) {
    this.backend = backend;
  }

  get rank(): number {
    return this.backend.info.rank;
  }

  get worldSize(): number {
    return this.backend.info.worldSize;
  }

  /** The backend's name ('mpi'), library and host. */
  get info(): Readonly<CollectiveBackend['info']> {
    return this.backend.info;
  }

  /** Seconds a collective may wait for the other ranks before the job is aborted. */
  get timeoutSeconds(): number {
    return this.backend.timeoutSeconds;
  }

  set timeoutSeconds(seconds: number) {
    if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds <= 0)
      throw new RangeError(`timeoutSeconds must be a finite number > 0, got ${String(seconds)}`);
    this.backend.timeoutSeconds = seconds;
  }

  get destroyed(): boolean {
    return this.backend.destroyed;
  }

  /** Reduces `buffer` across ranks, in place: every rank ends with the result. */
  allReduce(buffer: Buffer, options?: ReduceOp | ReduceOptions, context?: CallContext): void {
    this.#runSync(this.#allReduce(buffer, options, context, false));
  }

  allReduceAsync(buffer: Buffer, options?: ReduceOp | ReduceOptions, context?: CallContext): Promise<void> {
    return this.#runAsync(() => this.#allReduce(buffer, options, context, true));
  }

  /**
   * Reduces `input` (worldSize blocks of output's length) across ranks; rank r receives the
   * reduced block r in `output`.
   */
  reduceScatter(input: Buffer, output: Buffer, options?: ReduceOp | ReduceOptions, context?: CallContext): void {
    this.#runSync(this.#reduceScatter(input, output, options, context, false));
  }

  reduceScatterAsync(
    input: Buffer,
    output: Buffer,
    options?: ReduceOp | ReduceOptions,
    context?: CallContext,
  ): Promise<void> {
    return this.#runAsync(() => this.#reduceScatter(input, output, options, context, true));
  }

  /** Concatenates every rank's `input` in rank order into `output` (worldSize x input's length). */
  allGather(input: Buffer, output: Buffer, context?: CallContext): void {
    this.#runSync(this.#allGather(input, output, context, false));
  }

  allGatherAsync(input: Buffer, output: Buffer, context?: CallContext): Promise<void> {
    return this.#runAsync(() => this.#allGather(input, output, context, true));
  }

  /** Copies root's `buffer` into every other rank's `buffer` (exact for every dtype). */
  broadcast(buffer: Buffer, root = 0, context?: CallContext): void {
    this.#runSync(this.#broadcast(buffer, root, context, false));
  }

  broadcastAsync(buffer: Buffer, root = 0, context?: CallContext): Promise<void> {
    return this.#runAsync(() => this.#broadcast(buffer, root, context, true));
  }

  /** Returns when every rank has called it. */
  barrier(context?: CallContext): void {
    this.#runSync(this.#call(CollectiveKind.Barrier, 'barrier', context));
  }

  barrierAsync(context?: CallContext): Promise<void> {
    return this.#runAsync(() => this.#call(CollectiveKind.Barrier, 'barrier', context));
  }

  /**
   * Host memory the backend uses without a copy, also in the asynchronous forms (a plain
   * typed array is copied in and out around an asynchronous collective).
   */
  allocateHost(bytes: number): ArrayBuffer {
    if (!Number.isSafeInteger(bytes) || bytes < 0)
      throw new RangeError(`allocateHost: bytes must be a non-negative integer, got ${String(bytes)}`);
    this.#checkUsable('allocateHost');
    return this.backend.allocateHost(bytes);
  }

  /**
   * Ends the group: waits for queued collectives, then shuts MPI down (MPI_Finalize). Every
   * rank must call it; a process that exits without it finalizes on a clean exit and aborts
   * the job on an error exit.
   */
  destroy(): void {
    if (!this.backend.destroyed) this.backend.destroy();
  }

  /** Prints `message` and ends every rank of the job at once (MPI_Abort). */
  abort(message: string, code = 1): never {
    this.backend.abort(code, message);
    throw new Error(`abort: the process group is not running (${message})`);
  }

  toString(): string {
    return `ProcessGroup(${this.backend.info.name}, rank ${this.rank} of ${this.worldSize})`;
  }

  // -------------------------------------------------------------------------------------

  #checkUsable(where: string): void {
    if (this.backend.destroyed) throw new Error(`${where}: the process group has been destroyed`);
  }

  #label(name: string, detail: string, context?: CallContext): string {
    if (context !== undefined && (context === null || typeof context !== 'object'))
      throw new TypeError(`${name}: context must be { label }`);
    const extra = context?.label ? `: ${context.label}` : '';
    return `${name} #${++this.#sequence} (${detail})${extra}`;
  }

  #call(kind: CollectiveKind, name: string, context?: CallContext, detail = ''): Prepared {
    this.#checkUsable(name);
    return {
      call: { kind, op: 'sum', root: 0, ordered: false, label: this.#label(name, detail || 'all ranks', context) },
      finish: () => {},
    };
  }

  #runSync(p: Prepared): void {
    this.backend.run(p.call);
    p.finish();
  }

  async #runAsync(prepare: () => Prepared): Promise<void> {
    const p = prepare();
    await this.backend.runAsync(p.call);
    p.finish();
  }

  // A host array for an asynchronous call: over backend memory, so nothing is copied twice.
  #hostArrayLike<T extends HostArray>(make: (buffer: ArrayBuffer) => T, bytes: number): T {
    return make(this.backend.allocateHost(bytes));
  }

  #allReduce(buffer: unknown, options: unknown, context: CallContext | undefined, async: boolean): Prepared {
    const where = 'allReduce';
    const b = checkBuffer(buffer, `${where}: buffer`);
    const o = checkOptions(options, where);
    if (o.op === 'avg' && !(b instanceof Tensor) && !isFloatArray(b))
      throw new TypeError(`${where}: 'avg' needs floating-point data, got a ${typeOf(b)}`);
    this.#checkUsable(where);
    const label = this.#label(where, `${countOf(b)} ${typeOf(b)}, ${o.op}${o.ordered ? ', ordered' : ''}`, context);
    if (!(b instanceof Tensor))
      return { call: { kind: CollectiveKind.AllReduce, input: b, ...o, root: 0, label }, finish: () => {} };
    const host = async ? this.#hostArrayLike((ab) => new Float32Array(ab), b.numel * 4) : new Float32Array(b.numel);
    readReduceValues(b, host);
    return {
      call: { kind: CollectiveKind.AllReduce, input: host, ...o, root: 0, label },
      finish: () => b.copyFrom(host),
    };
  }

  #reduceScatter(
    input: unknown,
    output: unknown,
    options: unknown,
    context: CallContext | undefined,
    async: boolean,
  ): Prepared {
    const where = 'reduceScatter';
    const i = checkBuffer(input, `${where}: input`);
    const out = checkBuffer(output, `${where}: output`);
    const o = checkOptions(options, where);
    this.#checkBothKinds(i, out, where);
    if (countOf(i) !== countOf(out) * this.worldSize)
      throw new RangeError(
        `${where}: input has ${countOf(i)} elements; it must have worldSize (${this.worldSize}) x output's ${countOf(out)}`,
      );
    if (!(i instanceof Tensor) && i.constructor !== out.constructor)
      throw new TypeError(`${where}: input is a ${typeOf(i)} but output is a ${typeOf(out)}`);
    if (o.op === 'avg' && !(i instanceof Tensor) && !isFloatArray(i))
      throw new TypeError(`${where}: 'avg' needs floating-point data, got a ${typeOf(i)}`);
    this.#checkUsable(where);
    const label = this.#label(
      where,
      `${countOf(i)} ${typeOf(i)} -> ${countOf(out)}, ${o.op}${o.ordered ? ', ordered' : ''}`,
      context,
    );
    if (!(i instanceof Tensor) || !(out instanceof Tensor))
      return {
        call: {
          kind: CollectiveKind.ReduceScatter,
          input: i as HostArray,
          output: out as HostArray,
          ...o,
          root: 0,
          label,
        },
        finish: () => {},
      };
    const hostIn = async ? this.#hostArrayLike((ab) => new Float32Array(ab), i.numel * 4) : new Float32Array(i.numel);
    readReduceValues(i, hostIn);
    const hostOut = async
      ? this.#hostArrayLike((ab) => new Float32Array(ab), out.numel * 4)
      : new Float32Array(out.numel);
    return {
      call: { kind: CollectiveKind.ReduceScatter, input: hostIn, output: hostOut, ...o, root: 0, label },
      finish: () => out.copyFrom(hostOut),
    };
  }

  #allGather(input: unknown, output: unknown, context: CallContext | undefined, async: boolean): Prepared {
    const where = 'allGather';
    const i = checkBuffer(input, `${where}: input`);
    const out = checkBuffer(output, `${where}: output`);
    this.#checkBothKinds(i, out, where);
    if (countOf(out) !== countOf(i) * this.worldSize)
      throw new RangeError(
        `${where}: output has ${countOf(out)} elements; it must have worldSize (${this.worldSize}) x input's ${countOf(i)}`,
      );
    if (typeOf(i) !== typeOf(out)) throw new TypeError(`${where}: input is ${typeOf(i)} but output is ${typeOf(out)}`);
    this.#checkUsable(where);
    const label = this.#label(where, `${countOf(i)} ${typeOf(i)} per rank`, context);
    if (!(i instanceof Tensor) || !(out instanceof Tensor))
      return {
        call: {
          kind: CollectiveKind.AllGather,
          input: i as HostArray,
          output: out as HostArray,
          op: 'sum',
          root: 0,
          ordered: false,
          label,
        },
        finish: () => {},
      };
    const bytes = rawBytesPerElement(i);
    const hostIn = async
      ? rawArrayFor(i, i.numel, this.backend.allocateHost(i.numel * bytes))
      : rawArrayFor(i, i.numel);
    readRawValues(i, hostIn);
    const hostOut = async
      ? rawArrayFor(out, out.numel, this.backend.allocateHost(out.numel * bytes))
      : rawArrayFor(out, out.numel);
    return {
      call: {
        kind: CollectiveKind.AllGather,
        input: hostIn,
        output: hostOut,
        op: 'sum',
        root: 0,
        ordered: false,
        label,
      },
      finish: () => out.copyFrom(hostOut),
    };
  }

  #broadcast(buffer: unknown, root: unknown, context: CallContext | undefined, async: boolean): Prepared {
    const where = 'broadcast';
    const b = checkBuffer(buffer, `${where}: buffer`);
    if (!Number.isSafeInteger(root) || (root as number) < 0 || (root as number) >= this.worldSize)
      throw new RangeError(`${where}: root must be an integer from 0 to ${this.worldSize - 1}, got ${String(root)}`);
    this.#checkUsable(where);
    const r = root as number;
    const label = this.#label(where, `${countOf(b)} ${typeOf(b)} from rank ${r}`, context);
    if (!(b instanceof Tensor))
      return {
        call: { kind: CollectiveKind.Broadcast, input: b, op: 'sum', root: r, ordered: false, label },
        finish: () => {},
      };
    const host = async
      ? rawArrayFor(b, b.numel, this.backend.allocateHost(b.numel * rawBytesPerElement(b)))
      : rawArrayFor(b, b.numel);
    if (this.rank === r) readRawValues(b, host);
    return {
      call: { kind: CollectiveKind.Broadcast, input: host, op: 'sum', root: r, ordered: false, label },
      // The root keeps its tensor untouched: rewriting it would make an optimizer re-read
      // a half param's fp32 master from the rounded value.
      finish: () => {
        if (this.rank !== r) b.copyFrom(host);
      },
    };
  }

  #checkBothKinds(a: Buffer, b: Buffer, where: string): void {
    if (a instanceof Tensor !== b instanceof Tensor)
      throw new TypeError(`${where}: input and output must both be Tensors or both be typed arrays`);
  }
}

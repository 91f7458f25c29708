// The contract between a ProcessGroup and the library that moves the bytes. The MPI backend
// (mpi_backend.ts) is the one built today; an NCCL backend would implement the same calls
// on device memory and list 'cuda' in `devices`, so that the process group hands it GPU
// tensors directly instead of staging them through host memory (docs/distributed.md).
import type { DeviceName } from '../dtype';

/** The typed arrays collectives accept (a Uint8ClampedArray is not one: it clamps). */
export type HostArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** 'avg' is a sum divided by the world size (floating-point data only). */
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'avg', 'max', 'min'];

/** The numbering native/mpi/collectives.h uses. */
export enum CollectiveKind {
  AllReduce = 0,
  ReduceScatter = 1,
  AllGather = 2,
  Broadcast = 3,
  Barrier = 4,
}

export interface CollectiveCall {
  kind: CollectiveKind;
  /** AllReduce and Broadcast work in place on `input`. */
  input?: HostArray;
  output?: HostArray;
  op: ReduceOp;
  root: number;
  /** Reduce in rank order (deterministic) instead of the library's own order. */
  ordered: boolean;
  /** Names the call in timeout and fault messages, e.g. "allReduce #12 (bucket 2 of 5 ...)". */
  label: string;
}

export interface BackendInfo {
  /** e.g. 'mpi' */
  name: string;
  rank: number;
  worldSize: number;
  /** The library and its version, e.g. "Open MPI v4.1.4 ...". */
  library: string;
  hostname: string;
}

export interface CollectiveBackend {
  readonly info: BackendInfo;
  /** Devices whose memory the backend reads and writes itself; others are staged through host memory. */
  readonly devices: readonly DeviceName[];
  /** Blocks the calling thread until the collective is complete on this rank. */
  run(call: CollectiveCall): void;
  /** Runs off the JavaScript thread; resolves when complete on this rank. */
  runAsync(call: CollectiveCall): Promise<void>;
  /** Host memory the backend can use without copying, also in asynchronous calls. */
  allocateHost(bytes: number): ArrayBuffer;
  timeoutSeconds: number;
  /** Collectives queued or running. */
  readonly pending: number;
  /** Runs what is queued, then shuts the library down (every rank must call it). */
  destroy(): void;
  readonly destroyed: boolean;
  /** Prints message and ends every rank of the job (returns only if the backend is not running). */
  abort(code: number, message: string): void;
}

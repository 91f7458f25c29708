// The addon's checkpoint transfers (native/addon/checkpoint_wrap.cpp over
// native/checkpoint/transfer.h): tensor bytes between memory and an open file, with a CRC-32
// per tensor, on a worker thread and in bounded memory (two staging buffers, together at most
// `stagingBytes`). The JavaScript thread only hands over lists.
import { type NativeStorageRef, type NativeTensorHandle, native } from '../native';
import type { SafetensorsDType } from './safetensors_header';

/** Default and limits of the staging budget (native/checkpoint/transfer.h). */
export const DEFAULT_STAGING_BYTES = 64 << 20;
export const MIN_STAGING_BYTES = 1 << 20;
export const MAX_STAGING_BYTES = 2 ** 34;

/**
 * A tensor's bytes in native memory: a param's data, an optimizer state buffer (through a
 * storage ref, no copy), or a snapshot of either. The state dicts a checkpoint writes hold
 * these where stateDict() would hold host copies.
 */
export class NativeBuffer {
  readonly ref: NativeStorageRef | NativeTensorHandle;
  readonly dtype: SafetensorsDType;
  readonly numel: number;
  constructor(ref: NativeStorageRef | NativeTensorHandle, dtype: SafetensorsDType, numel: number) {
    this.ref = ref;
    this.dtype = dtype;
    this.numel = numel;
  }
  get byteLength(): number {
    return this.numel * (this.dtype === 'F32' ? 4 : 2);
  }
}

/** A state buffer that a load will read from the file: its element count, for the checks before. */
export class BufferSlot {
  readonly numel: number;
  /** The file's tensor. */
  readonly tensor: string;
  constructor(numel: number, tensor: string) {
    this.numel = numel;
    this.tensor = tensor;
  }
}

/** What a write takes its bytes from: native memory, or a typed array (copied when the write starts). */
export type WriteSource = NativeStorageRef | NativeTensorHandle | ArrayBufferView;

/** Writes each source at its file offset; resolves with their CRC-32s. `release`: free snapshot memory as it goes. */
export function writeTensors(
  fd: number,
  sources: readonly WriteSource[],
  offsets: Float64Array,
  stagingBytes: number,
  release = false,
): Promise<Uint32Array> {
  return native().checkpointWrite(fd, sources as WriteSource[], offsets, stagingBytes, release);
}

/** How file bytes become a destination's (native/checkpoint/transfer.h). */
export const CONVERT = { none: 0, bf16: 1, f16: 2, f64: 3 } as const;

/**
 * Reads file ranges into destinations (null: CRC only), widening to fp32 where `converts`
 * says; resolves with the CRC-32 of each range's file bytes.
 */
export function readTensors(
  fd: number,
  destinations: ReadonlyArray<NativeStorageRef | NativeTensorHandle | null>,
  offsets: Float64Array,
  fileBytes: Float64Array,
  converts: Uint8Array,
  stagingBytes: number,
): Promise<Uint32Array> {
  return native().checkpointRead(
    fd,
    destinations as Array<NativeStorageRef | NativeTensorHandle | null>,
    offsets,
    fileBytes,
    converts,
    stagingBytes,
  );
}

/** Host copies of native tensors (a background save's consistent snapshot). */
export function snapshotTensors(
  sources: ReadonlyArray<NativeStorageRef | NativeTensorHandle>,
): Promise<NativeStorageRef[]> {
  return native().checkpointSnapshot(sources as Array<NativeStorageRef | NativeTensorHandle>);
}

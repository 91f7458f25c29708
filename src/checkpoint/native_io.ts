// The addon's checkpoint transfers (native/addon/checkpoint_wrap.cpp over
// native/checkpoint/transfer.h): tensor bytes between memory and an open file, with a CRC-32
// per tensor, on a worker thread and in bounded memory (two staging buffers, together at most
// `stagingBytes`). The JavaScript thread only hands over lists.
import { type NativeTensorHandle, type NativeTensorTable, native } from '../native';
import type { SafetensorsDType } from './safetensors_header';

/** Default and limits of the staging budget (native/checkpoint/transfer.h). */
export const DEFAULT_STAGING_BYTES = 64 << 20;
export const MIN_STAGING_BYTES = 1 << 20;
export const MAX_STAGING_BYTES = 2 ** 34;

/** Entry `index` of a tensor table (an optimizer's state buffers, a snapshot). */
export class TableEntry {
  readonly table: NativeTensorTable;
  readonly index: number;
  constructor(table: NativeTensorTable, index: number) {
    this.table = table;
    this.index = index;
  }
}

/**
 * Where a tensor's bytes are, or go: a tensor (TensorHandle), a table entry, a typed array
 * (written only; copied when the write starts), or null (read: checksummed only).
 */
export type TensorPlace = NativeTensorHandle | TableEntry | ArrayBufferView | null;

/** A tensor's bytes in native memory: a param's data, an optimizer state buffer, a snapshot of either. */
export class NativeBuffer {
  readonly place: NativeTensorHandle | TableEntry;
  readonly dtype: SafetensorsDType;
  readonly numel: number;
  constructor(place: NativeTensorHandle | TableEntry, dtype: SafetensorsDType, numel: number) {
    this.place = place;
    this.dtype = dtype;
    this.numel = numel;
  }
  get byteLength(): number {
    return this.numel * (this.dtype === 'F32' ? 4 : 2);
  }
}

/** A state buffer that a load will read from the file: its element count and dtype, for the checks before. */
export class BufferSlot {
  readonly numel: number;
  /** The file's tensor. */
  readonly tensor: string;
  readonly dtype: SafetensorsDType;
  constructor(numel: number, tensor: string, dtype: SafetensorsDType) {
    this.numel = numel;
    this.tensor = tensor;
    this.dtype = dtype;
  }
}

// The addon's form of a list of places: the table entries by index, the rest in a list.
function split(places: readonly TensorPlace[]): {
  list: Array<NativeTensorHandle | ArrayBufferView | null | undefined>;
  table?: NativeTensorTable;
  index?: Int32Array;
} {
  const list: Array<NativeTensorHandle | ArrayBufferView | null | undefined> = new Array(places.length);
  const index = new Int32Array(places.length).fill(-1);
  let table: NativeTensorTable | undefined;
  places.forEach((p, i) => {
    if (!(p instanceof TableEntry)) {
      list[i] = p;
      return;
    }
    if (table !== undefined && p.table !== table) throw new Error('a checkpoint transfer takes one tensor table');
    table = p.table;
    index[i] = p.index;
  });
  return table === undefined ? { list } : { list, table, index };
}

/** Writes each tensor at its file offset; resolves with their CRC-32s. `release`: the table is a snapshot, freed once written. */
export function writeTensors(
  fd: number,
  places: readonly TensorPlace[],
  offsets: Float64Array,
  stagingBytes: number,
  release = false,
): Promise<Uint32Array> {
  const { list, table, index } = split(places);
  return native().checkpointWrite(
    fd,
    list as Array<NativeTensorHandle | ArrayBufferView | undefined>,
    offsets,
    stagingBytes,
    release,
    table,
    index,
  );
}

/** How file bytes become a destination's (native/checkpoint/transfer.h). */
export const CONVERT = { none: 0, bf16: 1, f16: 2, f64: 3 } as const;

/**
 * Reads file ranges into destinations (null: CRC only), widening to fp32 where `converts`
 * says; resolves with the CRC-32 of each range's file bytes.
 */
export function readTensors(
  fd: number,
  places: readonly TensorPlace[],
  offsets: Float64Array,
  fileBytes: Float64Array,
  converts: Uint8Array,
  stagingBytes: number,
): Promise<Uint32Array> {
  const { list, table, index } = split(places);
  return native().checkpointRead(
    fd,
    list as Array<NativeTensorHandle | null | undefined>,
    offsets,
    fileBytes,
    converts,
    stagingBytes,
    table,
    index,
  );
}

/** Host copies of native tensors, as entries of one new table (a background save's snapshot). */
export async function snapshotTensors(places: ReadonlyArray<NativeTensorHandle | TableEntry>): Promise<TableEntry[]> {
  const { list, table, index } = split(places);
  const copies = await native().checkpointSnapshot(list as Array<NativeTensorHandle | undefined>, table, index);
  return places.map((_, i) => new TableEntry(copies, i));
}

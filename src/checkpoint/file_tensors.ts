// The tensors of an open checkpoint, read against their CRC-32s: small ones into JavaScript
// values, every one checksummed in one native pass, and native destinations filled from the
// file (native_io.ts).
import type { FileHandle } from './atomic';
import { crc32, crcHex } from './crc32';
import { fail } from './errors';
import { CONVERT, type TensorPlace, readTensors } from './native_io';
import { type ParsedHeader, type SafetensorsDType, type TensorData, typedArrayOf } from './safetensors_header';
import { readFully } from './file_reads';
import { type TensorIndex, tensorIndexOf } from './header_table';
import type { Slicer } from './yielding';

/** A destination of a native read: where a tensor's bytes go, widened to fp32 or not. */
export interface Destination {
  place: Exclude<TensorPlace, ArrayBufferView | null>;
  convert: number;
}

/** How a tensor of `dtype` becomes fp32 optimizer state, or undefined if it cannot. */
export function stateConvert(dtype: SafetensorsDType): number | undefined {
  return STATE_CONVERTS.get(dtype);
}
const STATE_CONVERTS = new Map<SafetensorsDType, number>([
  ['F32', CONVERT.none],
  ['BF16', CONVERT.bf16],
  ['F16', CONVERT.f16],
  ['F64', CONVERT.f64],
]);

export class FileTensors {
  readonly #fh: FileHandle;
  /** Expected CRC-32 of each tensor, in file order. */
  readonly #crcs: Uint32Array;
  readonly #stagingBytes: number;
  readonly #tensors: TensorIndex;
  readonly #offsets: Float64Array;
  readonly #bytes: Float64Array;

  private constructor(fh: FileHandle, header: ParsedHeader, crcs: Uint32Array, stagingBytes: number) {
    this.#fh = fh;
    this.#crcs = crcs;
    this.#stagingBytes = stagingBytes;
    this.#tensors = tensorIndexOf(header.tensors);
    const n = this.#tensors.size;
    this.#offsets = new Float64Array(n);
    this.#bytes = new Float64Array(n);
  }

  static async create(
    fh: FileHandle,
    header: ParsedHeader,
    crcs: Uint32Array,
    stagingBytes: number,
    slicer: Slicer,
  ): Promise<FileTensors> {
    const f = new FileTensors(fh, header, crcs, stagingBytes);
    const t = f.#tensors;
    for (let i = 0; i < t.size; i++) {
      if (slicer.due()) await slicer.yield();
      f.#offsets[i] = header.dataStart + t.beginAt(i);
      f.#bytes[i] = t.endAt(i) - t.beginAt(i);
    }
    return f;
  }

  /** The index in the file of a tensor the manifest checks found there. */
  indexOf(name: string): number {
    return this.#tensors.indexOf(name)!;
  }

  dtypeAt(index: number): SafetensorsDType {
    return this.#tensors.dtypeAt(index);
  }

  numelOf(name: string): number {
    return this.#tensors.numelAt(this.indexOf(name));
  }

  dtypeOf(name: string): SafetensorsDType {
    return this.#tensors.dtypeAt(this.indexOf(name));
  }

  /** Tensors as typed arrays (each in its own buffer), checked against their CRCs. */
  async readValues(names: readonly string[]): Promise<Map<string, TensorData>> {
    const out = new Map<string, TensorData>();
    for (const name of names) {
      const i = this.#tensors.indexOf(name)!;
      const bytes = new Uint8Array(new ArrayBuffer(this.#bytes[i]));
      await readFully(this.#fh, bytes, this.#offsets[i]);
      this.#check(i, crc32(bytes), 'ChecksumMismatch');
      out.set(name, typedArrayOf(this.dtypeOf(name), bytes));
    }
    return out;
  }

  /** Checksums every tensor of the file; those in `fill` (by index) are read into their destination on the way. */
  async verify(fill: ReadonlyMap<number, Destination>, slicer: Slicer): Promise<void> {
    const n = this.#tensors.size;
    const places: TensorPlace[] = new Array(n).fill(null);
    const converts = new Uint8Array(n);
    for (const [i, d] of fill) {
      if (slicer.due()) await slicer.yield();
      places[i] = d.place;
      converts[i] = d.convert;
    }
    const crcs = await readTensors(this.#fh.fd, places, this.#offsets, this.#bytes, converts, this.#stagingBytes);
    for (let i = 0; i < n; i++) if (crcs[i] !== this.#crcs[i]) this.#check(i, crcs[i], 'ChecksumMismatch');
  }

  /** Reads tensors (by index) into destinations; a tensor that no longer matches its CRC means the file changed. */
  async readInto(targets: ReadonlyMap<number, Destination>): Promise<void> {
    const order = Int32Array.from(targets.keys()).sort(); // file order
    const n = order.length;
    const places: TensorPlace[] = new Array(n);
    const converts = new Uint8Array(n);
    const offsets = new Float64Array(n);
    const bytes = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const t = order[i];
      const d = targets.get(t)!;
      places[i] = d.place;
      converts[i] = d.convert;
      offsets[i] = this.#offsets[t];
      bytes[i] = this.#bytes[t];
    }
    const crcs = await readTensors(this.#fh.fd, places, offsets, bytes, converts, this.#stagingBytes);
    for (let i = 0; i < n; i++) this.#check(order[i], crcs[i], 'PartlyApplied');
  }

  #check(i: number, crc: number, onMismatch: 'ChecksumMismatch' | 'PartlyApplied'): void {
    if (crc === this.#crcs[i]) return;
    const name = JSON.stringify(this.#tensors.nameAt(i));
    const [expected, computed] = [crcHex(this.#crcs[i]), crcHex(crc)];
    if (onMismatch === 'PartlyApplied')
      fail(
        'PartlyApplied',
        `tensor ${name} changed while the checkpoint was being loaded (stored crc32 ${expected}, now ${computed}): the checkpoint is only partly applied`,
      );
    fail(
      'ChecksumMismatch',
      `tensor ${name} fails its checksum (stored crc32 ${expected}, computed ${computed}): the file is corrupt`,
    );
  }
}

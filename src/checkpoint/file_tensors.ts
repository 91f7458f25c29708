// The tensors of an open checkpoint, read against their CRC-32s: small ones into JavaScript
// values, every one checksummed in one native pass, and native destinations filled from the
// file (native_io.ts).
import type { NativeStorageRef, NativeTensorHandle } from '../native';
import type { FileHandle } from './atomic';
import { crc32, crcHex } from './crc32';
import { fail } from './errors';
import { CONVERT, readTensors } from './native_io';
import { type ParsedHeader, type SafetensorsDType, type TensorData, typedArrayOf } from './safetensors_header';
import { readFully } from './safetensors_reader';

/** A destination of a native read: where a tensor's bytes go, widened to fp32 or not. */
export interface Destination {
  ref: NativeStorageRef | NativeTensorHandle;
  convert: number;
}

/** How a tensor of `dtype` becomes fp32 optimizer state, or undefined if it cannot. */
export function stateConvert(dtype: SafetensorsDType): number | undefined {
  return { F32: CONVERT.none, BF16: CONVERT.bf16, F16: CONVERT.f16, F64: CONVERT.f64 }[dtype as string];
}

export class FileTensors {
  readonly #fh: FileHandle;
  readonly #header: ParsedHeader;
  readonly #crcs: ReadonlyMap<string, string>;
  readonly #stagingBytes: number;

  constructor(fh: FileHandle, header: ParsedHeader, crcs: ReadonlyMap<string, string>, stagingBytes: number) {
    this.#fh = fh;
    this.#header = header;
    this.#crcs = crcs;
    this.#stagingBytes = stagingBytes;
  }

  dtypeOf(name: string): SafetensorsDType {
    return this.#header.tensors.get(name)!.dtype;
  }

  /** Tensors as typed arrays (each in its own buffer), checked against their CRCs. */
  async readValues(names: readonly string[]): Promise<Map<string, TensorData>> {
    const out = new Map<string, TensorData>();
    for (const name of names) {
      const info = this.#header.tensors.get(name)!;
      const [begin, end] = info.dataOffsets;
      const bytes = new Uint8Array(new ArrayBuffer(end - begin));
      await readFully(this.#fh, bytes, this.#header.dataStart + begin);
      this.#check(name, crc32(bytes), 'ChecksumMismatch');
      out.set(name, typedArrayOf(info.dtype, bytes));
    }
    return out;
  }

  /** Checksums every tensor of the file; those in `fill` are read into their destination on the way. */
  async verify(fill: ReadonlyMap<string, Destination>): Promise<void> {
    const names = [...this.#header.tensors.keys()];
    await this.#read(names, (name) => fill.get(name), 'ChecksumMismatch');
  }

  /** Reads tensors into destinations; a tensor that no longer matches its CRC means the file changed. */
  async readInto(targets: ReadonlyMap<string, Destination>): Promise<void> {
    const names = [...this.#header.tensors.keys()].filter((n) => targets.has(n));
    await this.#read(names, (name) => targets.get(name), 'PartlyApplied');
  }

  async #read(
    names: readonly string[],
    destination: (name: string) => Destination | undefined,
    onMismatch: 'ChecksumMismatch' | 'PartlyApplied',
  ): Promise<void> {
    const n = names.length;
    const offsets = new Float64Array(n);
    const fileBytes = new Float64Array(n);
    const converts = new Uint8Array(n);
    const refs: Array<NativeStorageRef | NativeTensorHandle | null> = new Array(n);
    names.forEach((name, i) => {
      const [begin, end] = this.#header.tensors.get(name)!.dataOffsets;
      offsets[i] = this.#header.dataStart + begin;
      fileBytes[i] = end - begin;
      const d = destination(name);
      refs[i] = d?.ref ?? null;
      converts[i] = d?.convert ?? 0;
    });
    const crcs = await readTensors(this.#fh.fd, refs, offsets, fileBytes, converts, this.#stagingBytes);
    names.forEach((name, i) => this.#check(name, crcs[i], onMismatch));
  }

  #check(name: string, crc: number, onMismatch: 'ChecksumMismatch' | 'PartlyApplied'): void {
    const expected = this.#crcs.get(name)!;
    if (crcHex(crc) === expected) return;
    if (onMismatch === 'PartlyApplied')
      fail(
        'PartlyApplied',
        `tensor ${JSON.stringify(name)} changed while the checkpoint was being loaded (stored crc32 ${expected}, now ${crcHex(crc)}): the checkpoint is only partly applied`,
      );
    fail(
      'ChecksumMismatch',
      `tensor ${JSON.stringify(name)} fails its checksum (stored crc32 ${expected}, computed ${crcHex(crc)}): the file is corrupt`,
    );
  }
}

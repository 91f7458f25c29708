// Reading safetensors files: SafetensorsFile opens a file and checks its header
// (safetensors_header.ts); tensors are read on demand. All file access goes through
// fs.promises (libuv's thread pool); checksums through the addon's CRC-32.
import type { FileHandle } from './atomic';
import { crc32 } from './crc32';
import { FormatError, SafetensorsError } from './errors';
import { openForReading, readFully, readHeader } from './file_reads';
import {
  type ParsedHeader,
  type SafetensorsDType,
  type SafetensorsTensorInfo,
  type TensorData,
  typedArrayOf,
} from './safetensors_header';

export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: TensorData;
}

/** An open safetensors file: its header is read and checked by open(); tensors are read on demand. */
export class SafetensorsFile {
  readonly path: string;
  readonly fileSize: number;
  readonly headerLength: number;
  readonly dataStart: number;
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensor infos by name, in file order. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  #fh: FileHandle | undefined;

  private constructor(file: string, fh: FileHandle, fileSize: number, header: ParsedHeader) {
    this.path = file;
    this.#fh = fh;
    this.fileSize = fileSize;
    this.headerLength = header.headerLength;
    this.dataStart = header.dataStart;
    this.metadata = Object.freeze({ ...header.metadata });
    this.tensors = header.tensors;
  }

  /** Opens `file` and checks its header (structure and bounds); throws SafetensorsError naming the problem. */
  static async open(file: string): Promise<SafetensorsFile> {
    if (typeof file !== 'string' || file === '')
      throw new TypeError('SafetensorsFile.open: file must be a non-empty path string');
    const fh = await openForReading(file);
    try {
      const header = await readHeader(fh);
      return new SafetensorsFile(file, fh, header.fileSize, header.parsed);
    } catch (e) {
      await fh.close().catch(() => {});
      throw asSafetensorsError(file, e);
    }
  }

  /** The tensor names, in file order. */
  get names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): SafetensorsTensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError(this.path, `has no tensor ${JSON.stringify(name)}`, 'TensorNotFound');
    return info;
  }

  /** A tensor's raw bytes, in a buffer of their own (8-byte aligned). */
  async readBytes(name: string): Promise<Uint8Array> {
    const [begin, end] = this.info(name).dataOffsets;
    const bytes = new Uint8Array(new ArrayBuffer(end - begin));
    await this.#read(bytes, this.dataStart + begin);
    return bytes;
  }

  /** A tensor with its data in the dtype's typed array (see TensorData). */
  async read(name: string): Promise<SafetensorsTensor> {
    const info = this.info(name);
    return { dtype: info.dtype, shape: [...info.shape], data: typedArrayOf(info.dtype, await this.readBytes(name)) };
  }

  /** The CRC-32 of a tensor's bytes, read in chunks (nothing is kept). */
  async crc32(name: string, chunkBytes = 8 << 20): Promise<number> {
    const [begin, end] = this.info(name).dataOffsets;
    const chunk = new Uint8Array(Math.max(1, Math.min(chunkBytes, end - begin)));
    let crc = 0;
    for (let at = begin; at < end;) {
      const view = chunk.subarray(0, Math.min(chunk.length, end - at));
      await this.#read(view, this.dataStart + at);
      crc = crc32(view, crc);
      at += view.length;
    }
    return crc;
  }

  async close(): Promise<void> {
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close();
  }

  async #read(into: Uint8Array, position: number): Promise<void> {
    if (!this.#fh) throw new SafetensorsError(this.path, 'is closed', 'IoError');
    try {
      await readFully(this.#fh, into, position);
    } catch (e) {
      throw asSafetensorsError(this.path, e);
    }
  }
}

/** A SafetensorsError naming `file` for any failure of reading it. */
export function asSafetensorsError(file: string, e: unknown): SafetensorsError {
  if (e instanceof SafetensorsError) return e;
  if (e instanceof FormatError) return new SafetensorsError(file, e.message, e.code, { cause: e });
  return new SafetensorsError(file, (e as Error).message, 'IoError', { cause: e });
}

/** Reads every tensor and the metadata of a safetensors file. */
export async function readSafetensors(
  file: string,
): Promise<{ tensors: Record<string, SafetensorsTensor>; metadata: Record<string, string> }> {
  const f = await SafetensorsFile.open(file);
  try {
    const tensors: Record<string, SafetensorsTensor> = {};
    for (const name of f.names) tensors[name] = await f.read(name);
    return { tensors, metadata: { ...f.metadata } };
  } finally {
    await f.close();
  }
}

// Reading safetensors files: SafetensorsFile opens a file and checks its header
// (safetensors_header.ts); tensors are read on demand. All file access goes through
// fs.promises (libuv's thread pool); checksums through the addon's CRC-32.
import { promises as fsp } from 'node:fs';
import type { FileHandle } from './atomic';
import { crc32 } from './crc32';
import { FormatError, SafetensorsError } from './errors';
import { parseHeaderOffThread } from './header_table';
import {
  type ParsedHeader,
  type SafetensorsDType,
  type SafetensorsTensorInfo,
  type TensorData,
  checkHeaderLength,
  typedArrayOf,
} from './safetensors_header';

export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: TensorData;
}

const READ_CHUNK = 64 << 20; // below the 2 GiB limit of one read()

export async function readFully(fh: FileHandle, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(READ_CHUNK, into.length - done);
    const { bytesRead } = await fh.read(into, done, want, position + done);
    if (bytesRead === 0)
      throw new FormatError(
        'IoError',
        `the file ended at byte ${position + done} while reading (it shrank while being read?)`,
      );
    done += bytesRead;
  }
}

/** A header as read from an open file: the raw bytes (for checksums) and their parse. */
export interface RawHeader {
  fileSize: number;
  /** The first 8 + headerLength bytes of the file. */
  bytes: Uint8Array;
  parsed: ParsedHeader;
}

/** Reads and checks the header of an open file; throws FormatError. */
export async function readHeader(fh: FileHandle): Promise<RawHeader> {
  const stat = await fh.stat();
  if (!stat.isFile()) throw new FormatError('IoError', 'not a regular file');
  const size = stat.size;
  const prefix = new Uint8Array(8);
  if (size >= 8) await readFully(fh, prefix, 0);
  const headerLength = checkHeaderLength(prefix, size);
  const bytes = new Uint8Array(8 + headerLength);
  bytes.set(prefix);
  await readFully(fh, bytes.subarray(8), 8);
  return { fileSize: size, bytes, parsed: await parseHeaderOffThread(bytes.subarray(8), size) };
}

/** Opens a file for reading; a failure is a SafetensorsError ('IoError') naming it. */
export async function openForReading(file: string): Promise<FileHandle> {
  try {
    return await fsp.open(file, 'r');
  } catch (e) {
    throw new SafetensorsError(
      file,
      `cannot open the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      'IoError',
      { cause: e },
    );
  }
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

// A reader and writer of the safetensors format (Hugging Face), in TypeScript:
//
//   8 bytes     N, the header length, unsigned 64-bit little-endian
//   N bytes     a UTF-8 JSON object: { "__metadata__"?: { string: string },
//                 "<tensor name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, ... }
//               padded with spaces so that 8 + N is a multiple of 8
//   the rest    the byte buffer: each tensor's little-endian elements, row-major, at
//               [begin, end) relative to the buffer's start
//
// The reader checks what the reference implementation checks, and a little more: N at most
// 100,000,000, the header inside the file, valid UTF-8 JSON starting with '{', no duplicate
// keys, known dtypes, shapes of non-negative integers, each tensor's byte length equal to
// its element count times its element size, and offsets that tile the buffer exactly
// (contiguous, no gaps, no overlaps, ending at the end of the file).
//
// The writer streams: tensors may be given as functions that produce their data, called one
// at a time while writing, so a large file is never built in memory. Files are written
// atomically (see atomic.ts).
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import { atomicWrite, type FileHandle } from './atomic';
import { crc32 } from './crc32';

/** The element types of the safetensors format. */
export type SafetensorsDType =
  | 'BOOL'
  | 'U8'
  | 'I8'
  | 'F8_E5M2'
  | 'F8_E4M3'
  | 'F8_E8M0'
  | 'I16'
  | 'U16'
  | 'F16'
  | 'BF16'
  | 'I32'
  | 'U32'
  | 'F32'
  | 'C64'
  | 'F64'
  | 'I64'
  | 'U64'
  | 'F4'
  | 'F6_E2M3'
  | 'F6_E3M2';

/** Bits per element. */
const DTYPE_BITS: Record<SafetensorsDType, number> = {
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
};

export const SAFETENSORS_DTYPES: readonly SafetensorsDType[] = Object.keys(DTYPE_BITS) as SafetensorsDType[];

/** The header length limit of the reference implementation (MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;

/**
 * The typed array a tensor reads into: F32 Float32Array, F64 Float64Array, F16/BF16/U16
 * Uint16Array (raw 16-bit patterns for the half types), I16 Int16Array, I32 Int32Array,
 * U32 Uint32Array, I64 BigInt64Array, U64 BigUint64Array, I8 Int8Array, C64 Float32Array
 * (real and imaginary parts interleaved), and Uint8Array for the byte and sub-byte types
 * (U8, BOOL, F8_*, F4, F6_*: raw bytes).
 */
export type TensorData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | Int8Array
  | Uint8Array;

export interface SafetensorsTensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the byte buffer. */
  dataOffsets: [number, number];
}

export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: TensorData;
}

/** A tensor to write: its data, or a function called once, when its turn comes, to produce it. */
export interface SafetensorsTensorInput {
  /** Default: from the data's type (Float32Array F32, Uint16Array U16, ...). Required with a producer. */
  dtype?: SafetensorsDType;
  /** Default: [elements]. Required with a producer. */
  shape?: readonly number[];
  data: TensorData | (() => TensorData | Promise<TensorData>);
}

/** A malformed file, or one that does not fit what was asked of it. `file` names it. */
export class SafetensorsError extends Error {
  readonly file: string;
  readonly reason: string;
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super(`${file}: ${reason}`, options);
    this.name = 'SafetensorsError';
    this.file = file;
    this.reason = reason;
  }
}

if (os.endianness() !== 'LE') {
  // Typed arrays use the host byte order; safetensors is little-endian.
  throw new Error('fused-optim: safetensors support needs a little-endian host');
}

/** Bytes of `numel` elements of `dtype`, or undefined when they are not a whole number of bytes. */
export function byteLengthOf(dtype: SafetensorsDType, numel: number): number | undefined {
  const bits = DTYPE_BITS[dtype] * numel;
  if (!Number.isSafeInteger(bits) || bits % 8 !== 0) return undefined;
  return bits / 8;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The dtype of a typed array's elements (undefined for types safetensors cannot hold). */
export function dtypeOfData(data: unknown): SafetensorsDType | undefined {
  if (data instanceof Float32Array) return 'F32';
  if (data instanceof Float64Array) return 'F64';
  if (data instanceof Uint16Array) return 'U16';
  if (data instanceof Int16Array) return 'I16';
  if (data instanceof Int32Array) return 'I32';
  if (data instanceof Uint32Array) return 'U32';
  if (data instanceof BigInt64Array) return 'I64';
  if (data instanceof BigUint64Array) return 'U64';
  if (data instanceof Int8Array) return 'I8';
  if (data instanceof Uint8Array) return 'U8';
  return undefined;
}

/** Wraps raw little-endian bytes (8-byte aligned, own buffer) in the dtype's typed array. */
export function typedArrayOf(dtype: SafetensorsDType, bytes: Uint8Array): TensorData {
  const { buffer, byteOffset, byteLength } = bytes;
  switch (dtype) {
    case 'F32':
    case 'C64':
      return new Float32Array(buffer, byteOffset, byteLength / 4);
    case 'F64':
      return new Float64Array(buffer, byteOffset, byteLength / 8);
    case 'F16':
    case 'BF16':
    case 'U16':
      return new Uint16Array(buffer, byteOffset, byteLength / 2);
    case 'I16':
      return new Int16Array(buffer, byteOffset, byteLength / 2);
    case 'I32':
      return new Int32Array(buffer, byteOffset, byteLength / 4);
    case 'U32':
      return new Uint32Array(buffer, byteOffset, byteLength / 4);
    case 'I64':
      return new BigInt64Array(buffer, byteOffset, byteLength / 8);
    case 'U64':
      return new BigUint64Array(buffer, byteOffset, byteLength / 8);
    case 'I8':
      return new Int8Array(buffer, byteOffset, byteLength);
    default:
      return bytes;
  }
}

/** Which typed arrays may carry a dtype's bytes when writing. */
function dataFits(dtype: SafetensorsDType, data: TensorData): boolean {
  const bits = DTYPE_BITS[dtype];
  if (dtype === 'C64') return data instanceof Float32Array;
  if (bits < 8 || bits === 8) return data instanceof Uint8Array || data instanceof Int8Array;
  if (dtype === 'F16' || dtype === 'BF16') return data instanceof Uint16Array;
  return dtypeOfData(data) === dtype;
}

function bytesOf(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// ---------------------------------------------------------------------------------------
// Header

export interface ParsedHeader {
  headerLength: number;
  /** Where the byte buffer starts in the file: 8 + headerLength. */
  dataStart: number;
  metadata: Record<string, string>;
  /** In file order (ascending offsets). */
  tensors: Map<string, SafetensorsTensorInfo>;
}

/** Reads the header length from the first 8 bytes and checks it against the limit and the file size. */
export function checkHeaderLength(prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8) {
    throw new Error(
      fileSize === 0
        ? 'the file is empty; a safetensors file starts with an 8-byte header length'
        : `the file is ${fileSize} bytes, too short for the 8-byte header length a safetensors file starts with`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(
      `the header length is ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file, or a corrupt one)`,
    );
  }
  const length = Number(n);
  if (8 + length > fileSize) {
    throw new Error(
      `the header length is ${length} bytes but the file has only ${fileSize - 8} bytes after the length (truncated or not a safetensors file)`,
    );
  }
  return length;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses and checks a header against the file size. Throws Error with the problem. */
export function parseHeader(headerBytes: Uint8Array, fileSize: number): ParsedHeader {
  const headerLength = headerBytes.length;
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new Error('the header is not valid UTF-8');
  }
  if (!text.startsWith('{'))
    throw new Error(`the header does not start with '{' (starts with ${JSON.stringify(text.slice(0, 16))})`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`the header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new Error('the header is not a JSON object');
  const duplicate = findDuplicateKey(text);
  if (duplicate !== undefined) throw new Error(`the header has the key ${JSON.stringify(duplicate)} twice`);

  const entries = json as Record<string, unknown>;
  const metadata: Record<string, string> = {};
  const raw = entries.__metadata__;
  if (raw !== undefined && raw !== null) {
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error('__metadata__ must be an object of strings');
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
      if (typeof v !== 'string')
        throw new Error(`__metadata__[${JSON.stringify(k)}] must be a string, got ${describeJson(v)}`);
      metadata[k] = v;
    }
  }

  const list: Array<[string, SafetensorsTensorInfo]> = [];
  for (const [name, info] of Object.entries(entries)) {
    if (name === '__metadata__') continue;
    list.push([name, checkTensorInfo(name, info)]);
  }
  // Offsets must tile the buffer: sorted by position, each tensor starts where the last ended.
  list.sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  const bufferLength = fileSize - 8 - headerLength;
  let at = 0;
  for (const [name, info] of list) {
    const [begin, end] = info.dataOffsets;
    if (begin !== at) {
      throw new Error(
        begin < at
          ? `tensor ${JSON.stringify(name)} overlaps the previous tensor (data_offsets [${begin}, ${end}], previous end ${at})`
          : `tensor ${JSON.stringify(name)} starts at ${begin}, leaving a gap after byte ${at} of the data`,
      );
    }
    if (end > bufferLength) {
      throw new Error(
        `tensor ${JSON.stringify(name)} ends at byte ${end} but the data is only ${bufferLength} bytes (truncated file?)`,
      );
    }
    at = end;
  }
  if (at !== bufferLength) {
    throw new Error(
      `the tensors cover ${at} bytes of data but the file has ${bufferLength} bytes after the header (truncated or has extra bytes)`,
    );
  }
  return { headerLength, dataStart: 8 + headerLength, metadata, tensors: new Map(list) };
}

function checkTensorInfo(name: string, info: unknown): SafetensorsTensorInfo {
  const who = `tensor ${JSON.stringify(name)}`;
  if (info === null || typeof info !== 'object' || Array.isArray(info))
    throw new Error(`${who}: expected { dtype, shape, data_offsets }, got ${describeJson(info)}`);
  const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BITS, dtype))
    throw new Error(`${who}: unknown dtype ${describeJson(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`${who}: shape must be an array of non-negative integers, got ${describeJson(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new Error(`${who}: data_offsets must be two non-negative integers, got ${describeJson(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new Error(`${who}: data_offsets [${begin}, ${end}] end before they begin`);
  const numel = numelOf(shape);
  const bytes = Number.isSafeInteger(numel) ? byteLengthOf(dtype as SafetensorsDType, numel) : undefined;
  if (bytes === undefined)
    throw new Error(`${who}: shape [${shape.join(', ')}] of ${dtype} is not a whole number of bytes`);
  if (end - begin !== bytes) {
    throw new Error(
      `${who}: shape [${shape.join(', ')}] of ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return { dtype: dtype as SafetensorsDType, shape: [...shape], dataOffsets: [begin, end] };
}

function describeJson(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * The first key that appears twice in one object of a valid JSON text (JSON.parse keeps the
 * last silently), or undefined.
 */
export function findDuplicateKey(text: string): string | undefined {
  const stack: Array<{ keys: Set<string>; expectKey: boolean } | null> = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (; j < text.length; j++) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) {
          escaped = true;
          j++;
        } else if (d === 0x22) break;
      }
      const top = stack[stack.length - 1];
      if (top && top.expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (top.keys.has(key)) return key;
        top.keys.add(key);
        top.expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) stack.push({ keys: new Set(), expectKey: true });
    else if (c === 0x5b /* [ */) stack.push(null);
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top) top.expectKey = true;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Reading

const READ_CHUNK = 64 << 20; // below the 2 GiB limit of one read()

async function readFully(fh: FileHandle, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(READ_CHUNK, into.length - done);
    const { bytesRead } = await fh.read(into, done, want, position + done);
    if (bytesRead === 0)
      throw new Error(`the file ended at byte ${position + done} while reading (it shrank while being read?)`);
    done += bytesRead;
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
    let fh: FileHandle;
    try {
      fh = await fsp.open(file, 'r');
    } catch (e) {
      throw new SafetensorsError(
        file,
        `cannot open the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
        { cause: e },
      );
    }
    try {
      const stat = await fh.stat();
      if (!stat.isFile()) throw new Error('not a regular file');
      const size = stat.size;
      const prefix = new Uint8Array(8);
      if (size >= 8) await readFully(fh, prefix, 0);
      const headerLength = checkHeaderLength(prefix, size);
      const headerBytes = new Uint8Array(headerLength);
      await readFully(fh, headerBytes, 8);
      return new SafetensorsFile(file, fh, size, parseHeader(headerBytes, size));
    } catch (e) {
      await fh.close().catch(() => {});
      throw e instanceof SafetensorsError ? e : new SafetensorsError(file, (e as Error).message, { cause: e });
    }
  }

  /** The tensor names, in file order. */
  get names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): SafetensorsTensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new SafetensorsError(this.path, `has no tensor ${JSON.stringify(name)}`);
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
    if (!this.#fh) throw new SafetensorsError(this.path, 'is closed');
    try {
      await readFully(this.#fh, into, position);
    } catch (e) {
      throw new SafetensorsError(this.path, (e as Error).message, { cause: e });
    }
  }
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

// ---------------------------------------------------------------------------------------
// Writing

/** A tensor ready to write: its place is fixed before any data is produced. */
export interface PlannedTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  byteLength: number;
  produce: () => TensorData | Promise<TensorData>;
}

export interface StreamWriteOptions {
  /**
   * The metadata, given the CRC-32 of every tensor written so far (by name). It is called
   * with zeros before the data is written, to size the header, and again with the real CRCs
   * after; both results must serialize to the same length (use fixed-width values).
   */
  metadata?: (crcs: ReadonlyMap<string, number>) => Record<string, string>;
  /** Called with each tensor's name once its bytes are written (for tests and progress). */
  onTensorWritten?: (name: string) => void | Promise<void>;
  /** Called when the file is complete, before it replaces the target: throw to abandon it. */
  beforeCommit?: () => void | Promise<void>;
}

const WRITE_CHUNK = 16 << 20;

/** Orders tensors for the file: wider elements first (stable), so every tensor stays aligned to its element size. */
export function fileOrder<T extends { dtype: SafetensorsDType }>(tensors: readonly T[]): T[] {
  return tensors
    .map((t, i) => ({ t, i }))
    .sort((a, b) => DTYPE_BITS[b.t.dtype] - DTYPE_BITS[a.t.dtype] || a.i - b.i)
    .map(({ t }) => t);
}

function headerBytes(tensors: readonly PlannedTensor[], metadata: Record<string, string> | undefined): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let at = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.byteLength] };
    at += t.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES)
    throw new RangeError(
      `the header would be ${padded} bytes, over the ${MAX_HEADER_BYTES}-byte limit of the format (too many tensors or too much metadata)`,
    );
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return out;
}

/**
 * Writes planned tensors in the given order, one at a time: each producer is called only
 * when the previous tensor's bytes are on their way to the file. Atomic.
 */
export async function writeSafetensorsStream(
  file: string,
  tensors: readonly PlannedTensor[],
  options: StreamWriteOptions = {},
): Promise<void> {
  const names = new Set<string>();
  for (const t of tensors) {
    if (typeof t.name !== 'string') throw new TypeError('writeSafetensors: tensor names must be strings');
    if (t.name === '__metadata__') throw new RangeError("writeSafetensors: '__metadata__' cannot be a tensor name");
    if (names.has(t.name)) throw new RangeError(`writeSafetensors: tensor ${JSON.stringify(t.name)} appears twice`);
    names.add(t.name);
  }
  const crcs = new Map<string, number>(tensors.map((t) => [t.name, 0]));
  const metadataFor = () => checkMetadata(options.metadata?.(crcs));
  const first = headerBytes(tensors, metadataFor());
  await atomicWrite(file, async (fh) => {
    await writeAll(fh, first, 0);
    let position = first.length;
    for (const t of tensors) {
      const data = await t.produce();
      if (!ArrayBuffer.isView(data) || !dataFits(t.dtype, data as TensorData)) {
        throw new TypeError(
          `writeSafetensors: tensor ${JSON.stringify(t.name)} of dtype ${t.dtype} was produced as ${describeData(data)}`,
        );
      }
      const bytes = bytesOf(data as TensorData);
      if (bytes.length !== t.byteLength) {
        throw new RangeError(
          `writeSafetensors: tensor ${JSON.stringify(t.name)} was produced with ${bytes.length} bytes but its shape [${t.shape.join(', ')}] of ${t.dtype} needs ${t.byteLength}`,
        );
      }
      let crc = 0;
      for (let o = 0; o < bytes.length; o += WRITE_CHUNK) {
        const piece = bytes.subarray(o, Math.min(bytes.length, o + WRITE_CHUNK));
        crc = crc32(piece, crc);
        await writeAll(fh, piece, position + o);
      }
      position += bytes.length;
      crcs.set(t.name, crc);
      await options.onTensorWritten?.(t.name);
    }
    if (options.metadata) {
      const final = headerBytes(tensors, metadataFor());
      if (final.length !== first.length)
        throw new Error('writeSafetensors: the metadata changed length after the data was written');
      await writeAll(fh, final, 0);
    }
    await options.beforeCommit?.();
  });
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(WRITE_CHUNK, bytes.length - done), position + done);
    done += bytesWritten;
  }
}

function describeData(data: unknown): string {
  if (data === null) return 'null';
  if (typeof data !== 'object') return typeof data;
  return (data as object).constructor?.name ?? 'an object';
}

function checkMetadata(metadata: unknown): Record<string, string> | undefined {
  if (metadata === undefined) return undefined;
  if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata))
    throw new TypeError('writeSafetensors: metadata must be an object of strings');
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string')
      throw new TypeError(`writeSafetensors: metadata[${JSON.stringify(k)}] must be a string, got ${typeof v}`);
  }
  return metadata as Record<string, string>;
}

/** Checks a tensor to write and fixes its dtype, shape and byte length. */
export function planTensor(name: string, input: SafetensorsTensorInput): PlannedTensor {
  const who = `writeSafetensors: tensor ${JSON.stringify(name)}`;
  if (input === null || typeof input !== 'object') throw new TypeError(`${who} must be { dtype?, shape?, data }`);
  const { data } = input;
  const lazy = typeof data === 'function';
  if (!lazy && !(ArrayBuffer.isView(data) && dtypeOfData(data) !== undefined)) {
    throw new TypeError(
      `${who}: data must be a typed array (Float32Array, Uint16Array, ...) or a function producing one, got ${describeData(data)}`,
    );
  }
  if (lazy && (input.dtype === undefined || input.shape === undefined))
    throw new TypeError(`${who}: dtype and shape are required when data is a function`);
  const dtype = input.dtype ?? dtypeOfData(data)!;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BITS, dtype))
    throw new TypeError(`${who}: unknown dtype ${JSON.stringify(dtype)}`);
  const elements = lazy ? undefined : (data as TensorData).length / (dtype === 'C64' ? 2 : 1);
  const shape = input.shape === undefined ? [elements!] : [...input.shape];
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw new RangeError(`${who}: shape must be an array of non-negative integers, got [${shape.join(', ')}]`);
  const byteLength = byteLengthOf(dtype, numelOf(shape));
  if (byteLength === undefined)
    throw new RangeError(`${who}: shape [${shape.join(', ')}] of ${dtype} is not a whole number of bytes`);
  if (!lazy) {
    if (!dataFits(dtype, data as TensorData))
      throw new TypeError(`${who}: a ${describeData(data)} cannot hold ${dtype} data`);
    if ((data as TensorData).byteLength !== byteLength) {
      throw new RangeError(
        `${who}: shape [${shape.join(', ')}] of ${dtype} needs ${byteLength} bytes but the data has ${(data as TensorData).byteLength}`,
      );
    }
  }
  return {
    name,
    dtype,
    shape,
    byteLength,
    produce: lazy ? (data as () => TensorData | Promise<TensorData>) : () => data as TensorData,
  };
}

/**
 * Writes a safetensors file atomically. Tensors are written widest element type first, in
 * the given order within a type width, so each stays aligned to its element size; a tensor
 * given as a function is produced only when its turn comes.
 */
export async function writeSafetensors(
  file: string,
  tensors: Record<string, SafetensorsTensorInput> | Iterable<readonly [string, SafetensorsTensorInput]>,
  options: { metadata?: Record<string, string> } = {},
): Promise<void> {
  if (typeof file !== 'string' || file === '')
    throw new TypeError('writeSafetensors: file must be a non-empty path string');
  if (tensors === null || typeof tensors !== 'object')
    throw new TypeError('writeSafetensors: tensors must be an object or an iterable of [name, tensor] pairs');
  const list =
    Symbol.iterator in tensors
      ? [...(tensors as Iterable<readonly [string, SafetensorsTensorInput]>)]
      : Object.entries(tensors);
  const planned = fileOrder(list.map(([name, t]) => planTensor(name, t)));
  const metadata = checkMetadata(options.metadata);
  await writeSafetensorsStream(file, planned, { metadata: metadata ? () => metadata : undefined });
}

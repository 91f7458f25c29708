// The safetensors format (Hugging Face): its element types, and its header, parsed and
// checked (for the reader, safetensors_reader.ts) and built (for the writers):
//
//   8 bytes     N, the header length, unsigned 64-bit little-endian
//   N bytes     a UTF-8 JSON object: { "__metadata__"?: { string: string },
//                 "<tensor name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, ... }
//               padded with spaces so that 8 + N is a multiple of 8
//   the rest    the byte buffer: each tensor's little-endian elements, row-major, at
//               [begin, end) relative to the buffer's start
//
// The checks are the reference implementation's, and a little more: N at most 100,000,000,
// the header inside the file, valid UTF-8 JSON starting with '{', no duplicate keys, known
// dtypes, shapes of non-negative integers, each tensor's byte length equal to its element
// count times its element size, and offsets that tile the buffer exactly (contiguous, no
// gaps, no overlaps, ending at the end of the file). A failed check throws a FormatError
// whose code names it (errors.ts).
import * as os from 'node:os';
import { FormatError } from './errors';

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

export function isSafetensorsDType(v: unknown): v is SafetensorsDType {
  return typeof v === 'string' && Object.hasOwn(DTYPE_BITS, v);
}

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
export function dataFits(dtype: SafetensorsDType, data: TensorData): boolean {
  const bits = DTYPE_BITS[dtype];
  if (dtype === 'C64') return data instanceof Float32Array;
  if (bits < 8 || bits === 8) return data instanceof Uint8Array || data instanceof Int8Array;
  if (dtype === 'F16' || dtype === 'BF16') return data instanceof Uint16Array;
  return dtypeOfData(data) === dtype;
}

export function bytesOf(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// ---------------------------------------------------------------------------------------
// Parsing

export interface ParsedHeader {
  headerLength: number;
  /** Where the byte buffer starts in the file: 8 + headerLength. */
  dataStart: number;
  metadata: Record<string, string>;
  /** In file order (ascending offsets). */
  tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
}

/** Reads the header length from the first 8 bytes and checks it against the limit and the file size. */
export function checkHeaderLength(prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8) {
    throw new FormatError(
      'HeaderTooSmall',
      fileSize === 0
        ? 'the file is empty; a safetensors file starts with an 8-byte header length'
        : `the file is ${fileSize} bytes, too short for the 8-byte header length a safetensors file starts with`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new FormatError(
      'HeaderTooLarge',
      `the header length is ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file, or a corrupt one)`,
    );
  }
  const length = Number(n);
  if (8 + length > fileSize) {
    throw new FormatError(
      'InvalidHeaderLength',
      `the header length is ${length} bytes but the file has only ${fileSize - 8} bytes after the length (truncated or not a safetensors file)`,
    );
  }
  return length;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses and checks a header against the file size. Throws a FormatError naming the problem. */
export function parseHeader(headerBytes: Uint8Array, fileSize: number): ParsedHeader {
  const headerLength = headerBytes.length;
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new FormatError('InvalidHeader', 'the header is not valid UTF-8');
  }
  if (!text.startsWith('{'))
    throw new FormatError(
      'InvalidHeaderStart',
      `the header does not start with '{' (starts with ${JSON.stringify(text.slice(0, 16))})`,
    );
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError('InvalidHeaderDeserialization', `the header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new FormatError('InvalidHeaderDeserialization', 'the header is not a JSON object');
  const duplicate = findDuplicateKey(text);
  if (duplicate !== undefined)
    throw new FormatError('InvalidHeaderDeserialization', `the header has the key ${JSON.stringify(duplicate)} twice`);

  const entries = json as Record<string, unknown>;
  const metadata: Record<string, string> = {};
  const raw = entries.__metadata__;
  if (raw !== undefined && raw !== null) {
    if (typeof raw !== 'object' || Array.isArray(raw))
      throw new FormatError('InvalidHeaderDeserialization', '__metadata__ must be an object of strings');
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
      if (typeof v !== 'string')
        throw new FormatError(
          'InvalidHeaderDeserialization',
          `__metadata__[${JSON.stringify(k)}] must be a string, got ${describeJson(v)}`,
        );
      metadata[k] = v;
    }
  }

  const list: Array<[string, SafetensorsTensorInfo]> = [];
  for (const [name, info] of Object.entries(entries)) {
    if (name === '__metadata__') continue;
    list.push([name, checkTensorInfo(name, info)]);
  }
  // Offsets must tile the buffer: sorted by position, each tensor starts where the last ended.
  const before = (a: [string, SafetensorsTensorInfo], b: [string, SafetensorsTensorInfo]) =>
    a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1];
  if (!list.every((t, i) => i === 0 || before(list[i - 1], t) <= 0)) list.sort(before); // writers write in order
  const bufferLength = fileSize - 8 - headerLength;
  let at = 0;
  for (const [name, info] of list) {
    const [begin, end] = info.dataOffsets;
    if (begin !== at) {
      throw new FormatError(
        'InvalidOffset',
        begin < at
          ? `tensor ${JSON.stringify(name)} overlaps the previous tensor (data_offsets [${begin}, ${end}], previous end ${at})`
          : `tensor ${JSON.stringify(name)} starts at ${begin}, leaving a gap after byte ${at} of the data`,
      );
    }
    if (end > bufferLength) {
      throw new FormatError(
        'InvalidOffset',
        `tensor ${JSON.stringify(name)} ends at byte ${end} but the data is only ${bufferLength} bytes (truncated file?)`,
      );
    }
    at = end;
  }
  if (at !== bufferLength) {
    throw new FormatError(
      'MetadataIncompleteBuffer',
      `the tensors cover ${at} bytes of data but the file has ${bufferLength} bytes after the header (truncated or has extra bytes)`,
    );
  }
  return { headerLength, dataStart: 8 + headerLength, metadata, tensors: new Map(list) };
}

function checkTensorInfo(name: string, info: unknown): SafetensorsTensorInfo {
  const bad = (problem: string): never => {
    throw new FormatError('TensorInvalidInfo', `tensor ${JSON.stringify(name)}: ${problem}`);
  };
  if (info === null || typeof info !== 'object' || Array.isArray(info))
    bad(`expected { dtype, shape, data_offsets }, got ${describeJson(info)}`);
  const { dtype, shape, data_offsets: offsets } = info as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BITS, dtype)) bad(`unknown dtype ${describeJson(dtype)}`);
  if (!Array.isArray(shape) || !allIndices(shape))
    bad(`shape must be an array of non-negative integers, got ${describeJson(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !allIndices(offsets))
    bad(`data_offsets must be two non-negative integers, got ${describeJson(offsets)}`);
  const [begin, end] = offsets as [number, number];
  if (end < begin) bad(`data_offsets [${begin}, ${end}] end before they begin`);
  const dims = shape as number[];
  const numel = numelOf(dims);
  const bytes = Number.isSafeInteger(numel) ? byteLengthOf(dtype as SafetensorsDType, numel) : undefined;
  if (bytes === undefined) bad(`shape [${dims.join(', ')}] of ${dtype} is not a whole number of bytes`);
  if (end - begin !== bytes)
    bad(
      `shape [${dims.join(', ')}] of ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  // The parsed arrays are this header's own: no copies needed.
  return { dtype: dtype as SafetensorsDType, shape: dims, dataOffsets: offsets as [number, number] };
}

function allIndices(a: unknown[]): boolean {
  for (const d of a) if (!Number.isSafeInteger(d) || (d as number) < 0) return false;
  return true;
}

function describeJson(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * The first key that appears twice in one object of a valid JSON text (JSON.parse keeps the
 * last silently), or undefined. One pass: strings are skipped with indexOf (most of a header
 * is strings, the manifest above all), and only object keys are compared.
 */
export function findDuplicateKey(text: string): string | undefined {
  const stack: Array<KeySet | null> = []; // null: an array
  let nextBackslash = -2;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const end = closingQuote(text, i);
      const top = stack[stack.length - 1];
      if (top?.expectKey) {
        if (nextBackslash < i && nextBackslash !== -1) nextBackslash = text.indexOf('\\', i);
        const escaped = nextBackslash !== -1 && nextBackslash < end;
        const key = escaped ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        if (!top.add(key)) return key;
      }
      i = end;
    } else if (c === 0x7b /* { */) stack.push(new KeySet());
    else if (c === 0x5b /* [ */) stack.push(null);
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top) top.expectKey = true;
    }
  }
  return undefined;
}

/** The index of the quote that closes the string opening at `open` (one not escaped). */
function closingQuote(text: string, open: number): number {
  let end = text.indexOf('"', open + 1);
  for (;;) {
    let backslashes = 0;
    while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0 || end === -1) return end === -1 ? text.length : end;
    end = text.indexOf('"', end + 1);
  }
}

/** An object's keys: a list while short (most objects have three), a Set beyond. */
class KeySet {
  expectKey = true;
  #list: string[] | undefined = [];
  #set: Set<string> | undefined;
  /** Adds a key; false if it was there already. */
  add(key: string): boolean {
    this.expectKey = false;
    if (this.#list) {
      if (this.#list.includes(key)) return false;
      this.#list.push(key);
      if (this.#list.length > 16) {
        this.#set = new Set(this.#list);
        this.#list = undefined;
      }
      return true;
    }
    if (this.#set!.has(key)) return false;
    this.#set!.add(key);
    return true;
  }
}

// ---------------------------------------------------------------------------------------
// Building

/** Orders tensors for the file: wider elements first (stable), so every tensor stays aligned to its element size. */
export function fileOrder<T extends { dtype: SafetensorsDType }>(tensors: readonly T[]): T[] {
  const byWidth = new Map<number, T[]>(); // a stable bucket sort: a few widths, many tensors
  for (const t of tensors) {
    const bits = DTYPE_BITS[t.dtype];
    const bucket = byWidth.get(bits);
    if (bucket) bucket.push(t);
    else byWidth.set(bits, [t]);
  }
  return [...byWidth.keys()].sort((a, b) => b - a).flatMap((bits) => byWidth.get(bits)!);
}

/** A header's bytes: the 8-byte length, then the JSON text padded with spaces to a multiple of 8. */
export function frameHeader(json: Uint8Array): Uint8Array {
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

/** The header of tensors laid out one after another in the given order. */
export function buildHeader(
  tensors: ReadonlyArray<{ name: string; dtype: SafetensorsDType; shape: readonly number[]; byteLength: number }>,
  metadata: Record<string, string> | undefined,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let at = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.byteLength] };
    at += t.byteLength;
  }
  return frameHeader(Buffer.from(JSON.stringify(header), 'utf8'));
}

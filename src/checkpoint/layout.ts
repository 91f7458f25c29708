// The header of a version-2 checkpoint: a plain safetensors header whose __metadata__ starts
// with two fixed-width fields, so they can be filled in after the data is written, without
// serializing the header again:
//
//   {"__metadata__":{"fused_optim.header_crc32":"<8 hex>","fused_optim.tensor_crc32":"<8 hex per tensor>",
//    "format":"fused-optim/checkpoint","format_version":"2","fused_optim.manifest":"<JSON>"},
//    "<tensor>":{"dtype":...,"shape":[...],"data_offsets":[...]},...}
//
// tensor_crc32 lists the CRC-32 of each tensor in file order. header_crc32 is the CRC-32 of
// the first 8 + N bytes of the file (length, header, padding) with its own 8 digits read as
// "00000000": it covers every byte of the header, so a flipped bit anywhere in the header
// (offsets, shapes, manifest, the tensor CRCs) is found before anything else is believed.
import { crc32, crcHex } from './crc32';
import { fail } from './errors';
import { type SafetensorsDType, frameHeader } from './safetensors_header';
import type { Slicer } from './yielding';

export const HEADER_CRC_KEY = 'fused_optim.header_crc32';
export const TENSOR_CRCS_KEY = 'fused_optim.tensor_crc32';

const PREFIX = `{"__metadata__":{"${HEADER_CRC_KEY}":"`;
const BETWEEN = `","${TENSOR_CRCS_KEY}":"`;
/** Where the header CRC's digits are, from the start of the file. */
const HEADER_CRC_AT = 8 + PREFIX.length;
/** Where the first tensor CRC's digits are. */
const TENSOR_CRCS_AT = HEADER_CRC_AT + 8 + BETWEEN.length;
const ZEROS = new Uint8Array(8).fill(0x30);

export interface LaidOutTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  byteLength: number;
}

export interface CheckpointLayout {
  /** The first bytes of the file: length and header, CRC digits zero until seal(). */
  header: Uint8Array;
  /** Each tensor's position in the file. */
  offsets: Float64Array;
  /** Writes the tensors' CRC-32s (in layout order), then the header's own. */
  seal(crcs: Uint32Array): void;
}

/**
 * Lays out tensors one after another in the given order, after a header with `metadata`
 * (its entries a slice at a time: a checkpoint may have 300k tensors).
 */
export async function layoutCheckpoint(
  tensors: readonly LaidOutTensor[],
  metadata: Readonly<Record<string, string>>,
  slicer: Slicer,
): Promise<CheckpointLayout> {
  const parts: string[] = [PREFIX, '00000000', BETWEEN, '0'.repeat(8 * tensors.length), '"'];
  for (const [k, v] of Object.entries(metadata)) parts.push(`,${JSON.stringify(k)}:${JSON.stringify(v)}`);
  parts.push('}');
  const relative = new Float64Array(tensors.length);
  // The entries are joined into one string per batch: encoding a few long strings costs far
  // less than encoding 300k short ones.
  let batch: string[] = [];
  let at = 0;
  for (let i = 0; i < tensors.length; i++) {
    if (slicer.due()) await slicer.yield();
    const t = tensors[i];
    relative[i] = at;
    const end = at + t.byteLength;
    batch.push(
      `,${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${at},${end}]}`,
    );
    if (batch.length === 4096) {
      parts.push(batch.join(''));
      batch = [];
    }
    at = end;
  }
  parts.push(batch.join(''));
  parts.push('}');
  const header = frameHeader(await encodeParts(parts, slicer));
  const offsets = relative.map((r) => r + header.length);
  return {
    header,
    offsets,
    seal(crcs) {
      if (crcs.length !== tensors.length) throw new Error(`seal: ${crcs.length} CRCs for ${tensors.length} tensors`);
      for (let i = 0; i < crcs.length; i++) writeHex(header, TENSOR_CRCS_AT + 8 * i, crcs[i]);
      header.set(ZEROS, HEADER_CRC_AT);
      writeHex(header, HEADER_CRC_AT, crc32(header));
    },
  };
}

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/** Writes `crc` as 8 lowercase hex digits at bytes[at...]. */
function writeHex(bytes: Uint8Array, at: number, crc: number): void {
  for (let d = 7; d >= 0; d--, crc >>>= 4) bytes[at + d] = HEX_DIGITS[crc & 15];
}

/** UTF-8 of the concatenated parts, encoded a slice at a time. */
async function encodeParts(parts: readonly string[], slicer: Slicer): Promise<Uint8Array> {
  let bytes = 0;
  for (const p of parts) {
    if (slicer.due()) await slicer.yield();
    bytes += Buffer.byteLength(p, 'utf8');
  }
  const out = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const p of parts) {
    if (slicer.due()) await slicer.yield();
    at += out.write(p, at, 'utf8');
  }
  return out;
}

/** Checks the header CRC of a version-2 checkpoint (`bytes`: the file's first 8 + N bytes). */
export function checkHeaderCrc(bytes: Uint8Array, stored: string | undefined): void {
  const prefix = Buffer.from(PREFIX, 'latin1');
  const where = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (
    typeof stored !== 'string' ||
    !/^[0-9a-f]{8}$/.test(stored) ||
    bytes.length < TENSOR_CRCS_AT ||
    !where.subarray(8, HEADER_CRC_AT).equals(prefix) ||
    where.toString('latin1', HEADER_CRC_AT, HEADER_CRC_AT + 8) !== stored
  ) {
    fail(
      'ChecksumMismatch',
      `the header's ${HEADER_CRC_KEY} is missing or not where fused-optim writes it (a corrupt file, or a header rewritten by another tool)`,
    );
  }
  let crc = crc32(bytes.subarray(0, HEADER_CRC_AT));
  crc = crc32(ZEROS, crc);
  crc = crc32(bytes.subarray(HEADER_CRC_AT + 8), crc);
  if (crcHex(crc) !== stored)
    fail(
      'ChecksumMismatch',
      `the header fails its checksum (stored crc32 ${stored}, computed ${crcHex(crc)}): the file is corrupt`,
    );
}

/** The tensor CRCs of a version-2 checkpoint, in file order (`count` tensors). */
export function tensorCrcsOf(list: string | undefined, count: number): Uint32Array {
  if (typeof list !== 'string' || list.length !== 8 * count || !/^[0-9a-f]*$/.test(list))
    fail('InvalidManifest', `${TENSOR_CRCS_KEY} must hold 8 hex digits for each of the ${count} tensors`);
  const crcs = new Uint32Array(count);
  for (let i = 0; i < count; i++) crcs[i] = parseInt(list.slice(8 * i, 8 * i + 8), 16);
  return crcs;
}

// Helpers for the checkpoint and safetensors suites: temporary folders, raw header edits.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';

/** A fresh temporary folder and a function that removes it. */
export function tempDir(prefix = 'fused-optim-ckpt-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A file split into its 8-byte length, header text and data. */
export function splitFile(bytes: Uint8Array): { headerText: string; data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return { headerText: Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'), data: bytes.subarray(8 + n) };
}

/** Reassembles a file from header text (padded with spaces to 8 bytes) and data. */
export function joinFile(headerText: string, data: Uint8Array, { pad = true } = {}): Uint8Array {
  let header = Buffer.from(headerText, 'utf8');
  if (pad && header.length % 8) header = Buffer.concat([header, Buffer.alloc(8 - (header.length % 8), 0x20)]);
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

/** Rewrites a file's header JSON with `edit` (which changes the parsed object in place). */
export function editHeader(file: string, edit: (header: Record<string, any>) => void, out = file): void {
  const { headerText, data } = splitFile(readFileSync(file));
  const header = JSON.parse(headerText);
  edit(header);
  writeFileSync(out, joinFile(JSON.stringify(header), data));
}

/** The raw little-endian bytes of a typed array. */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Recomputes a version-2 checkpoint's header CRC-32 after a deliberate edit (written here
 * from the format's description, with zlib's CRC, not with the code under test).
 */
export function resealHeader(file: string): void {
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const key = '"fused_optim.header_crc32":"';
  const at = bytes.indexOf(key, 8) + key.length;
  if (at < key.length || at > 8 + n) throw new Error(`${file} has no header CRC to reseal`);
  bytes.write('00000000', at, 'latin1');
  bytes.write(
    zlibCrc32(bytes.subarray(0, 8 + n))
      .toString(16)
      .padStart(8, '0'),
    at,
    'latin1',
  );
  writeFileSync(file, bytes);
}

/**
 * The whole manifest of a version-2 checkpoint's metadata (the main entry with its params and
 * optimizer state chunks put back), and its inverse, which writes it back as one chunk each.
 */
export function fullManifest(metadata: Record<string, string>): Record<string, any> {
  const m = JSON.parse(metadata['fused_optim.manifest']);
  const params: unknown[] = [];
  for (let c = 0; c < m.params_chunks; c++) params.push(...JSON.parse(metadata[`fused_optim.params.${c}`]));
  const { params_chunks: _p, ...rest } = m;
  const out: Record<string, any> = { ...rest, params };
  if (m.optimizer) {
    const state = {};
    for (let c = 0; c < m.optimizer.state_chunks; c++)
      Object.assign(state, JSON.parse(metadata[`fused_optim.state.${c}`]));
    const { state_chunks: _s, ...o } = m.optimizer;
    out.optimizer = { ...o, state };
  }
  return out;
}

export function setFullManifest(metadata: Record<string, string>, m: Record<string, any>): void {
  for (const key of Object.keys(metadata))
    if (key.startsWith('fused_optim.params.') || key.startsWith('fused_optim.state.')) delete metadata[key];
  const { params, optimizer, ...rest } = m;
  const main: Record<string, any> = { ...rest, params_chunks: 1 };
  metadata['fused_optim.params.0'] = JSON.stringify(params);
  if (optimizer) {
    const { state, ...o } = optimizer;
    main.optimizer = { ...o, state_chunks: 1 };
    metadata['fused_optim.state.0'] = JSON.stringify(state);
  }
  metadata['fused_optim.manifest'] = JSON.stringify(main);
}

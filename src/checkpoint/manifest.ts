// The manifest of a checkpoint: everything but the tensor bytes, as JSON in the header's
// __metadata__ (docs/checkpoints.md shows one), and the per-tensor CRC-32s. Reading it checks
// its structure and, per format version, its integrity:
// - version 3 (written when an optimizer keeps bfloat16 or 8-bit state): version 2, whose
//   optimizer state may hold such state (stateDtype, blockSize, BF16 and U8 tensors, and
//   `<buffer>_absmax` tensors); a release that reads only up to version 2 refuses it clearly;
// - version 2 (written otherwise): the header's own CRC-32 (layout.ts) covers the whole header,
//   manifest included; the tensor CRCs are a list in file order;
// - version 1 (fused-optim 0.1): the manifest has its own CRC-32 and a table of every tensor's
//   dtype, shape and CRC, which must agree with the header.
import type { DType } from '../dtype';
import { crc32, crcHex } from './crc32';
import { fail } from './errors';
import type { Json } from './codec';
import { HEADER_CRC_KEY, TENSOR_CRCS_KEY, checkHeaderCrc, tensorCrcsOf } from './layout';
import type { SafetensorsDType, SafetensorsTensorInfo } from './safetensors_header';
import type { Slicer } from './yielding';

/** The `format` metadata value of a fused-optim checkpoint. */
export const CHECKPOINT_FORMAT = 'fused-optim/checkpoint';
/** The newest format version this code reads and writes (3: low-bit optimizer state). */
export const CHECKPOINT_VERSION = 3;
/** The version of a file without low-bit optimizer state (readable by releases that read up to 2). */
export const FLOAT32_STATE_VERSION = 2;

export const MANIFEST_KEY = 'fused_optim.manifest';
/**
 * Version 2: the manifest's per-param parts in metadata entries of their own, CHUNK entries
 * each, so that neither writing nor reading a checkpoint of 100k params parses or builds one
 * JSON text of tens of MB at once: `fused_optim.params.<i>` (arrays of params) and
 * `fused_optim.state.<i>` (objects of optimizer state by param name); the manifest says how
 * many of each there are (`params_chunks`, `optimizer.state_chunks`).
 */
export const PARAMS_CHUNK_PREFIX = 'fused_optim.params.';
export const STATE_CHUNK_PREFIX = 'fused_optim.state.';
const CHUNK = 2048;
/** Version 1 only: the manifest's CRC-32. */
export const MANIFEST_CRC_KEY = 'fused_optim.manifest_crc32';

export interface ManifestParam {
  name: string;
  dtype: DType;
  shape: number[];
  tensor: string;
}
export interface ManifestGroup {
  /** The group's entries of the torch state dict, but params, encoded. */
  dict: { [key: string]: Json };
  /** torch's index of each param of the group (its position across the groups). */
  params: number[];
  param_names: string[];
}
export interface ManifestOptimizer {
  class: string;
  /** The state dict's other top-level entries (e.g. an RNG stream), encoded. */
  dict: { [key: string]: Json };
  param_groups: ManifestGroup[];
  /** Per-param state, keyed by param name, encoded. */
  state: { [name: string]: Json };
}
export interface ManifestStateful {
  class: string;
  state_dict: Json;
}
export interface Manifest {
  format: string;
  version: number;
  params: ManifestParam[];
  optimizer?: ManifestOptimizer;
  scheduler?: ManifestStateful;
  scaler?: ManifestStateful;
  extra?: Json;
}

export const PARAM_DTYPES: Record<DType, SafetensorsDType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** A checked manifest and the expected CRC-32 of every tensor, in file order. */
export interface ReadManifest {
  manifest: Manifest;
  crcs: Uint32Array;
}

/** Reads and checks the manifest of a checkpoint's header (raw bytes and parse). */
export async function readManifest(
  headerBytes: Uint8Array,
  metadata: Readonly<Record<string, string>>,
  tensors: ReadonlyMap<string, SafetensorsTensorInfo>,
  slicer: Slicer,
): Promise<ReadManifest> {
  const version = formatVersion(metadata);
  const text = metadata[MANIFEST_KEY];
  if (typeof text !== 'string') fail('InvalidManifest', `the metadata has no ${MANIFEST_KEY}`);
  let crcs: Uint32Array;
  let json: unknown;
  if (version >= 2) {
    checkHeaderCrc(headerBytes, metadata[HEADER_CRC_KEY]);
    crcs = tensorCrcsOf(metadata[TENSOR_CRCS_KEY], tensors.size);
    json = await joinChunks(parseManifestText(text), metadata, slicer);
  } else {
    checkManifestCrc(text, metadata[MANIFEST_CRC_KEY]);
    json = parseManifestText(text);
    crcs = crcsFromV1Table(json, tensors);
  }
  const manifest = await checkManifest(json, slicer);
  if (manifest.format !== CHECKPOINT_FORMAT || manifest.version !== version)
    fail('InvalidManifest', 'the manifest disagrees with the format metadata');
  return { manifest, crcs };
}

/**
 * A manifest as saveCheckpoint writes it: the per-param parts already as the JSON texts of
 * their chunks (built param by param as text: no object per param, no JSON.stringify of
 * 100k objects).
 */
export interface ManifestToWrite extends Omit<Manifest, 'params' | 'optimizer'> {
  /** JSON texts of arrays of at most CHUNK ManifestParams. */
  paramChunks: string[];
  optimizer?: Omit<ManifestOptimizer, 'state'> & {
    /** JSON texts of objects of at most CHUNK params' state, by param name. */
    stateChunks: string[];
  };
}

/** Collects JSON texts of object entries or array items into chunk texts of CHUNK each. */
export class ChunkTexts {
  readonly chunks: string[] = [];
  #items: string[] = [];
  readonly #open: string;
  readonly #close: string;
  constructor(kind: 'array' | 'object') {
    [this.#open, this.#close] = kind === 'array' ? ['[', ']'] : ['{', '}'];
  }
  /** Adds an item (an array's value, or an object's `"key":value`). */
  add(text: string): void {
    this.#items.push(text);
    if (this.#items.length === CHUNK) this.#flush();
  }
  /** The chunk texts (call once, after the last add). */
  done(): string[] {
    if (this.#items.length > 0) this.#flush();
    return this.chunks;
  }
  #flush(): void {
    this.chunks.push(`${this.#open}${this.#items.join(',')}${this.#close}`);
    this.#items = [];
  }
}

/** The chunk texts of an optimizer's encoded state (the path of optimizers that are not fused ones). */
export async function stateChunksOf(state: ManifestOptimizer['state'], slicer: Slicer): Promise<string[]> {
  const texts = new ChunkTexts('object');
  for (const name of Object.keys(state)) {
    if (slicer.due()) await slicer.yield();
    texts.add(`${JSON.stringify(name)}:${JSON.stringify(state[name])}`);
  }
  return texts.done();
}

/** Version 2's metadata: the manifest, with its per-param parts in chunks of their own. */
export function manifestMetadata(m: ManifestToWrite): Record<string, string> {
  const out: Record<string, string> = {};
  const { paramChunks, optimizer, ...rest } = m;
  const main: Record<string, unknown> = { ...rest, params_chunks: paramChunks.length };
  paramChunks.forEach((text, c) => (out[`${PARAMS_CHUNK_PREFIX}${c}`] = text));
  if (optimizer) {
    const { stateChunks, ...o } = optimizer;
    main.optimizer = { ...o, state_chunks: stateChunks.length };
    stateChunks.forEach((text, c) => (out[`${STATE_CHUNK_PREFIX}${c}`] = text));
  }
  return { [MANIFEST_KEY]: JSON.stringify(main), ...out };
}

// The inverse of manifestMetadata: the manifest as one object again.
async function joinChunks(main: unknown, metadata: Readonly<Record<string, string>>, slicer: Slicer): Promise<unknown> {
  const m = obj(main, 'the manifest');
  const count = (v: unknown, where: string) => index(v, where);
  const chunk = (key: string) => {
    const text = metadata[key];
    if (typeof text !== 'string') fail('InvalidManifest', `the metadata has no ${key}`);
    return parseManifestText(text, key);
  };
  const params: unknown[] = [];
  const paramChunks = count(m.params_chunks, 'params_chunks');
  for (let c = 0; c < paramChunks; c++) {
    await slicer.yield();
    for (const p of arr(chunk(`${PARAMS_CHUNK_PREFIX}${c}`), `${PARAMS_CHUNK_PREFIX}${c}`)) params.push(p);
  }
  const { params_chunks: _p, ...rest } = m;
  const out: Record<string, unknown> = { ...rest, params };
  if (m.optimizer !== undefined) {
    const o = obj(m.optimizer, 'optimizer');
    const state: Record<string, unknown> = {};
    const stateChunks = count(o.state_chunks, 'optimizer.state_chunks');
    for (let c = 0; c < stateChunks; c++) {
      await slicer.yield();
      const part = obj(chunk(`${STATE_CHUNK_PREFIX}${c}`), `${STATE_CHUNK_PREFIX}${c}`);
      for (const [name, entry] of Object.entries(part)) {
        if (Object.hasOwn(state, name))
          fail('InvalidManifest', `manifest: the state of param '${name}' is listed twice`);
        Object.defineProperty(state, name, { value: entry, enumerable: true, writable: true, configurable: true });
      }
    }
    const { state_chunks: _s, ...optimizer } = o;
    out.optimizer = { ...optimizer, state };
  }
  const known = new Set([MANIFEST_KEY, ...Array.from({ length: paramChunks }, (_, c) => `${PARAMS_CHUNK_PREFIX}${c}`)]);
  for (let c = 0; c < (m.optimizer ? (obj(m.optimizer, 'optimizer').state_chunks as number) : 0); c++)
    known.add(`${STATE_CHUNK_PREFIX}${c}`);
  for (const key of Object.keys(metadata))
    if ((key.startsWith(PARAMS_CHUNK_PREFIX) || key.startsWith(STATE_CHUNK_PREFIX)) && !known.has(key))
      fail('InvalidManifest', `the metadata has ${key}, which the manifest does not count`);
  return out;
}

function formatVersion(meta: Readonly<Record<string, string>>): number {
  if (meta.format !== CHECKPOINT_FORMAT) {
    fail(
      'NotACheckpoint',
      meta.format === undefined
        ? 'not a fused-optim checkpoint (a safetensors file without the "format" metadata)'
        : `not a fused-optim checkpoint (format ${JSON.stringify(meta.format)})`,
    );
  }
  const version = Number(meta.format_version);
  if (!Number.isSafeInteger(version) || version < 1 || String(version) !== meta.format_version)
    fail('UnsupportedVersion', `bad format_version ${JSON.stringify(meta.format_version)}`);
  if (version > CHECKPOINT_VERSION)
    fail(
      'UnsupportedVersion',
      `written in checkpoint format version ${version}, by a newer fused-optim; this version reads versions 1 to ${CHECKPOINT_VERSION}`,
    );
  return version;
}

function checkManifestCrc(text: string, stored: string | undefined): void {
  const crc = crcHex(crc32(Buffer.from(text, 'utf8')));
  if (stored !== crc)
    fail(
      'ChecksumMismatch',
      `the manifest fails its checksum (stored crc32 ${JSON.stringify(stored)}, computed ${crc}): the file is corrupt`,
    );
}

function parseManifestText(text: string, key = MANIFEST_KEY): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    return fail(
      'InvalidManifest',
      `${key === MANIFEST_KEY ? 'the manifest' : key} is not valid JSON (${(e as Error).message})`,
    );
  }
}

// ---------------------------------------------------------------------------------------
// Structure

const bad = (where: string, what: string): never => fail('InvalidManifest', `manifest: ${where} must be ${what}`);
const obj = (v: unknown, where: string) =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : bad(where, 'an object');
const arr = (v: unknown, where: string) => (Array.isArray(v) ? v : bad(where, 'an array'));
const str = (v: unknown, where: string) => (typeof v === 'string' ? v : bad(where, 'a string'));
const index = (v: unknown, where: string) =>
  Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : bad(where, 'a non-negative integer');
const shape = (v: unknown, where: string) => arr(v, where).map((d, i) => index(d, `${where}[${i}]`));

/** Version 1: the manifest's table of tensors must match the header; it holds their CRCs. */
function crcsFromV1Table(json: unknown, tensors: ReadonlyMap<string, SafetensorsTensorInfo>): Uint32Array {
  const table = obj(obj(json, 'the manifest').tensors, 'tensors');
  const names = Object.keys(table);
  if (names.length !== tensors.size)
    fail('InvalidManifest', `the header has ${tensors.size} tensors but the manifest lists ${names.length}`);
  const crcs = new Map<string, number>();
  for (const name of names) {
    const where = `tensors[${JSON.stringify(name)}]`;
    const t = obj(table[name], where);
    const crc = str(t.crc32, `${where}.crc32`);
    if (!/^[0-9a-f]{8}$/.test(crc)) bad(`${where}.crc32`, '8 hex digits');
    const dtype = str(t.dtype, `${where}.dtype`);
    const dims = shape(t.shape, `${where}.shape`);
    const info = tensors.get(name);
    if (!info)
      fail('InvalidManifest', `the manifest lists tensor ${JSON.stringify(name)}, which the header does not have`);
    if (info.dtype !== dtype || !sameShape(info.shape, dims)) {
      fail(
        'InvalidManifest',
        `tensor ${JSON.stringify(name)} is ${info.dtype} [${info.shape.join(', ')}] in the header but ${dtype} [${dims.join(', ')}] in the manifest`,
      );
    }
    crcs.set(name, parseInt(crc, 16));
  }
  return Uint32Array.from(tensors.keys(), (name) => crcs.get(name)!);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

async function checkManifest(json: unknown, slicer: Slicer): Promise<Manifest> {
  const m = obj(json, 'the manifest');
  const params: ManifestParam[] = [];
  const list = arr(m.params, 'params');
  for (let i = 0; i < list.length; i++) {
    if (slicer.due()) await slicer.yield();
    const p = obj(list[i], `params[${i}]`);
    const dtype = str(p.dtype, `params[${i}].dtype`);
    if (!Object.hasOwn(PARAM_DTYPES, dtype)) bad(`params[${i}].dtype`, 'float32, float16 or bfloat16');
    params.push({
      name: str(p.name, `params[${i}].name`),
      dtype: dtype as DType,
      shape: shape(p.shape, `params[${i}].shape`),
      tensor: str(p.tensor, `params[${i}].tensor`),
    });
  }
  const out: Manifest = { format: str(m.format, 'format'), version: m.version as number, params };
  if (m.optimizer !== undefined) out.optimizer = checkOptimizer(m.optimizer);
  for (const key of ['scheduler', 'scaler'] as const) {
    if (m[key] === undefined) continue;
    const s = obj(m[key], key);
    if (!('state_dict' in s)) bad(`${key}.state_dict`, 'present');
    out[key] = { class: str(s.class, `${key}.class`), state_dict: s.state_dict as Json };
  }
  if ('extra' in m) out.extra = m.extra as Json;
  return out;
}

function checkOptimizer(v: unknown): ManifestOptimizer {
  const o = obj(v, 'optimizer');
  const param_groups = arr(o.param_groups, 'optimizer.param_groups').map((gv, gi) => {
    const where = `optimizer.param_groups[${gi}]`;
    const g = obj(gv, where);
    const names = arr(g.param_names, `${where}.param_names`).map((n, i) => str(n, `${where}.param_names[${i}]`));
    const ids = arr(g.params, `${where}.params`).map((n, i) => index(n, `${where}.params[${i}]`));
    if (ids.length !== names.length) bad(`${where}.params`, 'as long as param_names');
    return { dict: obj(g.dict, `${where}.dict`) as { [key: string]: Json }, params: ids, param_names: names };
  });
  const dict = obj(o.dict, 'optimizer.dict') as { [key: string]: Json };
  if ('state' in dict || 'param_groups' in dict) bad('optimizer.dict', 'free of state and param_groups');
  return {
    class: str(o.class, 'optimizer.class'),
    dict,
    param_groups,
    state: obj(o.state, 'optimizer.state') as { [name: string]: Json },
  };
}

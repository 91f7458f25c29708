// Parsing headers natively, off the JavaScript thread (native/checkpoint/header_parser.h): a
// 100k-param checkpoint has 300k tensor entries, which JSON.parse and the checks in
// safetensors_header.ts take seconds over. The native parser decides only the headers it is
// sure of; for the rest (every malformed one among them) parseHeader() decides and names
// the problem. The result's tensors are columns behind a read-only Map.
import { native } from '../native';
import {
  type ParsedHeader,
  SAFETENSORS_DTYPES,
  type SafetensorsDType,
  type SafetensorsTensorInfo,
  parseHeader,
} from './safetensors_header';
import { Slicer } from './yielding';

/** Parses and checks a header, as parseHeader() does, natively where it can. */
export async function parseHeaderOffThread(headerBytes: Uint8Array, fileSize: number): Promise<ParsedHeader> {
  const n = native();
  const fast = await n.parseSafetensorsHeader(headerBytes, fileSize);
  if (!fast) return parseHeader(headerBytes, fileSize);
  checkDTypeTable(n.safetensorsDTypes());
  const metadata: Record<string, string> = {};
  for (let i = 0; i < fast.metadata.length; i += 2) metadata[fast.metadata[i]] = fast.metadata[i + 1];
  return {
    headerLength: headerBytes.length,
    dataStart: 8 + headerBytes.length,
    metadata,
    tensors: await TensorTable.create(fast),
  };
}

let dtypesChecked = false;
// The native dtype codes index SAFETENSORS_DTYPES: the two lists must be the same.
function checkDTypeTable(nativeDTypes: string[]): void {
  if (dtypesChecked) return;
  if (nativeDTypes.join() !== SAFETENSORS_DTYPES.join())
    throw new Error(`fused-optim: the addon's safetensors dtypes (${nativeDTypes}) differ from ${SAFETENSORS_DTYPES}`);
  dtypesChecked = true;
}

export interface NativeHeaderColumns {
  metadata: string[];
  names: string;
  nameEnds: Uint32Array;
  dtypes: Uint8Array;
  shapeEnds: Uint32Array;
  dims: Float64Array;
  begins: Float64Array;
  ends: Float64Array;
}

/**
 * A header's tensors by position in file order, read without making an info object per
 * tensor (a loader's per-tensor checks touch 300k tensors of a 100k-param checkpoint).
 */
export interface TensorIndex {
  readonly size: number;
  indexOf(name: string): number | undefined;
  nameAt(i: number): string;
  dtypeAt(i: number): SafetensorsDType;
  numelAt(i: number): number;
  shapeIs(i: number, shape: readonly number[]): boolean;
  /** data_offsets[0] and [1]. */
  beginAt(i: number): number;
  endAt(i: number): number;
}

/** The TensorIndex of a parsed header's tensors (the native table's own, or one over a Map). */
export function tensorIndexOf(tensors: ReadonlyMap<string, SafetensorsTensorInfo>): TensorIndex {
  return tensors instanceof TensorTable ? tensors : new MapIndex(tensors);
}

class MapIndex implements TensorIndex {
  readonly #names: string[];
  readonly #infos: SafetensorsTensorInfo[];
  readonly #index = new Map<string, number>();
  constructor(tensors: ReadonlyMap<string, SafetensorsTensorInfo>) {
    this.#names = [...tensors.keys()];
    this.#infos = [...tensors.values()];
    this.#names.forEach((name, i) => this.#index.set(name, i));
  }
  get size(): number {
    return this.#names.length;
  }
  indexOf(name: string): number | undefined {
    return this.#index.get(name);
  }
  nameAt(i: number): string {
    return this.#names[i];
  }
  dtypeAt(i: number): SafetensorsDType {
    return this.#infos[i].dtype;
  }
  numelAt(i: number): number {
    return this.#infos[i].shape.reduce((a, b) => a * b, 1);
  }
  shapeIs(i: number, shape: readonly number[]): boolean {
    const s = this.#infos[i].shape;
    return s.length === shape.length && s.every((d, k) => d === shape[k]);
  }
  beginAt(i: number): number {
    return this.#infos[i].dataOffsets[0];
  }
  endAt(i: number): number {
    return this.#infos[i].dataOffsets[1];
  }
}

/** The tensors of a header, in file order, as a read-only Map (infos made when first asked for). */
class TensorTable implements ReadonlyMap<string, SafetensorsTensorInfo>, TensorIndex {
  readonly #c: NativeHeaderColumns;
  readonly #names: string[];
  readonly #index: Map<string, number>;
  readonly #infos: Array<SafetensorsTensorInfo | undefined>;

  private constructor(columns: NativeHeaderColumns) {
    this.#c = columns;
    const n = columns.dtypes.length;
    this.#names = new Array(n);
    this.#index = new Map();
    this.#infos = new Array(n);
  }

  static async create(columns: NativeHeaderColumns): Promise<TensorTable> {
    const t = new TensorTable(columns);
    const slicer = new Slicer();
    let at = 0;
    for (let i = 0; i < t.#names.length; i++) {
      if (slicer.due()) await slicer.yield();
      const name = columns.names.slice(at, (at = columns.nameEnds[i]));
      t.#names[i] = name;
      t.#index.set(name, i);
    }
    return t;
  }

  get size(): number {
    return this.#names.length;
  }
  has(name: string): boolean {
    return this.#index.has(name);
  }
  get(name: string): SafetensorsTensorInfo | undefined {
    const i = this.#index.get(name);
    return i === undefined ? undefined : this.#info(i);
  }
  keys(): MapIterator<string> {
    return this.#names[Symbol.iterator]() as MapIterator<string>;
  }
  *values(): MapIterator<SafetensorsTensorInfo> {
    for (let i = 0; i < this.#names.length; i++) yield this.#info(i);
  }
  *entries(): MapIterator<[string, SafetensorsTensorInfo]> {
    for (let i = 0; i < this.#names.length; i++) yield [this.#names[i], this.#info(i)];
  }
  [Symbol.iterator](): MapIterator<[string, SafetensorsTensorInfo]> {
    return this.entries();
  }
  forEach(
    fn: (value: SafetensorsTensorInfo, key: string, map: ReadonlyMap<string, SafetensorsTensorInfo>) => void,
  ): void {
    for (let i = 0; i < this.#names.length; i++) fn(this.#info(i), this.#names[i], this);
  }

  // The loader looks tensors up mostly in file order (params, then each param's state): the
  // tensor after the last one found is tried first, a string comparison instead of a hash
  // lookup in a map of 300k names.
  #hint = -1;
  indexOf(name: string): number | undefined {
    const next = this.#hint + 1;
    if (next < this.#names.length && this.#names[next] === name) return (this.#hint = next);
    const i = this.#index.get(name);
    if (i !== undefined) this.#hint = i;
    return i;
  }
  nameAt(i: number): string {
    return this.#names[i];
  }
  dtypeAt(i: number): SafetensorsDType {
    return SAFETENSORS_DTYPES[this.#c.dtypes[i]] as SafetensorsDType;
  }
  numelAt(i: number): number {
    const c = this.#c;
    let n = 1;
    for (let k = i === 0 ? 0 : c.shapeEnds[i - 1]; k < c.shapeEnds[i]; k++) n *= c.dims[k];
    return n;
  }
  shapeIs(i: number, shape: readonly number[]): boolean {
    const c = this.#c;
    const from = i === 0 ? 0 : c.shapeEnds[i - 1];
    if (c.shapeEnds[i] - from !== shape.length) return false;
    for (let k = 0; k < shape.length; k++) if (c.dims[from + k] !== shape[k]) return false;
    return true;
  }
  beginAt(i: number): number {
    return this.#c.begins[i];
  }
  endAt(i: number): number {
    return this.#c.ends[i];
  }

  #info(i: number): SafetensorsTensorInfo {
    const cached = this.#infos[i];
    if (cached) return cached;
    const c = this.#c;
    const info: SafetensorsTensorInfo = {
      dtype: SAFETENSORS_DTYPES[c.dtypes[i]] as SafetensorsDType,
      shape: Array.from(c.dims.subarray(i === 0 ? 0 : c.shapeEnds[i - 1], c.shapeEnds[i])),
      dataOffsets: [c.begins[i], c.ends[i]],
    };
    this.#infos[i] = info;
    return info;
  }
}

// Writing safetensors files (the format: safetensors_header.ts). Tensors may be given as
// functions that produce their data, called one at a time while writing, so a large file is
// never built in memory. Files are written atomically (atomic.ts), through fs.promises.
import { type FileHandle, atomicWrite } from './atomic';
import {
  type SafetensorsDType,
  type TensorData,
  buildHeader,
  byteLengthOf,
  bytesOf,
  dataFits,
  dtypeOfData,
  fileOrder,
  isSafetensorsDType,
  numelOf,
} from './safetensors_header';

/** A tensor to write: its data, or a function called once, when its turn comes, to produce it. */
export interface SafetensorsTensorInput {
  /** Default: from the data's type (Float32Array F32, Uint16Array U16, ...). Required with a producer. */
  dtype?: SafetensorsDType;
  /** Default: [elements]. Required with a producer. */
  shape?: readonly number[];
  data: TensorData | (() => TensorData | Promise<TensorData>);
}

/** A tensor ready to write: its place is fixed before any data is produced. */
export interface PlannedTensor {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  byteLength: number;
  produce: () => TensorData | Promise<TensorData>;
}

export interface StreamWriteOptions {
  metadata?: Record<string, string>;
  /** Called with each tensor's name once its bytes are written (for tests and progress). */
  onTensorWritten?: (name: string) => void | Promise<void>;
}

const WRITE_CHUNK = 16 << 20;

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
  const header = buildHeader(tensors, checkMetadata(options.metadata));
  await atomicWrite(file, async (fh) => {
    await writeAll(fh, header, 0);
    let position = header.length;
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
      await writeAll(fh, bytes, position);
      position += bytes.length;
      await options.onTensorWritten?.(t.name);
    }
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
  if (!isSafetensorsDType(dtype)) throw new TypeError(`${who}: unknown dtype ${JSON.stringify(dtype)}`);
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
  await writeSafetensorsStream(file, planned, { metadata });
}

// Tensor: a typed block of host or GPU memory with a shape. Values go in and out as
// Float32Array (converted with round-to-nearest-even for half types) or as raw 16-bit
// patterns (Uint16Array) for float16/bfloat16.
import { checkDeviceUsable, defaultDevice } from './backend';
import { checkInteger, checkOptions, mustBe } from './checks';
import { type DType, type DeviceName, deviceCode, dtypeCode } from './dtype';
import { type NativeTensorHandle, native } from './native';

export interface TensorOptions {
  dtype?: DType;
  shape?: readonly number[];
  device?: DeviceName;
}

function checkShape(shape: unknown, what = 'shape'): number[] {
  if (!Array.isArray(shape)) throw new TypeError(mustBe(what, 'an array of non-negative integers', shape));
  const dims = shape.map((d, i) => checkInteger(d, `${what}[${i}]`, { min: 0 }));
  if (!Number.isSafeInteger(product(dims)))
    throw new RangeError(`${what} [${dims.join(', ')}] holds ${product(dims)} elements: out of range`);
  return dims;
}

// Only the static factories may construct: `new Tensor()` from JavaScript gets a clear error.
const FACTORY = Symbol('Tensor factory');

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly numel: number;
  readonly device: DeviceName;
  /** @internal the addon's handle; use the methods instead. */
  readonly handle: NativeTensorHandle;

  private constructor(
    token: typeof FACTORY,
    handle: NativeTensorHandle,
    dtype: DType,
    shape: number[],
    device: DeviceName,
  ) {
    if (token !== FACTORY)
      throw new TypeError(
        'Tensor cannot be constructed with new; use Tensor.zeros, Tensor.from or Tensor.fromDevicePointer',
      );
    this.handle = handle;
    this.dtype = dtype;
    this.shape = Object.freeze(shape);
    this.numel = product(shape);
    this.device = device;
  }

  /** A zero-filled tensor. */
  static zeros(shape: readonly number[] | number, options: Omit<TensorOptions, 'shape'> = {}): Tensor {
    const dims = checkShape(typeof shape === 'number' ? [shape] : shape, 'Tensor.zeros: shape');
    const o = checkOptions(options, 'Tensor.zeros: options', ['dtype', 'device']) as TensorOptions;
    return Tensor.#create(dims, o, 'Tensor.zeros');
  }

  static #create(dims: number[], o: TensorOptions, where: string): Tensor {
    const dtype = o.dtype ?? 'float32';
    const dcode = dtypeCode(dtype, `${where}: dtype`);
    const device = o.device ?? defaultDevice();
    const devCode = deviceCode(device, `${where}: device`);
    checkDeviceUsable(device);
    return new Tensor(FACTORY, native().TensorHandle.create(dcode, devCode, product(dims)), dtype, dims, device);
  }

  /**
   * A tensor holding `values`: numbers (converted to `dtype`), or for half dtypes a
   * Uint16Array of raw bits. The shape defaults to [values.length].
   */
  static from(values: Float32Array | Uint16Array | ArrayLike<number>, options: TensorOptions = {}): Tensor {
    if (values === null || typeof values !== 'object' || typeof values.length !== 'number') {
      throw new TypeError(mustBe('Tensor.from: values', 'a Float32Array, Uint16Array or array of numbers', values));
    }
    if (Array.isArray(values)) {
      const bad = values.findIndex((v) => typeof v !== 'number');
      if (bad >= 0) throw new TypeError(mustBe(`Tensor.from: values[${bad}]`, 'a number', values[bad]));
    }
    const o = checkOptions(options, 'Tensor.from: options', ['dtype', 'shape', 'device']) as TensorOptions;
    const shape = checkShape(o.shape ?? [values.length], 'Tensor.from: shape');
    if (product(shape) !== values.length) {
      throw new RangeError(
        `Tensor.from: shape [${shape.join(', ')}] holds ${product(shape)} elements but ${values.length} values were given`,
      );
    }
    const t = Tensor.#create(shape, o, 'Tensor.from');
    try {
      t.copyFrom(values instanceof Uint16Array || values instanceof Float32Array ? values : Float32Array.from(values));
    } catch (e) {
      t.dispose();
      throw e;
    }
    return t;
  }

  /**
   * Wraps CUDA memory owned by someone else (another addon, a CUDA library). The memory is
   * never freed by fused-optim; keep it alive as long as this tensor is used.
   */
  static fromDevicePointer(ptr: bigint, options: { dtype?: DType; shape: readonly number[] }): Tensor {
    if (typeof ptr !== 'bigint') throw new TypeError(mustBe('Tensor.fromDevicePointer: ptr', 'a bigint', ptr));
    const o = checkOptions(options, 'Tensor.fromDevicePointer: options', ['dtype', 'shape']) as {
      dtype?: DType;
      shape?: readonly number[];
    };
    const dtype = o.dtype ?? 'float32';
    const shape = checkShape(o.shape, 'Tensor.fromDevicePointer: shape');
    const handle = native().TensorHandle.fromDevicePointer(ptr, dtypeCode(dtype), product(shape));
    return new Tensor(FACTORY, handle, dtype, shape, 'cuda');
  }

  // Kept here as well as natively: dispose() is the only way a tensor's memory is freed, and
  // checkAlive() is on every path (a native call for it costs more than many a check).
  #disposed = false;

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Frees the memory now instead of when the tensor is garbage collected. */
  dispose(): void {
    this.handle.dispose();
    this.#disposed = true;
  }

  /** @internal throws if disposed, naming `what`. */
  checkAlive(what = 'tensor'): void {
    if (this.#disposed) throw new Error(`${what} has been disposed`);
  }

  /** The values as fp32: a copy, written into `out` (numel elements) when given. */
  toFloat32Array(out?: Float32Array): Float32Array {
    this.checkAlive();
    if (out !== undefined && !(out instanceof Float32Array))
      throw new TypeError('toFloat32Array: out must be a Float32Array');
    if (out !== undefined && out.length !== this.numel)
      throw new RangeError(`toFloat32Array: out has ${out.length} elements but the tensor has ${this.numel}`);
    return this.handle.toFloat32(out);
  }

  /**
   * Writes the values as fp32 into `out` (same element count), without allocating: e.g.
   * straight into another library's storage. A cuda tensor is copied through the host.
   * Throws while a stepAsync() of an optimizer holding the tensor runs.
   */
  copyTo(out: Float32Array): void {
    this.checkAlive();
    if (!(out instanceof Float32Array)) throw new TypeError('copyTo: out must be a Float32Array');
    if (out.length !== this.numel)
      throw new RangeError(`copyTo: out has ${out.length} elements but the tensor has ${this.numel}`);
    this.handle.toFloat32(out);
  }

  /** The raw 16-bit patterns of a float16/bfloat16 tensor: a copy, into `out` when given. */
  toBits(out?: Uint16Array): Uint16Array {
    this.checkAlive();
    if (this.dtype === 'float32') throw new TypeError('toBits: the tensor is float32; use toFloat32Array()');
    if (out !== undefined && !(out instanceof Uint16Array)) throw new TypeError('toBits: out must be a Uint16Array');
    if (out !== undefined && out.length !== this.numel)
      throw new RangeError(`toBits: out has ${out.length} elements but the tensor has ${this.numel}`);
    return this.handle.toBits16(out);
  }

  /** Overwrites every element: from fp32 values, or from raw bits for half dtypes. */
  copyFrom(values: Float32Array | Uint16Array): void {
    this.checkAlive();
    if (values instanceof Float32Array) {
      if (values.length !== this.numel)
        throw new RangeError(`copyFrom: got ${values.length} values for a tensor of ${this.numel} elements`);
      this.handle.copyFromFloat32(values);
    } else if (values instanceof Uint16Array) {
      if (this.dtype === 'float32')
        throw new TypeError('copyFrom: a Uint16Array holds raw half bits, but the tensor is float32');
      if (values.length !== this.numel)
        throw new RangeError(`copyFrom: got ${values.length} values for a tensor of ${this.numel} elements`);
      this.handle.copyFromBits16(values);
    } else {
      throw new TypeError('copyFrom: values must be a Float32Array or a Uint16Array of raw half bits');
    }
  }

  /** Sets every element to zero, in place. */
  zero(): void {
    this.checkAlive();
    this.handle.zero();
  }

  /** The CUDA address of the data (for interop with other CUDA code). */
  get devicePointer(): bigint {
    this.checkAlive();
    return this.handle.devicePointer;
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

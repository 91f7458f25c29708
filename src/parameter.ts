// Parameter: a trainable tensor, its gradient and its name. Optimizers holding the
// parameter are told when the grad is replaced, so a step never walks every parameter
// in JavaScript to find its gradient.
import { checkOptions, checkString, mustBe } from './checks';
import { Tensor } from './tensor';

/**
 * A row-sparse gradient (lazy mode), e.g. of an embedding table [V, D] where a batch
 * touched a few rows: values is [rows.length, D] and row r of it is the grad of row
 * rows[r]. Rows must be distinct and in range.
 */
export interface RowSparseGrad {
  rows: Int32Array;
  values: Tensor;
}

/** What an optimizer is told: a dense grad, a row-sparse one (with its row width), or none. */
export type GradBinding = Tensor | (RowSparseGrad & { rowWidth: number }) | null;

/** Returns false once it no longer wants to hear (its optimizer was garbage collected). */
type GradListener = (grad: GradBinding) => boolean;

export class Parameter {
  readonly #data: Tensor;
  #name: string;
  #grad: Tensor | null = null;
  #sparseGrad: (RowSparseGrad & { rowWidth: number }) | null = null;
  #listeners: GradListener[] = [];

  constructor(data: Tensor, options: { name?: string } = {}) {
    if (!(data instanceof Tensor)) throw new TypeError(mustBe('Parameter: data', 'a Tensor', data));
    const o = checkOptions(options, 'Parameter: options', ['name']);
    data.checkAlive('Parameter: data');
    this.#data = data;
    this.#name = checkString(o.name ?? '', 'Parameter: options.name');
  }

  /**
   * The param's tensor. Read-only: optimizers hold this tensor, so assigning another would
   * leave them updating the old one. Change the values in place with `p.data.copyFrom(...)`.
   */
  get data(): Tensor {
    return this.#data;
  }

  /** The name checkpoints, metrics and error messages use. */
  get name(): string {
    return this.#name;
  }

  set name(name: string) {
    this.#name = checkString(name, `Parameter.name (param '${this.#name}')`);
  }

  get grad(): Tensor | null {
    return this.#grad;
  }

  /** A Tensor of the param's shape, float32 or the param's own dtype, on its device; or null. */
  set grad(grad: Tensor | null) {
    if (grad !== null) {
      const who = `grad of param '${this.name}'`;
      if (!(grad instanceof Tensor)) throw new TypeError(mustBe(who, 'a Tensor or null', grad));
      if (grad === this.#data)
        throw new TypeError(`${who} is the param's own data tensor; a grad needs a tensor of its own (Tensor.zeros)`);
      grad.checkAlive(who);
      if (grad.shape.length !== this.data.shape.length || grad.shape.some((d, i) => d !== this.data.shape[i])) {
        throw new RangeError(
          `${who} has shape [${grad.shape.join(', ')}] but the param has shape [${this.data.shape.join(', ')}]`,
        );
      }
      if (grad.dtype !== 'float32' && grad.dtype !== this.data.dtype) {
        throw new TypeError(
          `${who} has dtype ${grad.dtype}; it must be float32 or the param's dtype ${this.data.dtype}`,
        );
      }
      if (grad.device !== this.data.device) {
        throw new TypeError(`${who} is on ${grad.device} but the param is on ${this.data.device}`);
      }
    }
    this.#grad = grad;
    this.#sparseGrad = null;
    this.#listeners = this.#listeners.filter((listener) => listener(grad));
  }

  /** The row-sparse grad, when one is set (then `grad` is null). */
  get sparseGrad(): RowSparseGrad | null {
    return this.#sparseGrad;
  }

  /**
   * Sets a row-sparse grad (clearing `grad`). Only optimizers constructed with
   * `lazyMode: true` accept it: they update the rows present and leave the other rows'
   * values and moments untouched.
   */
  set sparseGrad(sparse: RowSparseGrad | null) {
    if (sparse === null) {
      this.grad = null;
      return;
    }
    const who = `row-sparse grad of param '${this.name}'`;
    if (typeof sparse !== 'object' || !(sparse.rows instanceof Int32Array) || !(sparse.values instanceof Tensor)) {
      throw new TypeError(mustBe(who, '{ rows: Int32Array, values: Tensor }', sparse));
    }
    if (sparse.values === this.#data) throw new TypeError(`${who}: values is the param's own data tensor`);
    const { rows, values } = sparse;
    values.checkAlive(`${who}: values`);
    const shape = this.data.shape;
    if (shape.length < 1) throw new TypeError(`${who}: the param has no rows (shape [])`);
    const rowShape = shape.slice(1);
    const expected = [rows.length, ...rowShape];
    if (values.shape.length !== expected.length || values.shape.some((d, i) => d !== expected[i])) {
      throw new RangeError(
        `${who}: values has shape [${values.shape.join(', ')}], expected [${expected.join(', ')}] (${rows.length} rows)`,
      );
    }
    if (values.dtype !== 'float32' && values.dtype !== this.data.dtype) {
      throw new TypeError(
        `${who}: values dtype ${values.dtype} must be float32 or the param's dtype ${this.data.dtype}`,
      );
    }
    if (values.device !== this.data.device)
      throw new TypeError(`${who}: values are on ${values.device} but the param is on ${this.data.device}`);
    const seen = new Uint8Array(shape[0]);
    rows.forEach((row, r) => {
      if (row < 0 || row >= shape[0]) throw new RangeError(`${who}: rows[${r}] = ${row} is outside [0, ${shape[0]})`);
      if (seen[row]) throw new RangeError(`${who}: row ${row} appears twice`);
      seen[row] = 1;
    });
    const binding = { rows: Int32Array.from(rows), values, rowWidth: rowShape.reduce((a, b) => a * b, 1) };
    this.#grad = null;
    this.#sparseGrad = binding;
    this.#listeners = this.#listeners.filter((listener) => listener(binding));
  }

  /** @internal called by optimizers that hold this parameter. */
  onGradChange(listener: GradListener): void {
    this.#listeners.push(listener);
  }

  toString(): string {
    return `Parameter(${this.name || '<unnamed>'}, ${this.data.toString()})`;
  }
}

// `p.data = other` throws, in sloppy-mode code too (where a getter alone ignores the write);
// TypeScript sees only the getter, so the assignment is a compile error there as well.
Object.defineProperty(Parameter.prototype, 'data', {
  ...Object.getOwnPropertyDescriptor(Parameter.prototype, 'data'),
  set(this: Parameter) {
    throw new TypeError(
      `Parameter.data is read-only (param '${this.name}'): copy new values in with p.data.copyFrom(values), or make a new Parameter`,
    );
  },
});

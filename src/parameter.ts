// Parameter: a trainable tensor, its gradient and its name. Optimizers holding the
// parameter are told when the grad is replaced, so a step never walks every parameter
// in JavaScript to find its gradient.
import { Tensor } from './tensor';

/** Returns false once it no longer wants to hear (its optimizer was garbage collected). */
type GradListener = (grad: Tensor | null) => boolean;

export class Parameter {
  readonly data: Tensor;
  name: string;
  #grad: Tensor | null = null;
  #listeners: GradListener[] = [];

  constructor(data: Tensor, options: { name?: string } = {}) {
    if (!(data instanceof Tensor)) throw new TypeError('Parameter: data must be a Tensor');
    data.checkAlive('Parameter: data');
    this.data = data;
    this.name = options.name ?? '';
  }

  get grad(): Tensor | null {
    return this.#grad;
  }

  /** A Tensor of the param's shape, float32 or the param's own dtype, on its device; or null. */
  set grad(grad: Tensor | null) {
    if (grad !== null) {
      const who = `grad of param '${this.name}'`;
      if (!(grad instanceof Tensor)) throw new TypeError(`${who} must be a Tensor or null`);
      grad.checkAlive(who);
      if (grad.shape.length !== this.data.shape.length || grad.shape.some((d, i) => d !== this.data.shape[i])) {
        throw new RangeError(`${who} has shape [${grad.shape.join(', ')}] but the param has shape [${this.data.shape.join(', ')}]`);
      }
      if (grad.dtype !== 'float32' && grad.dtype !== this.data.dtype) {
        throw new TypeError(`${who} has dtype ${grad.dtype}; it must be float32 or the param's dtype ${this.data.dtype}`);
      }
      if (grad.device !== this.data.device) {
        throw new TypeError(`${who} is on ${grad.device} but the param is on ${this.data.device}`);
      }
    }
    this.#grad = grad;
    this.#listeners = this.#listeners.filter((listener) => listener(grad));
  }

  /** @internal called by optimizers that hold this parameter. */
  onGradChange(listener: GradListener): void {
    this.#listeners.push(listener);
  }

  toString(): string {
    return `Parameter(${this.name || '<unnamed>'}, ${this.data.toString()})`;
  }
}

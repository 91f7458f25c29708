// What every fused optimizer shares: PyTorch-style param groups, the flat param index
// (torch's state-dict numbering), grad bookkeeping and zeroGrad. Subclasses own the
// hyperparameters, the native handle and the state layout.
import type { DeviceName } from './dtype';
import { type GradBinding, Parameter } from './parameter';

export interface ParamGroup {
  params: Parameter[];
  /** Set by learning-rate schedulers: the lr the schedule multiplies. */
  initialLr?: number;
  [key: string]: unknown;
}

export type ParamsInput<G> = Iterable<Parameter> | Iterable<Partial<G> & { params: Iterable<Parameter> }>;

export function checkFiniteNumber(
  value: unknown,
  what: string,
  { min = -Infinity, minExclusive = false } = {},
): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new RangeError(`${what} must be a finite number, got ${String(value)}`);
  }
  if (minExclusive ? value <= min : value < min) {
    throw new RangeError(`${what} must be ${minExclusive ? '>' : '>='} ${min}, got ${value}`);
  }
  return value;
}

export function checkBetas(value: unknown, what: string, upperInclusive = false): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) throw new TypeError(`${what} must be an array of two numbers`);
  value.forEach((b, i) => {
    const ok = typeof b === 'number' && Number.isFinite(b) && b >= 0 && (upperInclusive ? b <= 1 : b < 1);
    if (!ok) throw new RangeError(`${what}[${i}] must be in [0, 1${upperInclusive ? ']' : ')'}, got ${String(b)}`);
  });
  return [value[0], value[1]];
}

export function checkBoolean(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${what} must be a boolean, got ${String(value)}`);
  return value;
}

export abstract class Optimizer<G extends ParamGroup> {
  readonly paramGroups: G[] = [];
  readonly defaults: Omit<G, 'params'>;
  /** Every param in group order: the index is torch's state-dict index. */
  protected readonly params: Parameter[] = [];
  #device: DeviceName | undefined;

  protected constructor(defaults: Omit<G, 'params'>) {
    this.defaults = defaults;
  }

  /** Registers the constructor's params; subclasses call it once their own fields exist. */
  protected initGroups(params: ParamsInput<G>): void {
    const groups = this.normalizeInput(params);
    // Validate every group before registering any param, so a bad group changes nothing.
    const seen = new Set<Parameter>();
    const completed = groups.map((g, i) => this.completeGroup(g, `param group ${i}`, seen));
    for (const g of completed) this.registerGroup(g);
  }

  /** The device every param of this optimizer lives on. */
  get device(): DeviceName {
    return this.#device ?? 'cpu';
  }

  /** Adds a group (PyTorch's add_param_group); missing hyperparameters come from the defaults. */
  addParamGroup(group: Partial<G> & { params: Iterable<Parameter> }): void {
    if (group === null || typeof group !== 'object') throw new TypeError('addParamGroup: group must be an object');
    const completed = this.completeGroup(group, `param group ${this.paramGroups.length}`, new Set(this.params));
    this.registerGroup(completed);
  }

  /** Clears every gradient: sets it to null (default) or fills it with zeros in place. */
  zeroGrad({ setToNone = true }: { setToNone?: boolean } = {}): void {
    for (const p of this.params) {
      if (setToNone) p.grad = null;
      else (p.grad ?? p.sparseGrad?.values)?.zero();
    }
  }

  /** Checks a new group's params beyond the common checks (AdamWDL: its per-param rules). */
  protected checkParams(_params: Parameter[], _where: string): void {}
  /** Checks one group's hyperparameters; `where` names it in errors. Returns the group. */
  protected abstract checkGroup(group: G, where: string): G;
  /** Hands a newly registered param to the native side. */
  protected abstract bindParam(param: Parameter, index: number, groupIndex: number): void;
  /** Tells the native side the grad of param `index` changed. */
  protected abstract bindGrad(index: number, grad: GradBinding): void;

  private normalizeInput(params: ParamsInput<G>): Array<Partial<G> & { params: Iterable<Parameter> }> {
    if (
      params === null ||
      typeof params !== 'object' ||
      typeof (params as Iterable<unknown>)[Symbol.iterator] !== 'function'
    ) {
      throw new TypeError('params must be an array of Parameters or of param groups');
    }
    const list = [...(params as Iterable<unknown>)];
    if (list.length === 0) throw new RangeError('optimizer got an empty parameter list');
    if (list.every((p) => p instanceof Parameter))
      return [{ params: list as Parameter[] } as Partial<G> & { params: Parameter[] }];
    return list.map((g, i) => {
      if (g === null || typeof g !== 'object' || g instanceof Parameter || !('params' in g)) {
        throw new TypeError(
          `param group ${i} must be an object with a params array (params cannot mix Parameters and groups)`,
        );
      }
      return g as Partial<G> & { params: Iterable<Parameter> };
    });
  }

  private completeGroup(input: Partial<G> & { params: Iterable<Parameter> }, where: string, seen: Set<Parameter>): G {
    const raw = input.params;
    if (raw === null || typeof raw !== 'object' || typeof (raw as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new TypeError(`${where}: params must be an array of Parameters`);
    }
    const params = [...raw];
    if (params.length === 0) throw new RangeError(`${where}: params is empty`);
    let device = this.#device;
    const seenData = new Set([...seen].map((p) => p.data));
    params.forEach((p, i) => {
      if (!(p instanceof Parameter)) throw new TypeError(`${where}: params[${i}] is not a Parameter`);
      const label = `${where}: param '${p.name || `#${i}`}'`;
      if (seen.has(p)) throw new Error(`${label} appears in more than one param group (or twice in one)`);
      if (seenData.has(p.data)) throw new Error(`${label} uses the same data tensor as another param of the optimizer`);
      seen.add(p);
      seenData.add(p.data);
      p.data.checkAlive(`${label} data`);
      device ??= p.data.device;
      if (p.data.device !== device)
        throw new TypeError(`${label} is on ${p.data.device} but the optimizer's params are on ${device}`);
    });
    this.checkParams(params, where);
    const group = { ...this.defaults, ...input, params } as G;
    for (const key of Object.keys(group))
      if ((group as Record<string, unknown>)[key] === undefined) {
        (group as Record<string, unknown>)[key] = (this.defaults as Record<string, unknown>)[key];
      }
    return this.checkGroup(group, where);
  }

  private registerGroup(group: G): void {
    this.#device ??= group.params[0].data.device;
    const groupIndex = this.paramGroups.length;
    this.paramGroups.push(group);
    for (const p of group.params) {
      const index = this.params.length;
      this.params.push(p);
      this.bindParam(p, index, groupIndex);
      if (p.grad) this.bindGrad(index, p.grad);
      else if (p.sparseGrad)
        this.bindGrad(index, { ...p.sparseGrad, rowWidth: p.data.numel / Math.max(1, p.data.shape[0]) });
      // Weak, so a parameter outliving its optimizer does not keep it (and its state) alive.
      const self = new WeakRef(this);
      p.onGradChange((grad) => {
        const opt = self.deref();
        opt?.bindGrad(index, grad);
        return opt !== undefined;
      });
    }
  }
}

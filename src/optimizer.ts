// What every fused optimizer shares: PyTorch-style param groups, the flat param index
// (torch's state-dict numbering), grad bookkeeping and zeroGrad. Subclasses own the
// hyperparameters, the native handle and the state layout.
import { checkBoolean, checkKeys, checkObject, checkOptions, describe, mustBe } from './checks';
import type { DeviceName } from './dtype';
import { type GradBinding, Parameter } from './parameter';
import type { Tensor } from './tensor';

export interface ParamGroup {
  params: Parameter[];
  /** Set by learning-rate schedulers: the lr the schedule multiplies. */
  initialLr?: number;
  [key: string]: unknown;
}

export type ParamsInput<G> = Iterable<Parameter> | Iterable<Partial<G> & { params: Iterable<Parameter> }>;

/** A group as the user passes it: params, and any hyperparameters that differ from the defaults. */
type GroupInput<G> = Partial<G> & { params: Iterable<Parameter> };

export abstract class Optimizer<G extends ParamGroup> {
  readonly paramGroups: G[] = [];
  readonly defaults: Omit<G, 'params'>;
  /** Every param in group order: the index is torch's state-dict index. */
  protected readonly params: Parameter[] = [];
  /** The keys a param group may have: params, initialLr and the hyperparameters (the defaults' keys). */
  readonly #groupKeys: readonly string[];
  // Each data tensor held and its param, so a new group is checked against them in O(its size).
  readonly #held = new Map<Tensor, Parameter>();
  // One weak reference for every grad listener: a parameter outliving its optimizer does
  // not keep it (and its state) alive.
  readonly #self = new WeakRef(this);
  #device: DeviceName | undefined;
  #disposed = false;

  protected constructor(defaults: Omit<G, 'params'>) {
    this.defaults = defaults;
    this.#groupKeys = ['params', 'initialLr', ...Object.keys(defaults)];
  }

  /** Registers the constructor's params; subclasses call it once their own fields exist. */
  protected initGroups(params: ParamsInput<G>): void {
    const groups = this.normalizeInput(params);
    // Validate every group before registering any param, so a bad group changes nothing.
    // A failed constructor leaves no optimizer behind: the groups record into #held as they are checked.
    const completed = groups.map((g, i) => this.completeGroup(g, `param group ${i}`, this.#held));
    for (const g of completed) this.registerGroup(g);
  }

  /** The device every param of this optimizer lives on. */
  get device(): DeviceName {
    return this.#device ?? 'cpu';
  }

  /** True once dispose() has been called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Frees the optimizer's state (moments, fp32 masters, launch tables) now instead of when
   * the object is garbage collected. Idempotent; every later use throws. The params and
   * their grads are not touched: they stay usable, also by another optimizer.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.release();
  }

  /** Adds a group (PyTorch's add_param_group); missing hyperparameters come from the defaults. */
  addParamGroup(group: GroupInput<G>): void {
    this.checkNotDisposed('addParamGroup');
    checkObject(group, 'addParamGroup: group', 'a param group object');
    const fresh = new Map<Tensor, Parameter>();
    const completed = this.completeGroup(group, `param group ${this.paramGroups.length}`, fresh, this.#held);
    this.registerGroup(completed);
    for (const [data, p] of fresh) this.#held.set(data, p);
  }

  /** Clears every gradient: sets it to null (default) or fills it with zeros in place. */
  zeroGrad(options: { setToNone?: boolean } = {}): void {
    this.checkNotDisposed('zeroGrad');
    const o = checkOptions(options, 'zeroGrad: options', ['setToNone']);
    const setToNone = checkBoolean(o.setToNone ?? true, 'zeroGrad: options.setToNone');
    for (const p of this.params) {
      if (setToNone) p.grad = null;
      else (p.grad ?? p.sparseGrad?.values)?.zero();
    }
  }

  /** Throws when dispose() has been called; `what` names the call. */
  protected checkNotDisposed(what: string): void {
    if (this.#disposed)
      throw new Error(`${this.constructor.name}.${what}: the optimizer has been disposed (dispose() was called)`);
  }

  /** Frees what the subclass holds (FusedOptimizer: the native state); called once by dispose(). */
  protected release(): void {}

  /**
   * The checks of a group, at construction, in addParamGroup and before every step (a key
   * set later by hand, `g.weight_decay = 0`, must not be silently ignored): its keys, then
   * its hyperparameters. Returns the group.
   */
  protected validateGroup(group: G, where: string): G {
    this.checkGroupKeys(group, where);
    return this.checkGroup(group, where);
  }

  /** A group's keys must be among the defaults' (and params, initialLr). */
  protected checkGroupKeys(group: object, where: string): void {
    checkKeys(group as Record<string, unknown>, where, this.#groupKeys);
  }

  /** Checks a new group's params beyond the common checks (AdamWDL: its per-param rules). */
  protected checkParams(_params: Parameter[], _where: string): void {}
  /** Checks one group's hyperparameters; `where` names it in errors. Returns the group. */
  protected abstract checkGroup(group: G, where: string): G;
  /** Hands a newly registered group's params (indices first, first + 1, ...) to the native side. */
  protected abstract bindGroup(params: readonly Parameter[], first: number, groupIndex: number, group: G): void;
  /** Tells the native side the grad of param `index` changed. */
  protected abstract bindGrad(index: number, grad: GradBinding): void;
  /** The dense grads of params first, first + 1, ... at once (a new group's grads). */
  protected bindGrads(first: number, grads: ReadonlyArray<Tensor | null>): void {
    grads.forEach((g, i) => this.bindGrad(first + i, g));
  }

  private normalizeInput(params: ParamsInput<G>): Array<GroupInput<G>> {
    if (
      params === null ||
      typeof params !== 'object' ||
      typeof (params as Iterable<unknown>)[Symbol.iterator] !== 'function'
    ) {
      throw new TypeError(mustBe('params', 'an array of Parameters or of param groups', params));
    }
    const list = [...(params as Iterable<unknown>)];
    if (list.length === 0) throw new RangeError('optimizer got an empty parameter list');
    if (list.every((p) => p instanceof Parameter)) return [{ params: list as Parameter[] } as GroupInput<G>];
    return list.map((g, i) => {
      if (g === null || typeof g !== 'object' || g instanceof Parameter || !('params' in g)) {
        throw new TypeError(
          `param group ${i} must be an object with a params array (params cannot mix Parameters and groups), got ${describe(g)}`,
        );
      }
      return g as GroupInput<G>;
    });
  }

  // `seen` gets the group's data tensors (and their params); `held`, the tensors held before,
  // is only read.
  private completeGroup(
    input: GroupInput<G>,
    where: string,
    seen: Map<Tensor, Parameter>,
    held?: ReadonlyMap<Tensor, Parameter>,
  ): G {
    this.checkGroupKeys(input, where);
    const params = this.groupParams(input.params, where, seen, held);
    this.checkParams(params, where);
    const group = { ...this.defaults, ...input, params } as G;
    for (const key of Object.keys(group))
      if ((group as Record<string, unknown>)[key] === undefined) {
        (group as Record<string, unknown>)[key] = (this.defaults as Record<string, unknown>)[key];
      }
    return this.validateGroup(group, where);
  }

  private groupParams(
    raw: unknown,
    where: string,
    seen: Map<Tensor, Parameter>,
    held?: ReadonlyMap<Tensor, Parameter>,
  ): Parameter[] {
    if (raw === null || typeof raw !== 'object' || typeof (raw as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new TypeError(mustBe(`${where}: params`, 'an array of Parameters', raw));
    }
    const params = [...(raw as Iterable<unknown>)];
    if (params.length === 0) throw new RangeError(`${where}: params is empty`);
    let device = this.#device;
    params.forEach((p, i) => {
      if (!(p instanceof Parameter)) throw new TypeError(mustBe(`${where}: params[${i}]`, 'a Parameter', p));
      const label = `${where}: param '${p.name || `#${i}`}'`;
      // One lookup per param: a Parameter has one data tensor, so a repeated Parameter is a repeated tensor.
      const owner = seen.get(p.data) ?? held?.get(p.data);
      if (owner === p) throw new Error(`${label} appears in more than one param group (or twice in one)`);
      if (owner) throw new Error(`${label} uses the same data tensor as another param of the optimizer`);
      seen.set(p.data, p);
      p.data.checkAlive(`${label} data`);
      device ??= p.data.device;
      if (p.data.device !== device)
        throw new TypeError(`${label} is on ${p.data.device} but the optimizer's params are on ${device}`);
    });
    return params as Parameter[];
  }

  private registerGroup(group: G): void {
    this.#device ??= group.params[0].data.device;
    const groupIndex = this.paramGroups.length;
    const first = this.params.length;
    this.bindGroup(group.params, first, groupIndex, group); // all or none
    this.paramGroups.push(group);
    const dense = group.params.map((p) => p.grad);
    if (dense.some((g) => g !== null)) this.bindGrads(first, dense);
    group.params.forEach((p, i) => {
      const index = first + i;
      this.params.push(p);
      if (p.sparseGrad)
        this.bindGrad(index, { ...p.sparseGrad, rowWidth: p.data.numel / Math.max(1, p.data.shape[0]) });
      p.onGradChange(Optimizer.#gradListener(this.#self, index));
    });
  }

  // Made here, where nothing but `self` and `index` is in scope: a closure keeps its whole
  // scope alive, and one made inside registerGroup would hold the optimizer (`this`) strongly
  // from every param, so an optimizer over long-lived params would never be collected.
  static #gradListener<G extends ParamGroup>(self: WeakRef<Optimizer<G>>, index: number) {
    return (grad: GradBinding): boolean => {
      const opt = self.deref();
      if (opt === undefined || opt.#disposed) return false; // stops listening
      opt.bindGrad(index, grad);
      return true;
    };
  }
}

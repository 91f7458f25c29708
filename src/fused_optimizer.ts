// What the fused optimizers (AdamW, AdamWDL, Lion) share on top of Optimizer: the native
// engine handle, the per-step hyperparameter table, state dicts in torch's layout, and
// fused metrics. Subclasses describe their hyperparameters and state buffers.
import { deviceCode } from './dtype';
import { type MetricsDict, metricsFromSums } from './metrics';
import { BufferSlot } from './checkpoint/native_io';
import {
  type NativeOptimizerHandle,
  type NativeParamOptions,
  type NativeParamState,
  type NativeStepControl,
  type NativeTensorTable,
} from './native';
import { Optimizer, type ParamGroup, checkBoolean, checkFiniteNumber } from './optimizer';
import type { GradBinding, Parameter } from './parameter';
import { Tensor } from './tensor';

/**
 * Gradient clipping inside step(), with Paddle's semantics (no epsilon): by the global L2
 * norm of all grads, by each tensor's own L2 norm, or by value. With a GradScaler the grads
 * are unscaled first. The norms come from one fused pass over the grads before the update.
 */
export type GradClip =
  | { type: 'globalNorm'; maxNorm: number }
  | { type: 'norm'; maxNorm: number }
  | { type: 'value'; max: number; min?: number };

/** Options every fused optimizer takes. */
export interface FusedOptions {
  /** Keep fp32 master weights for float16/bfloat16 params (default true). */
  masterWeights?: boolean;
  gradClip?: GradClip | null;
  /**
   * Accept row-sparse grads (`p.sparseGrad`) and update only the rows they hold, as
   * Paddle's lazy_mode (default false: a row-sparse grad is an error).
   */
  lazyMode?: boolean;
  /** Round bfloat16 params from their fp32 values stochastically (default false). */
  stochasticRounding?: boolean;
  /** Seed of the stochastic rounding stream (an integer below 2^53; default 0). */
  seed?: number;
}

export interface StateDict<S, GD> {
  state: Record<number, S>;
  param_groups: Array<GD & { params: number[] }>;
  /** Stochastic rounding's stream, present when it is on: restoring it makes a resume exact. */
  rng?: { seed: number; counter: number };
}

/** @internal see FusedOptimizer.checkpointLock. */
export interface CheckpointLock {
  release(): void;
  unlocked<T>(fn: () => T): T;
}

/** @internal what saveCheckpoint writes of a fused optimizer (FusedOptimizer.checkpointState). */
export interface CheckpointState {
  /** stateDict() but `state` (empty). */
  dict: StateDict<unknown, unknown>;
  /** Buffer names by mask bit (bit 7: the master; undefined: unused bits). */
  names: ReadonlyArray<string | undefined>;
  /** Per param (the optimizer's order): its step count, -1 when it has no state. */
  steps: Float64Array;
  /** Per param: which buffers it has (bit b: names[b]). */
  masks: Uint8Array;
  /** Every param's buffers, param by param, by bit order. */
  table: NativeTensorTable;
  /** Whether state dicts carry step counts (DecoupledLionW's do not). */
  hasStep: boolean;
}

/** @internal what loadCheckpoint reads into an optimizer, and how it commits (checkpointPlanLoad). */
export interface CheckpointLoadPlan {
  /** Each param with saved state: its index, and its buffers in the order stage() lists them. */
  readonly targets: ReadonlyArray<{ index: number; slots: BufferSlot[] }>;
  /**
   * The buffers to read the targets' state into, in target order: the params' own, or new
   * ones held aside (marked in `fresh`: not yet the optimizer's, so they may be filled
   * before the file is checked).
   */
  stage(): { table: NativeTensorTable; fresh: Uint8Array };
  /** Step counts, staged buffers, resets of params without saved state, rounding stream, hyperparameters. */
  commit(paramLoaded: (index: number) => boolean): void;
  /** Drops staged buffers (the load failed). */
  abort(): void;
}

/** Checks one state buffer of a dict (`where` names it) and returns what loading it needs. */
type BufferCheck<B> = (value: unknown, where: string, numel: number) => B;

interface CheckedState<B> {
  index: number;
  step: number;
  entry: Record<string, unknown>;
  buffers: Record<string, B>;
}

interface CheckedDict<G, B> {
  groups: G[];
  updates: Array<CheckedState<B>>;
  loaded: Set<number>;
  rng?: { seed: number; counter: number };
}

// loadStateDict: the param's state dtype is fp32; other float/integer arrays and number[] are converted.
const hostBuffer: BufferCheck<Float32Array> = (v, where, numel) => {
  const isNumbers = Array.isArray(v)
    ? v.every((x) => typeof x === 'number')
    : ArrayBuffer.isView(v) &&
      !(v instanceof DataView) &&
      !(v instanceof BigInt64Array) &&
      !(v instanceof BigUint64Array);
  if (!isNumbers) throw new TypeError(`${where} must be a Float32Array (or another typed array or array of numbers)`);
  const values = v as ArrayLike<number>;
  if (values.length !== numel)
    throw new RangeError(`${where} has ${values.length} elements but the param has ${numel}`);
  return values instanceof Float32Array ? values : Float32Array.from(values);
};

// loadCheckpoint: the buffer stays in the file until the whole file is checked; its size is known.
const slotBuffer: BufferCheck<BufferSlot> = (v, where, numel) => {
  if (!(v instanceof BufferSlot)) throw new TypeError(`${where} must be a tensor`);
  if (v.numel !== numel) throw new RangeError(`${where} has ${v.numel} elements but the param has ${numel}`);
  return v;
};

function checkGradClip(clip: unknown, where: string): NativeStepControl {
  if (clip === undefined || clip === null) return {};
  if (typeof clip !== 'object')
    throw new TypeError(`${where} must be an object like { type: 'globalNorm', maxNorm: 1 }`);
  const c = clip as Record<string, unknown>;
  if (c.type === 'globalNorm' || c.type === 'norm') {
    const maxNorm = checkFiniteNumber(c.maxNorm, `${where}.maxNorm`, { min: 0, minExclusive: true });
    return { clip: c.type === 'globalNorm' ? 1 : 2, maxNorm };
  }
  if (c.type === 'value') {
    const max = checkFiniteNumber(c.max, `${where}.max`);
    const min = c.min === undefined ? -max : checkFiniteNumber(c.min, `${where}.min`);
    if (min > max) throw new RangeError(`${where}: min (${min}) must be <= max (${max})`);
    return { clipMin: min, clipMax: max };
  }
  throw new TypeError(`${where}.type must be 'globalNorm', 'norm' or 'value', got ${JSON.stringify(c.type)}`);
}

function checkSeed(seed: unknown, what: string): number {
  if (!Number.isSafeInteger(seed) || (seed as number) < 0)
    throw new RangeError(`${what} must be an integer from 0 to 2^53 - 1, got ${String(seed)}`);
  return seed as number;
}

export abstract class FusedOptimizer<G extends ParamGroup, S extends object, GD extends object> extends Optimizer<G> {
  #handle: NativeOptimizerHandle | undefined;
  #hyper = new Float64Array(0);
  #gradClip: GradClip | null = null;
  #control: NativeStepControl = {};
  readonly #seed: number;
  protected readonly masterWeights: boolean;
  readonly stochasticRounding: boolean;
  readonly lazyMode: boolean;

  protected constructor(defaults: Omit<G, 'params'>, options: FusedOptions, name: string) {
    super(defaults);
    this.masterWeights = checkBoolean(options.masterWeights ?? true, `${name} options: masterWeights`);
    this.stochasticRounding = checkBoolean(options.stochasticRounding ?? false, `${name} options: stochasticRounding`);
    this.#seed = checkSeed(options.seed ?? 0, `${name} options: seed`);
    this.lazyMode = checkBoolean(options.lazyMode ?? false, `${name} options: lazyMode`);
    this.gradClip = options.gradClip ?? null;
  }

  /** Clipping applied inside every step(); null for none. Validated when set. */
  get gradClip(): GradClip | null {
    return this.#gradClip;
  }

  set gradClip(clip: GradClip | null) {
    const control = checkGradClip(clip, 'gradClip');
    this.#gradClip = clip === null ? null : { ...clip };
    this.#control = { ...control, stochasticRounding: this.stochasticRounding };
  }

  /** Numbers per group in the hyperparameter table (the native Algo's kHyperFields). */
  protected abstract readonly hyperFields: number;
  /** Writes group g's hyperparameters at out[offset...]. */
  protected abstract writeHyper(g: G, out: Float64Array, offset: number): void;
  protected abstract createHandle(device: number): NativeOptimizerHandle;
  /** State buffers of a param in the dict: required ones, then optional ones. */
  protected abstract readonly stateBuffers: { required: readonly string[]; optional: readonly string[] };
  /** Whether the state dict carries a step count (torch's AdamW does; DecoupledLionW does not). */
  protected abstract readonly hasStepCount: boolean;
  protected abstract groupToDict(g: G): GD;
  /** The group `current` with the hyperparameters of a saved group (not yet checked). */
  protected abstract groupFromDict(saved: GD, current: G): G;
  /** Per-param native options (AdamWDL adds its lr ratio and decay switch). */
  protected paramOptions(_p: Parameter, _groupIndex: number): NativeParamOptions {
    return { masterWeights: this.masterWeights };
  }

  /** Updates every param that has a grad. On CUDA this enqueues the kernels and returns. */
  step(): void {
    this.handle().step(this.hyperTable(), this.#control);
  }

  /** Like step(), off the JavaScript thread; resolves when the update is complete. */
  stepAsync(): Promise<void> {
    try {
      return this.handle()
        .stepAsync(this.hyperTable(), this.#control)
        .then(() => undefined);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * @internal GradScaler's step: grads are multiplied by invScale inside the kernels, and
   * with checkFinite an inf/NaN grad skips the whole step (returns true, nothing changed).
   */
  stepScaled(invScale: number, checkFinite: boolean): boolean {
    return this.handle().step(this.hyperTable(), { ...this.#control, invScale, checkFinite });
  }

  /** @internal the asynchronous form of stepScaled. */
  stepScaledAsync(invScale: number, checkFinite: boolean): Promise<boolean> {
    try {
      return this.handle().stepAsync(this.hyperTable(), { ...this.#control, invScale, checkFinite });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** @internal the params' grads that are set (values of row-sparse ones), for GradScaler.unscale. */
  gradsForScaling(): Tensor[] {
    return this.params.flatMap((p) => {
      const g = p.grad ?? p.sparseGrad?.values;
      return g ? [g] : [];
    });
  }

  /** @internal times the native launch plan was rebuilt (params, grads or state changed). */
  get planUploads(): number {
    return this.handle().planUploads;
  }

  /** Waits for the queued GPU work of this optimizer (a no-op on the CPU). */
  synchronize(): void {
    this.handle().synchronize();
  }

  /**
   * Per-parameter metrics (llm-foundry's set) for every param with a grad and state, keyed
   * `${metric}/${name}`, from one fused pass over memory. "update" is what step() would
   * subtract now, with the current grads and hyperparameters.
   */
  metrics(): MetricsDict {
    const rows = this.handle().metrics(this.hyperTable());
    const out: MetricsDict = {};
    for (let r = 0; r < rows.length; r += 7) {
      const p = this.params[rows[r]];
      Object.assign(out, metricsFromSums(p.name || `param${rows[r]}`, rows.subarray(r + 1, r + 7)));
    }
    return out;
  }

  stateDict(): StateDict<S, GD> {
    return this.#dictWith((i) => this.handle().getState(i));
  }

  /** Restores hyperparameters and state; checks the whole dict before changing anything. */
  loadStateDict(sd: StateDict<S, GD>): void {
    const checked = this.#checkDict(sd, hostBuffer);
    // torch replaces the whole state: params the dict has no state for start afresh (step 0,
    // zero buffers; a half param's master is re-seeded from its value at its next step).
    const resets: Array<[number, NativeParamState]> = [];
    this.params.forEach((p, index) => {
      if (checked.loaded.has(index)) return;
      const current = this.handle().getState(index);
      if (!current) return;
      const zeros: NativeParamState = { step: 0 };
      for (const [k, v] of Object.entries(current))
        if (v instanceof Float32Array && k !== 'master') zeros[k] = new Float32Array(p.data.numel);
      resets.push([index, zeros]);
    });
    // State first: the native side refuses while a stepAsync() runs, before anything changed.
    for (const u of checked.updates)
      this.handle().setState(u.index, { ...u.entry, ...u.buffers, step: u.step } as NativeParamState);
    for (const [index, s] of resets) this.handle().setState(index, s);
    this.#commitRest(checked);
  }

  /**
   * @internal checkpoints: refuses steps and state changes (natively, with a clear error)
   * until release(). Throws while a stepAsync() runs. unlocked(fn) runs fn (synchronous, so
   * nothing else can run meanwhile) with the lock lifted: the checkpoint's own state changes.
   */
  checkpointLock(): CheckpointLock {
    const handle = this.handle();
    handle.checkpointBegin();
    let held = true;
    return {
      release: () => {
        if (held) handle.checkpointEnd();
        held = false;
      },
      unlocked: (fn) => {
        if (!held) return fn();
        handle.checkpointEnd();
        try {
          return fn();
        } finally {
          handle.checkpointBegin();
        }
      },
    };
  }

  /**
   * @internal saveCheckpoint: stateDict() without its per-param state, and that state as
   * the optimizer's own buffers (no copies), in one tensor table; hold checkpointLock()
   * while they are used.
   */
  checkpointState(): CheckpointState {
    const handle = this.handle();
    const { steps, masks, table } = handle.checkpointStates();
    return {
      dict: this.#dictWith(() => null),
      names: this.#bufferNames(),
      steps,
      masks,
      table,
      hasStep: this.hasStepCount,
    };
  }

  /**
   * @internal loadCheckpoint: checks a state dict exactly as loadStateDict() does, but with
   * each state buffer given as a BufferSlot (its element count) rather than its values, and
   * returns what to read where, and the commit. Nothing changes until commit().
   */
  async checkpointPlanLoad(sd: StateDict<S, GD>, pace: () => Promise<void> | void): Promise<CheckpointLoadPlan> {
    const steps = this.#checkDictSteps(sd, slotBuffer);
    let next = steps.next();
    for (; !next.done; next = steps.next()) await pace(); // a turn of the event loop now and then
    const checked = next.value;
    const handle = this.handle();
    const names = this.#bufferNames();
    const indices = Int32Array.from(checked.updates, (u) => u.index);
    const masks = Uint8Array.from(checked.updates, (u) =>
      names.reduce((m, name, bit) => (name !== undefined && name in u.buffers ? m | (1 << bit) : m), 0),
    );
    let staged = false;
    return {
      targets: checked.updates.map((u) => ({
        index: u.index,
        slots: names.flatMap((name) => (name !== undefined && name in u.buffers ? [u.buffers[name]] : [])),
      })),
      stage: () => {
        staged = true;
        return handle.checkpointStage(indices, masks);
      },
      commit: (paramLoaded) => {
        const steps = Float64Array.from(checked.updates, (u) => u.step);
        const flags = Uint8Array.from(
          checked.updates,
          (u) => ('master' in u.buffers ? 1 : 0) | (paramLoaded(u.index) ? 2 : 0),
        );
        handle.checkpointCommit(indices, steps, flags);
        const rest = this.params.flatMap((_, index) => (checked.loaded.has(index) ? [] : [index]));
        handle.checkpointReset(Int32Array.from(rest));
        this.#commitRest(checked);
      },
      abort: () => {
        if (staged) handle.checkpointAbort(indices);
        staged = false;
      },
    };
  }

  // The state buffer names by mask bit (native/addon/optimizer_checkpoint.h): bit 7 is the master.
  #bufferNames(): Array<string | undefined> {
    const names: Array<string | undefined> = [...this.handle().checkpointBufferNames()];
    while (names.length < 7) names.push(undefined);
    names[7] = 'master';
    return names;
  }

  #dictWith(stateOf: (index: number) => object | null): StateDict<S, GD> {
    const state: Record<number, S> = {};
    this.params.forEach((_, i) => {
      const s = stateOf(i);
      if (!s) return;
      if (!this.hasStepCount) delete (s as { step?: number }).step;
      state[i] = s as unknown as S;
    });
    let index = 0;
    const param_groups = this.paramGroups.map((g) => ({ ...this.groupToDict(g), params: g.params.map(() => index++) }));
    const dict: StateDict<S, GD> = { state, param_groups };
    if (this.stochasticRounding) dict.rng = this.handle().getRng();
    return dict;
  }

  // The checks of loadStateDict, in torch's terms; `buffer` checks (and converts) one state buffer.
  #checkDict<B>(sd: StateDict<S, GD>, buffer: BufferCheck<B>): CheckedDict<G, B> {
    const steps = this.#checkDictSteps(sd, buffer);
    for (;;) {
      const next = steps.next();
      if (next.done) return next.value;
    }
  }

  // #checkDict as a generator that yields after each param's state, so that a checkpoint of
  // many params can give the event loop turns while it is checked.
  *#checkDictSteps<B>(sd: StateDict<S, GD>, buffer: BufferCheck<B>): Generator<void, CheckedDict<G, B>> {
    if (
      sd === null ||
      typeof sd !== 'object' ||
      !Array.isArray(sd.param_groups) ||
      typeof sd.state !== 'object' ||
      sd.state === null
    ) {
      throw new TypeError('loadStateDict: expected { state, param_groups }');
    }
    const groups = this.#checkGroups(sd);
    // torch maps saved ids to params by position in group order.
    const byId = new Map<number, number>();
    let flat = 0;
    sd.param_groups.forEach((saved) => saved.params.forEach((id) => byId.set(id, flat++)));
    const updates: Array<CheckedState<B>> = [];
    for (const [key, s] of Object.entries(sd.state) as Array<[string, Record<string, unknown>]>) {
      const index = byId.get(Number(key));
      if (index === undefined) throw new RangeError(`loadStateDict: state ${key} does not belong to any param group`);
      updates.push(
        this.#checkState(index, `loadStateDict: state ${key} (param '${this.params[index].name}')`, s, buffer),
      );
      yield;
    }
    let rng: { seed: number; counter: number } | undefined;
    if (sd.rng !== undefined) {
      if (sd.rng === null || typeof sd.rng !== 'object')
        throw new TypeError('loadStateDict: rng must be { seed, counter }');
      rng = {
        seed: checkSeed(sd.rng.seed, 'loadStateDict: rng.seed'),
        counter: checkSeed(sd.rng.counter, 'loadStateDict: rng.counter'),
      };
    }
    return { groups, updates, loaded: new Set(updates.map((u) => u.index)), rng };
  }

  #checkGroups(sd: StateDict<S, GD>): G[] {
    if (sd.param_groups.length !== this.paramGroups.length) {
      throw new RangeError(
        `loadStateDict: the dict has ${sd.param_groups.length} param groups but the optimizer has ${this.paramGroups.length}`,
      );
    }
    return sd.param_groups.map((saved, i) => {
      const where = `loadStateDict: param_groups[${i}]`;
      if (saved === null || typeof saved !== 'object') throw new TypeError(`${where} must be an object`);
      if (!Array.isArray(saved.params) || saved.params.length !== this.paramGroups[i].params.length) {
        throw new RangeError(
          `${where} has ${saved.params?.length} params but the optimizer's group has ${this.paramGroups[i].params.length}`,
        );
      }
      return this.checkGroup(this.groupFromDict(saved, { ...this.paramGroups[i] }), where);
    });
  }

  #checkState<B>(index: number, where: string, s: Record<string, unknown>, buffer: BufferCheck<B>): CheckedState<B> {
    const p = this.params[index];
    if (s === null || typeof s !== 'object') throw new TypeError(`${where} must be an object`);
    p.data.checkAlive(`${where}: data`);
    const step = this.hasStepCount ? s.step : (s.step ?? 1);
    if (!Number.isSafeInteger(step) || (step as number) < 0)
      throw new RangeError(`${where}: step must be a non-negative integer`);
    const { required, optional } = this.stateBuffers;
    const buffers: Record<string, B> = {};
    for (const k of [...required, ...optional, 'master']) {
      const v = s[k];
      if (v === undefined && !required.includes(k)) continue;
      buffers[k] = buffer(v, `${where}: ${k}`, p.data.numel);
    }
    if (s.master !== undefined && (p.data.dtype === 'float32' || !this.masterWeights)) {
      throw new TypeError(`${where}: the param keeps no master weights, but the dict has one`);
    }
    return { index, step: step as number, entry: s, buffers };
  }

  // What follows the state: the rounding stream and the groups' hyperparameters.
  #commitRest(checked: CheckedDict<G, unknown>): void {
    if (checked.rng) this.handle().setRng(checked.rng.seed, checked.rng.counter);
    checked.groups.forEach((g, i) => {
      const target = this.paramGroups[i];
      for (const key of Object.keys(target)) if (key !== 'params' && !(key in g)) delete target[key];
      Object.assign(target, g, { params: target.params });
      for (const key of Object.keys(target)) if (target[key] === undefined) delete target[key];
    });
  }

  protected bindParam(p: Parameter, _index: number, groupIndex: number): void {
    this.handle().addParam(p.data.handle, groupIndex, p.name, this.paramOptions(p, groupIndex));
  }

  protected bindGrad(index: number, grad: GradBinding): void {
    if (grad === null || grad instanceof Tensor) this.handle().setGrad(index, grad ? grad.handle : null);
    else this.handle().setSparseGrad(index, grad.values.handle, grad.rows, grad.rowWidth);
  }

  private handle(): NativeOptimizerHandle {
    if (!this.#handle) {
      this.#handle = this.createHandle(deviceCode(this.device));
      this.#handle.setRng(this.#seed, 0);
      this.#handle.setLazyMode(this.lazyMode);
    }
    return this.#handle;
  }

  // O(groups): the only per-step work in JavaScript.
  private hyperTable(): Float64Array {
    const n = this.paramGroups.length;
    const fields = this.hyperFields;
    if (this.#hyper.length !== n * fields) this.#hyper = new Float64Array(n * fields);
    for (let i = 0; i < n; i++)
      this.writeHyper(this.checkGroup(this.paramGroups[i], `paramGroups[${i}]`), this.#hyper, i * fields);
    return this.#hyper;
  }
}

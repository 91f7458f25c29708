// What the fused optimizers (AdamW, AdamWDL, Lion) share on top of Optimizer: the native
// engine handle, the per-step hyperparameter table, state dicts in torch's layout, and
// fused metrics. Subclasses describe their hyperparameters and state buffers.
import { deviceCode } from './dtype';
import { type MetricsDict, metricsFromSums } from './metrics';
import { BufferSlot } from './checkpoint/native_io';
import { clipModeCode, METRICS_ROW, type OptimizerLayout } from './layouts';
import {
  optimizerHandle,
  type NativeOptimizerHandle,
  type NativeParamOptions,
  type NativeParamState,
  type NativeStepControl,
  type NativeTensorTable,
} from './native';
import {
  checkBoolean,
  checkChoice,
  checkInteger,
  checkKeys,
  checkNumber,
  checkObject,
  checkOptions,
  describe,
  mustBe,
} from './checks';
import { Optimizer, type ParamGroup } from './optimizer';
import type { GradBinding, Parameter } from './parameter';
import { Tensor } from './tensor';
import {
  DEFAULT_STATE_BLOCK_SIZE,
  DEFAULT_STATE_DTYPE,
  type StateBlockSize,
  type StateDtype,
  type StateDtypeGroup,
  type StateEncoding,
  checkStateBits,
  checkStateBlockSize,
  checkStateDtype,
  quantBlocks,
  stateDtypeCode,
  stateEncodingOf,
} from './state_dtype';

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
  /**
   * The dtype optimizer state is kept in (default 'float32'): 'bfloat16' (rounded
   * stochastically after each update) or 'uint8' (8-bit blockwise codes with an fp32 absmax
   * per block, as bitsandbytes; params under 4096 elements keep fp32 state). The default of
   * every param group; a group may set its own, and change it between steps (its state is
   * converted at the next step).
   */
  stateDtype?: StateDtype;
  /** Elements per absmax of 'uint8' state: 256 (default) or 2048. Per group, like stateDtype. */
  stateBlockSize?: StateBlockSize;
}

/** The options of FusedOptions, for the constructors' unknown-key checks. */
export const FUSED_OPTION_KEYS = [
  'masterWeights',
  'gradClip',
  'lazyMode',
  'stochasticRounding',
  'seed',
  'stateDtype',
  'stateBlockSize',
] as const;

/** What a state dict's param groups record beside the hyperparameters: the group's state dtype. */
export interface StateDtypeGroupDict {
  state_dtype?: StateDtype;
  state_block_size?: StateBlockSize;
}

/** stateDict()'s options. */
export interface StateDictOptions {
  /** 'float32': every state buffer decoded to fp32 (default: each param's state in its own dtype). */
  stateDtype?: 'float32';
}

export interface StateDict<S, GD> {
  state: Record<number, S>;
  param_groups: Array<GD & StateDtypeGroupDict & { params: number[] }>;
  /**
   * The stochastic rounding stream, present when stochasticRounding is on or bfloat16 state
   * has drawn from it: restoring it makes a resume exact.
   */
  rng?: { seed: number; counter: number };
  /**
   * Which optimizer wrote the dict ('AdamW', 'AdamWDL', 'Lion'): loading it into another
   * is an error. Our own key beside torch's layout; a dict without it (written by torch) is
   * accepted where its keys fit the optimizer.
   */
  optimizer?: string;
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
  /** Per param: the dtype its state is kept in (STATE_DTYPES code) and the 8-bit block size. */
  stateDtypes: Uint8Array;
  blockSizes: Int32Array;
  /**
   * Every param's buffers, param by param, by bit order: one entry per buffer, two for an
   * 8-bit one (its codes, then its absmax values).
   */
  table: NativeTensorTable;
  /** Whether state dicts carry step counts (DecoupledLionW's do not). */
  hasStep: boolean;
}

/** @internal what loadCheckpoint reads into an optimizer, and how it commits (checkpointPlanLoad). */
export interface CheckpointLoadPlan {
  /** Each param with saved state: its index, and its buffers in the order stage() lists them. */
  readonly targets: ReadonlyArray<{ index: number; slots: StagedSlot[] }>;
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

/**
 * What a state buffer of a dict holds: fp32 values (a float32 state's buffers, masters;
 * other float types convert), 8-bit absmax values (fp32), or the bits of a low-bit state.
 */
type BufferKind = 'values' | 'absmax' | 'bfloat16' | 'uint8';

/** Checks one state buffer of a dict (`where` names it) and returns what loading it needs. */
type BufferCheck<B> = (value: unknown, where: string, numel: number, kind: BufferKind) => B;

interface CheckedState<B> {
  index: number;
  step: number;
  entry: Record<string, unknown>;
  /** The state's encoding (its stateDtype and blockSize keys). */
  encoding: StateEncoding;
  /** By key: the state buffers, `<buffer>_absmax` and master. */
  buffers: Record<string, B>;
}

interface CheckedDict<G, B> {
  groups: G[];
  updates: Array<CheckedState<B>>;
  loaded: Set<number>;
  rng?: { seed: number; counter: number };
}

// loadStateDict: fp32 values may come as other float/integer arrays and number[] (converted);
// low-bit state as its own typed arrays.
const hostBuffer: BufferCheck<Float32Array | Uint16Array | Uint8Array> = (v, where, numel, kind) =>
  kind === 'bfloat16' || kind === 'uint8' ? checkStateBits(v, kind, numel, where) : float32Buffer(v, numel, where);

/** A state buffer of a checkpoint to read from the file: raw (its own bytes) or widened to fp32 from its file dtype. */
export interface StagedSlot {
  tensor: string;
  /** The file dtypes it may have (checked by the load, as the file's). */
  dtypes: readonly string[];
  /** What it holds, for messages: 'float32 state', 'bfloat16 state', ... */
  what: string;
  raw: boolean;
}

// The file dtypes each kind of buffer may have (fp32 values: any float type, converted).
const SLOT_DTYPES: Record<BufferKind, readonly string[]> = {
  values: ['F32', 'BF16', 'F16', 'F64'],
  absmax: ['F32'],
  bfloat16: ['BF16'],
  uint8: ['U8'],
};

// loadCheckpoint: the buffer stays in the file until the whole file is checked; its size is known.
const slotBuffer: BufferCheck<StagedSlot> = (v, where, numel, kind) => {
  if (!(v instanceof BufferSlot)) throw new TypeError(mustBe(where, 'a tensor', v));
  if (v.numel !== numel) throw new RangeError(`${where} has ${v.numel} elements but the param has ${numel}`);
  const what = kind === 'values' ? 'optimizer state' : kind === 'absmax' ? '8-bit absmax' : `${kind} state`;
  return { tensor: v.tensor, dtypes: SLOT_DTYPES[kind], what, raw: kind === 'bfloat16' || kind === 'uint8' };
};

function checkGradClip(clip: unknown, where: string): NativeStepControl {
  if (clip === undefined || clip === null) return {};
  const c = checkObject(clip, where, "an object like { type: 'globalNorm', maxNorm: 1 }");
  const type = checkChoice(c.type, `${where}.type`, ['globalNorm', 'norm', 'value'] as const);
  if (type === 'globalNorm' || type === 'norm') {
    checkKeys(c, where, ['type', 'maxNorm']);
    const maxNorm = checkNumber(c.maxNorm, `${where}.maxNorm`, { min: 0, minExclusive: true });
    return { clip: clipModeCode(type === 'globalNorm' ? 'globalNorm' : 'tensorNorm'), maxNorm };
  }
  checkKeys(c, where, ['type', 'max', 'min']);
  const max = checkNumber(c.max, `${where}.max`);
  const min = c.min === undefined ? -max : checkNumber(c.min, `${where}.min`);
  if (min > max) throw new RangeError(`${where}: min (${min}) must be <= max (${max})`);
  return { clipMin: min, clipMax: max };
}

function checkSeed(seed: unknown, what: string): number {
  return checkInteger(seed, what, { min: 0 });
}

// The top level of a state dict: torch's two keys and our own two.
const DICT_KEYS = ['state', 'param_groups', 'rng', 'optimizer'];

// A validated group's state dtype keys (every group of a FusedOptimizer has them: the defaults do).
function stateDtypeOf(g: ParamGroup): StateDtypeGroup {
  return g as unknown as StateDtypeGroup;
}

// The constructor's defaults with the state dtype options, checked.
function withStateDtype<D extends object>(defaults: D, options: FusedOptions, name: string): D & StateDtypeGroup {
  const stateDtype = checkStateDtype(options.stateDtype ?? DEFAULT_STATE_DTYPE, `${name} options: stateDtype`);
  const stateBlockSize = checkStateBlockSize(
    options.stateBlockSize ?? DEFAULT_STATE_BLOCK_SIZE,
    `${name} options: stateBlockSize`,
  );
  return { ...defaults, stateDtype, stateBlockSize };
}

export abstract class FusedOptimizer<G extends ParamGroup, S extends object, GD extends object> extends Optimizer<G> {
  #handle: NativeOptimizerHandle | undefined;
  /** Per group: the state dtype its params were last given natively (a change applies at the next step). */
  #groupStateDtypes: StateDtypeGroup[] = [];
  #hyper = new Float64Array(0);
  #gradClip: GradClip | null = null;
  #control: NativeStepControl = {};
  readonly #seed: number;
  protected readonly masterWeights: boolean;
  readonly stochasticRounding: boolean;
  readonly lazyMode: boolean;

  protected constructor(defaults: Omit<G, 'params' | keyof StateDtypeGroup>, options: FusedOptions, name: string) {
    super(withStateDtype(defaults, options, name) as unknown as Omit<G, 'params'>);
    this.masterWeights = checkBoolean(options.masterWeights ?? true, `${name} options: masterWeights`);
    this.stochasticRounding = checkBoolean(options.stochasticRounding ?? false, `${name} options: stochasticRounding`);
    this.#seed = checkSeed(options.seed ?? 0, `${name} options: seed`);
    this.lazyMode = checkBoolean(options.lazyMode ?? false, `${name} options: lazyMode`);
    this.#setGradClip(options.gradClip ?? null, `${name} options: gradClip`);
  }

  /** Clipping applied inside every step(); null for none. Validated when set. */
  get gradClip(): GradClip | null {
    return this.#gradClip;
  }

  set gradClip(clip: GradClip | null) {
    this.checkNotDisposed('gradClip');
    this.#setGradClip(clip, 'gradClip');
  }

  #setGradClip(clip: GradClip | null, where: string): void {
    const control = checkGradClip(clip, where);
    this.#gradClip = clip === null ? null : { ...clip };
    this.#control = { ...control, stochasticRounding: this.stochasticRounding };
  }

  /** The optimizer's name in state dicts ('AdamW', 'AdamWDL', 'Lion'); subclasses of ours keep it. */
  protected abstract readonly optimizerName: string;
  /**
   * The native handle's class, the hyperparameter fields writeHyper writes (in order), the
   * state buffers (required, then optional) and whether the state carries a step count
   * (torch's AdamW does; DecoupledLionW does not). Declared with declareOptimizerLayout, so
   * that a mismatch with the addon fails at load (src/layouts.ts).
   */
  protected abstract readonly layout: OptimizerLayout;
  /** Writes group g's hyperparameters (layout.hyperFields, in order) at out[offset...]. */
  protected abstract writeHyper(g: G, out: Float64Array, offset: number): void;
  /**
   * The keys a saved param group may have besides params, param_names and initial_lr: the
   * optimizer's own (snake_case, as torch) and the torch keys that do not change the update.
   */
  protected abstract readonly groupDictKeys: readonly string[];
  protected abstract groupToDict(g: G): GD;
  /** The group `current` with the hyperparameters of a saved group (not yet checked). */
  protected abstract groupFromDict(saved: GD, current: G): G;
  /** A group's native options (AdamWDL adds each param's lr ratio and decay switch). */
  protected groupOptions(_params: readonly Parameter[], _groupIndex: number): NativeParamOptions {
    return { masterWeights: this.masterWeights };
  }

  /** Updates every param that has a grad. On CUDA this enqueues the kernels and returns. */
  step(): void {
    this.handle('step').step(this.hyperTable(), this.#control);
  }

  /** Like step(), off the JavaScript thread; resolves when the update is complete. */
  stepAsync(): Promise<void> {
    try {
      return this.handle('stepAsync')
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
    return this.handle('step').step(this.hyperTable(), { ...this.#control, invScale, checkFinite });
  }

  /** @internal the asynchronous form of stepScaled. */
  stepScaledAsync(invScale: number, checkFinite: boolean): Promise<boolean> {
    try {
      return this.handle('stepAsync').stepAsync(this.hyperTable(), { ...this.#control, invScale, checkFinite });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** @internal the params' grads that are set (values of row-sparse ones), for GradScaler.unscale. */
  gradsForScaling(): Tensor[] {
    this.checkNotDisposed('gradsForScaling');
    return this.params.flatMap((p) => {
      const g = p.grad ?? p.sparseGrad?.values;
      return g ? [g] : [];
    });
  }

  /** @internal times the native launch plan was rebuilt (params, grads or state changed). */
  get planUploads(): number {
    return this.handle('planUploads').planUploads;
  }

  /** @internal the bytes of optimizer state last reported to V8 (0 once disposed). */
  get memoryBytes(): number {
    return this.#handle?.memoryBytes ?? 0;
  }

  /** Waits for the queued GPU work of this optimizer (a no-op on the CPU). */
  synchronize(): void {
    this.handle('synchronize').synchronize();
  }

  /**
   * CUDA: the stream the steps run on, a `cudaStream_t` as a bigint (null on the CPU), for
   * ordering your own work after a step (record an event on it and wait for that event on
   * your stream). Steps already wait for work on the legacy default stream.
   */
  get cudaStream(): bigint | null {
    return this.handle('cudaStream').cudaStream;
  }

  /**
   * CUDA: the following steps wait, on the device, for `event`, a `cudaEvent_t` (as a bigint)
   * that your code recorded, for example after the kernels that produced the grads on a
   * stream of another library. The host does not wait. A TypeError on the CPU.
   */
  waitFor(event: bigint): void {
    if (typeof event !== 'bigint')
      throw new TypeError(`waitFor: event must be a bigint (a cudaEvent_t), got ${typeof event}`);
    this.handle('waitFor').waitFor(event);
  }

  /**
   * Per-parameter metrics (llm-foundry's set) for every param with a grad and state, keyed
   * `${metric}/${name}`, from one fused pass over memory. "update" is what step() would
   * subtract now, with the current grads and hyperparameters.
   */
  metrics(): MetricsDict {
    const rows = this.handle('metrics').metrics(this.hyperTable());
    const out: MetricsDict = {};
    const width = METRICS_ROW.length; // the index, then the sums
    for (let r = 0; r < rows.length; r += width) {
      const p = this.params[rows[r]];
      Object.assign(out, metricsFromSums(p.name || `param${rows[r]}`, rows.subarray(r + 1, r + width)));
    }
    return out;
  }

  /**
   * Bytes of optimizer state held now (the state buffers in their dtypes, 8-bit absmax
   * values included; not fp32 masters): 8 per element for AdamW's fp32 state, 4 for bf16,
   * about 2 + 8 / stateBlockSize for 8-bit. 0 before the first step.
   */
  stateBytes(): number {
    return this.handle('stateBytes').stateBytes;
  }

  /**
   * torch's state_dict(): each param's state in its own dtype (float32 buffers as
   * Float32Array; with stateDtype 'bfloat16', Uint16Array bit patterns; with 'uint8',
   * Uint8Array codes plus a Float32Array `<buffer>_absmax` per block, and `blockSize`).
   * `{ stateDtype: 'float32' }` decodes every buffer to fp32 instead.
   */
  stateDict(options: StateDictOptions = {}): StateDict<S, GD> {
    const o = checkOptions(options, 'stateDict: options', ['stateDtype']);
    const asFloat32 =
      o.stateDtype !== undefined &&
      checkChoice(o.stateDtype, 'stateDict: options.stateDtype', ['float32']) === 'float32';
    const handle = this.handle('stateDict');
    // A step that failed part way on the GPU left params and moments out of step: such a
    // state must not be saved (loadStateDict / loadCheckpoint make the optimizer usable again).
    const broken = handle.brokenReason;
    if (broken) throw new Error(`stateDict: ${broken}`);
    return this.#dictWith((i) => handle.getState(i, asFloat32));
  }

  /** Restores hyperparameters and state (torch's load_state_dict); checks the whole dict before changing anything. */
  loadStateDict(sd: StateDict<S, GD>): void {
    const handle = this.handle('loadStateDict');
    const checked = this.#checkDict(sd, hostBuffer);
    // torch replaces the whole state: params the dict has no state for start afresh (step 0,
    // zero buffers; a half param's master is re-seeded from its value at its next step).
    const resets: Array<[number, NativeParamState]> = [];
    this.params.forEach((p, index) => {
      if (checked.loaded.has(index)) return;
      const current = handle.getState(index, true);
      if (!current) return;
      const zeros: NativeParamState = { step: 0 };
      for (const [k, v] of Object.entries(current))
        if (v instanceof Float32Array && k !== 'master') zeros[k] = new Float32Array(p.data.numel);
      resets.push([index, zeros]);
    });
    // State first: the native side refuses while a stepAsync() runs, before anything changed.
    for (const u of checked.updates)
      handle.setState(u.index, { ...u.entry, ...u.buffers, step: u.step } as NativeParamState);
    for (const [index, s] of resets) handle.setState(index, s);
    this.#commitRest(checked);
  }

  /**
   * @internal checkpoints: refuses steps and state changes (natively, with a clear error)
   * until release(). Throws while a stepAsync() runs. unlocked(fn) runs fn (synchronous, so
   * nothing else can run meanwhile) with the lock lifted: the checkpoint's own state changes.
   */
  checkpointLock(): CheckpointLock {
    const handle = this.handle('checkpointLock');
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
    const handle = this.handle('saveCheckpoint');
    const broken = handle.brokenReason;
    if (broken) throw new Error(`saveCheckpoint: ${broken}`);
    const { steps, masks, stateDtypes, blockSizes, table } = handle.checkpointStates();
    return {
      dict: this.#dictWith(() => null),
      names: this.#bufferNames(),
      steps,
      masks,
      stateDtypes,
      blockSizes,
      table,
      hasStep: this.layout.hasStepCount,
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
    const handle = this.handle('loadCheckpoint');
    const names = this.#bufferNames();
    const indices = Int32Array.from(checked.updates, (u) => u.index);
    const masks = Uint8Array.from(checked.updates, (u) =>
      names.reduce((m, name, bit) => (name !== undefined && name in u.buffers ? m | (1 << bit) : m), 0),
    );
    const stateDtypes = Uint8Array.from(checked.updates, (u) => stateDtypeCode(u.encoding.dtype));
    const blockSizes = Int32Array.from(checked.updates, (u) => u.encoding.blockSize);
    // In the order of the staged table: by bit, an 8-bit buffer's codes then its absmax.
    const slotsOf = (u: CheckedState<StagedSlot>) =>
      names.flatMap((name) => {
        if (name === undefined || !(name in u.buffers)) return [];
        const absmax = u.buffers[`${name}_absmax`];
        return absmax ? [u.buffers[name], absmax] : [u.buffers[name]];
      });
    let staged = false;
    return {
      targets: checked.updates.map((u) => ({ index: u.index, slots: slotsOf(u) })),
      stage: () => {
        staged = true;
        return handle.checkpointStage(indices, masks, stateDtypes, blockSizes);
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

  protected override release(): void {
    this.#handle?.dispose();
  }

  protected bindGroup(params: readonly Parameter[], _first: number, groupIndex: number, group: G): void {
    const o = this.groupOptions(params, groupIndex);
    const handles = params.map((p) => p.data.handle);
    const names = params.map((p) => p.name);
    const { stateDtype, stateBlockSize } = stateDtypeOf(group);
    this.handle('addParamGroup').addParams(
      handles,
      groupIndex,
      names,
      o.masterWeights,
      o.lrRatios,
      o.applyDecay,
      stateDtypeCode(stateDtype),
      stateBlockSize,
    );
    this.#groupStateDtypes[groupIndex] = { stateDtype, stateBlockSize };
  }

  /** The checks of every group, and of its stateDtype and stateBlockSize. */
  protected override validateGroup(group: G, where: string): G {
    const g = super.validateGroup(group, where);
    checkStateDtype(g.stateDtype, `${where}: stateDtype`);
    checkStateBlockSize(g.stateBlockSize, `${where}: stateBlockSize`);
    return g;
  }

  // A group whose stateDtype or stateBlockSize was changed since its params last got theirs:
  // their state is converted now (natively, through fp32), before the step that uses it.
  #applyStateDtypes(): void {
    let first = 0;
    this.paramGroups.forEach((g, gi) => {
      const size = g.params.length;
      const applied = this.#groupStateDtypes[gi];
      const index = first;
      first += size;
      const { stateDtype, stateBlockSize } = stateDtypeOf(g);
      if (applied.stateDtype === stateDtype && applied.stateBlockSize === stateBlockSize) return;
      const handle = this.handle('step');
      if (stateDtype !== 'float32') {
        const sparse = g.params.find((p) => p.sparseGrad);
        if (sparse)
          throw new TypeError(
            `paramGroups[${gi}]: stateDtype '${stateDtype}' needs dense grads, but param '${sparse.name}' has a row-sparse grad (lazyMode keeps float32 state)`,
          );
      }
      for (let i = index; i < index + size; i++) handle.setStateDtype(i, stateDtypeCode(stateDtype), stateBlockSize);
      this.#groupStateDtypes[gi] = { stateDtype, stateBlockSize };
    });
  }

  protected bindGrad(index: number, grad: GradBinding): void {
    const handle = this.handle('grad');
    if (grad === null || grad instanceof Tensor) handle.setGrad(index, grad ? grad.handle : null);
    else handle.setSparseGrad(index, grad.values.handle, grad.rows, grad.rowWidth);
  }

  protected override bindGrads(first: number, grads: ReadonlyArray<Tensor | null>): void {
    this.handle('grad').setGrads(
      first,
      grads.map((g) => (g ? g.handle : null)),
    );
  }

  // The state buffer names by mask bit (native/addon/optimizer_checkpoint.h): bit 7 is the master.
  #bufferNames(): Array<string | undefined> {
    const names: Array<string | undefined> = [...this.handle('checkpoint').checkpointBufferNames()];
    while (names.length < 7) names.push(undefined);
    names[7] = 'master';
    return names;
  }

  #dictWith(stateOf: (index: number) => object | null): StateDict<S, GD> {
    const handle = this.handle('stateDict');
    const state: Record<number, S> = {};
    this.params.forEach((_, i) => {
      const s = stateOf(i);
      if (!s) return;
      if (!this.layout.hasStepCount) delete (s as { step?: number }).step;
      state[i] = s as unknown as S;
    });
    let index = 0;
    const param_groups = this.paramGroups.map((g) => ({
      ...this.groupToDict(g),
      state_dtype: stateDtypeOf(g).stateDtype,
      state_block_size: stateDtypeOf(g).stateBlockSize,
      params: g.params.map(() => index++),
    }));
    const dict: StateDict<S, GD> = { state, param_groups, optimizer: this.optimizerName };
    // bfloat16 state is rounded stochastically from the same stream: once it has drawn
    // (counter > 0), resuming exactly needs the stream too.
    const rng = handle.getRng();
    if (this.stochasticRounding || rng.counter > 0) dict.rng = rng;
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
    const where = 'loadStateDict';
    const dict = sd as unknown as Record<string, unknown>;
    if (dict === null || typeof dict !== 'object' || !Array.isArray(dict.param_groups))
      throw new TypeError(`${where}: expected { state, param_groups }, got ${describe(sd)}`);
    checkObject(dict.state, `${where}: state`);
    checkKeys(dict, where, DICT_KEYS);
    if (dict.optimizer !== undefined && dict.optimizer !== this.optimizerName) {
      throw new TypeError(
        `${where}: the dict was written by ${describe(dict.optimizer)} but this optimizer is ${this.optimizerName}; ` +
          'a state dict loads only into the kind of optimizer that wrote it',
      );
    }
    const groups = this.#checkGroups(sd);
    const indexOf = savedIdsToIndices(sd.param_groups);
    const updates: Array<CheckedState<B>> = [];
    for (const [key, s] of Object.entries(sd.state) as Array<[string, unknown]>) {
      const index = indexOf.get(Number(key));
      if (index === undefined) throw new RangeError(`${where}: state ${key} does not belong to any param group`);
      updates.push(this.#checkState(index, `${where}: state ${key} (param '${this.params[index].name}')`, s, buffer));
      yield;
    }
    const rng = sd.rng === undefined ? undefined : rngFromDict(sd.rng);
    return { groups, updates, loaded: new Set(updates.map((u) => u.index)), rng };
  }

  // Each saved group's hyperparameters, checked, on a copy of the current group.
  #checkGroups(sd: StateDict<S, GD>): G[] {
    if (sd.param_groups.length !== this.paramGroups.length) {
      throw new RangeError(
        `loadStateDict: the dict has ${sd.param_groups.length} param groups but the optimizer has ${this.paramGroups.length}`,
      );
    }
    const known = ['params', 'param_names', 'initial_lr', 'state_dtype', 'state_block_size', ...this.groupDictKeys];
    return sd.param_groups.map((g, i) => {
      const where = `loadStateDict: param_groups[${i}]`;
      checkKeys(checkObject(g, where), where, known);
      // What the dict's state was kept in; this optimizer keeps its own (its state is converted).
      if (g.state_dtype !== undefined) checkStateDtype(g.state_dtype, `${where}: state_dtype`);
      if (g.state_block_size !== undefined) checkStateBlockSize(g.state_block_size, `${where}: state_block_size`);
      const size = this.paramGroups[i].params.length;
      if (!Array.isArray(g.params) || g.params.length !== size) {
        throw new RangeError(
          `${where} has ${Array.isArray(g.params) ? g.params.length : describe(g.params)} params but the optimizer's group has ${size}`,
        );
      }
      return this.validateGroup(this.groupFromDict(g, { ...this.paramGroups[i] }), where);
    });
  }

  #checkState<B>(index: number, where: string, value: unknown, buffer: BufferCheck<B>): CheckedState<B> {
    const p = this.params[index];
    const { required, optional } = this.layout.stateBuffers;
    const s = checkObject(value, where);
    const names = [...required, ...optional];
    checkKeys(s, where, ['step', 'master', 'stateDtype', 'blockSize', ...names, ...names.map((k) => `${k}_absmax`)]);
    p.data.checkAlive(`${where}: data`);
    if (s.master !== undefined && (p.data.dtype === 'float32' || !this.masterWeights))
      throw new TypeError(`${where}: the param keeps no master weights, but the dict has one`);
    const step = checkInteger(this.layout.hasStepCount ? s.step : (s.step ?? 1), `${where}: step`, { min: 0 });
    const encoding = stateEncodingOf(s, where);
    const numel = p.data.numel;
    const kind: BufferKind = encoding.dtype === 'float32' ? 'values' : encoding.dtype;
    const buffers: Record<string, B> = {};
    for (const k of names) {
      const v = s[k];
      const absmax = `${k}_absmax`;
      if (v === undefined && !required.includes(k)) {
        if (s[absmax] !== undefined) throw new TypeError(`${where}: ${absmax} is given without ${k}`);
        continue;
      }
      buffers[k] = buffer(v, `${where}: ${k}`, numel, kind);
      if (encoding.dtype === 'uint8') {
        const blocks = quantBlocks(numel, encoding.blockSize);
        const label = `${where}: ${absmax}`;
        const given = s[absmax];
        const count =
          given instanceof BufferSlot ? given.numel : ArrayBuffer.isView(given) ? (given as Float32Array).length : -1;
        if (count >= 0 && count !== blocks)
          throw new RangeError(
            `${label} has ${count} values but ${numel} elements in blocks of ${encoding.blockSize} need ${blocks}`,
          );
        buffers[absmax] = buffer(given, label, blocks, 'absmax');
      } else if (s[absmax] !== undefined)
        throw new TypeError(`${where}: ${absmax} is only for stateDtype 'uint8', but the state is ${encoding.dtype}`);
    }
    if (s.master !== undefined) buffers.master = buffer(s.master, `${where}: master`, numel, 'values');
    return { index, step, entry: s, encoding, buffers };
  }

  // What follows the state: the rounding stream and the groups' hyperparameters.
  #commitRest(checked: CheckedDict<G, unknown>): void {
    if (checked.rng) this.handle('loadStateDict').setRng(checked.rng.seed, checked.rng.counter);
    checked.groups.forEach((g, i) => {
      const target = this.paramGroups[i];
      for (const key of Object.keys(target)) if (key !== 'params' && !(key in g)) delete target[key];
      Object.assign(target, g, { params: target.params });
      for (const key of Object.keys(target)) if (target[key] === undefined) delete target[key];
    });
  }

  // The native handle, made at the first use; `what` names the call when disposed.
  private handle(what: string): NativeOptimizerHandle {
    this.checkNotDisposed(what);
    if (!this.#handle) {
      this.#handle = optimizerHandle(this.layout.handle, deviceCode(this.device));
      this.#handle.setRng(this.#seed, 0);
      this.#handle.setLazyMode(this.lazyMode);
    }
    return this.#handle;
  }

  // O(groups): the only per-step work in JavaScript.
  private hyperTable(): Float64Array {
    const n = this.paramGroups.length;
    const fields = this.layout.hyperFields.length;
    if (this.#hyper.length !== n * fields) this.#hyper = new Float64Array(n * fields);
    for (let i = 0; i < n; i++)
      this.writeHyper(this.validateGroup(this.paramGroups[i], `paramGroups[${i}]`), this.#hyper, i * fields);
    this.#applyStateDtypes(); // every group is valid: nothing changed before here
    return this.#hyper;
  }
}

/** torch's id mapping: the saved ids, in group order, are the params in group order. */
function savedIdsToIndices(groups: ReadonlyArray<{ params: readonly number[] }>): Map<number, number> {
  const byId = new Map<number, number>();
  let flat = 0;
  for (const g of groups) for (const id of g.params) byId.set(id, flat++);
  return byId;
}

/** A state buffer of `numel` elements as fp32: other float or integer arrays and number[] are converted. */
function float32Buffer(v: unknown, numel: number, what: string): Float32Array {
  const isNumbers = Array.isArray(v)
    ? v.every((x) => typeof x === 'number')
    : ArrayBuffer.isView(v) &&
      !(v instanceof DataView) &&
      !(v instanceof BigInt64Array) &&
      !(v instanceof BigUint64Array);
  if (!isNumbers) throw new TypeError(mustBe(what, 'a Float32Array (or another typed array or array of numbers)', v));
  const values = v as ArrayLike<number>;
  if (values.length !== numel) throw new RangeError(`${what} has ${values.length} elements but the param has ${numel}`);
  return values instanceof Float32Array ? values : Float32Array.from(values);
}

function rngFromDict(rng: unknown): { seed: number; counter: number } {
  const r = checkObject(rng, 'loadStateDict: rng', '{ seed, counter }');
  checkKeys(r, 'loadStateDict: rng', ['seed', 'counter']);
  return {
    seed: checkSeed(r.seed, 'loadStateDict: rng.seed'),
    counter: checkSeed(r.counter, 'loadStateDict: rng.counter'),
  };
}

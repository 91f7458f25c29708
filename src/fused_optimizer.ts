// What the fused optimizers (AdamW, AdamWDL, Lion) share on top of Optimizer: the native
// engine handle, the per-step hyperparameter table, state dicts in torch's layout, and
// fused metrics. Subclasses describe their hyperparameters and state buffers.
import { deviceCode } from './dtype';
import { type MetricsDict, metricsFromSums } from './metrics';
import { type NativeOptimizerHandle, type NativeParamOptions, type NativeParamState } from './native';
import { Optimizer, type ParamGroup } from './optimizer';
import type { Parameter } from './parameter';

export interface StateDict<S, GD> {
  state: Record<number, S>;
  param_groups: Array<GD & { params: number[] }>;
}

export abstract class FusedOptimizer<G extends ParamGroup, S extends object, GD extends object> extends Optimizer<G> {
  #handle: NativeOptimizerHandle | undefined;
  #hyper = new Float64Array(0);
  protected readonly masterWeights: boolean;

  protected constructor(defaults: Omit<G, 'params'>, masterWeights: boolean) {
    super(defaults);
    this.masterWeights = masterWeights;
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
    this.handle().step(this.hyperTable());
  }

  /** Like step(), off the JavaScript thread; resolves when the update is complete. */
  stepAsync(): Promise<void> {
    try {
      return this.handle().stepAsync(this.hyperTable());
    } catch (e) {
      return Promise.reject(e);
    }
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
    const state: Record<number, S> = {};
    this.params.forEach((_, i) => {
      const s = this.handle().getState(i);
      if (!s) return;
      if (!this.hasStepCount) delete (s as Partial<NativeParamState>).step;
      state[i] = s as unknown as S;
    });
    let index = 0;
    const param_groups = this.paramGroups.map((g) => ({ ...this.groupToDict(g), params: g.params.map(() => index++) }));
    return { state, param_groups };
  }

  /** Restores hyperparameters and state; checks the whole dict before changing anything. */
  loadStateDict(sd: StateDict<S, GD>): void {
    if (sd === null || typeof sd !== 'object' || !Array.isArray(sd.param_groups) || typeof sd.state !== 'object' || sd.state === null) {
      throw new TypeError('loadStateDict: expected { state, param_groups }');
    }
    if (sd.param_groups.length !== this.paramGroups.length) {
      throw new RangeError(`loadStateDict: the dict has ${sd.param_groups.length} param groups but the optimizer has ${this.paramGroups.length}`);
    }
    const groups = sd.param_groups.map((saved, i) => {
      const where = `loadStateDict: param_groups[${i}]`;
      if (saved === null || typeof saved !== 'object') throw new TypeError(`${where} must be an object`);
      if (!Array.isArray(saved.params) || saved.params.length !== this.paramGroups[i].params.length) {
        throw new RangeError(`${where} has ${saved.params?.length} params but the optimizer's group has ${this.paramGroups[i].params.length}`);
      }
      return this.checkGroup(this.groupFromDict(saved, { ...this.paramGroups[i] }), where);
    });
    // torch maps saved ids to params by position in group order.
    const byId = new Map<number, number>();
    let flat = 0;
    sd.param_groups.forEach((saved) => saved.params.forEach((id) => byId.set(id, flat++)));
    const updates: Array<[number, NativeParamState]> = [];
    for (const [key, s] of Object.entries(sd.state) as Array<[string, Record<string, unknown>]>) {
      const index = byId.get(Number(key));
      if (index === undefined) throw new RangeError(`loadStateDict: state ${key} does not belong to any param group`);
      const p = this.params[index];
      const where = `loadStateDict: state ${key} (param '${p.name}')`;
      if (s === null || typeof s !== 'object') throw new TypeError(`${where} must be an object`);
      p.data.checkAlive(`${where}: data`);
      const step = this.hasStepCount ? s.step : (s.step ?? 1);
      if (!Number.isSafeInteger(step) || (step as number) < 0) throw new RangeError(`${where}: step must be a non-negative integer`);
      const { required, optional } = this.stateBuffers;
      for (const k of [...required, ...optional, 'master']) {
        const v = s[k];
        if (v === undefined && !required.includes(k)) continue;
        if (!(v instanceof Float32Array)) throw new TypeError(`${where}: ${k} must be a Float32Array`);
        if (v.length !== p.data.numel) throw new RangeError(`${where}: ${k} has ${v.length} elements but the param has ${p.data.numel}`);
      }
      if (s.master !== undefined && (p.data.dtype === 'float32' || !this.masterWeights)) {
        throw new TypeError(`${where}: the param keeps no master weights, but the dict has one`);
      }
      updates.push([index, { ...(s as object), step: step as number } as NativeParamState]);
    }
    // State first: the native side refuses while a stepAsync() runs, before anything changed.
    for (const [index, s] of updates) this.handle().setState(index, s);
    groups.forEach((g, i) => {
      const target = this.paramGroups[i];
      for (const key of Object.keys(target)) if (key !== 'params' && !(key in g)) delete target[key];
      Object.assign(target, g, { params: target.params });
      for (const key of Object.keys(target)) if (target[key] === undefined) delete target[key];
    });
  }

  protected bindParam(p: Parameter, _index: number, groupIndex: number): void {
    this.handle().addParam(p.data.handle, groupIndex, p.name, this.paramOptions(p, groupIndex));
  }

  protected bindGrad(index: number, grad: Parameter['grad']): void {
    this.handle().setGrad(index, grad ? grad.handle : null);
  }

  private handle(): NativeOptimizerHandle {
    this.#handle ??= this.createHandle(deviceCode(this.device));
    return this.#handle;
  }

  // O(groups): the only per-step work in JavaScript.
  private hyperTable(): Float64Array {
    const n = this.paramGroups.length;
    const fields = this.hyperFields;
    if (this.#hyper.length !== n * fields) this.#hyper = new Float64Array(n * fields);
    for (let i = 0; i < n; i++) this.writeHyper(this.checkGroup(this.paramGroups[i], `paramGroups[${i}]`), this.#hyper, i * fields);
    return this.#hyper;
  }
}

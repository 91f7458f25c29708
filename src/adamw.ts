// Fused AdamW with torch.optim.AdamW semantics (decoupled weight decay, amsgrad, maximize).
// One native call per step: the hyperparameters of every group travel as one small
// Float64Array; bias corrections are computed natively per (group, step count).
import { type NativeAdamWHandle, type NativeAdamWState, native } from './native';
import { deviceCode } from './dtype';
import { Optimizer, type ParamGroup, type ParamsInput, checkBetas, checkBoolean, checkFiniteNumber } from './optimizer';
import type { Parameter } from './parameter';

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
  maximize?: boolean;
  /**
   * Keep fp32 master weights for float16/bfloat16 params (default true). Without them the
   * update is computed in fp32 from the half value and rounded back every step, so updates
   * smaller than half an ulp of the param are lost.
   */
  masterWeights?: boolean;
}

export interface AdamWParamGroup extends ParamGroup {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
}

export interface AdamWParamState {
  step: number;
  exp_avg: Float32Array;
  exp_avg_sq: Float32Array;
  max_exp_avg_sq?: Float32Array;
  /** fp32 master weights of a float16/bfloat16 param. */
  master?: Float32Array;
}

export interface AdamWStateDict {
  state: Record<number, AdamWParamState>;
  param_groups: Array<{
    lr: number;
    betas: [number, number];
    eps: number;
    weight_decay: number;
    amsgrad: boolean;
    maximize: boolean;
    initial_lr?: number;
    params: number[];
  }>;
}

const FIELDS = 7; // must match native/addon/adamw_wrap.cpp: lr, beta1, beta2, eps, wd, amsgrad, maximize

export class AdamW extends Optimizer<AdamWParamGroup> {
  #handle: NativeAdamWHandle | undefined;
  #hyper = new Float64Array(0);
  readonly #masterWeights: boolean;

  constructor(params: ParamsInput<AdamWParamGroup>, options: AdamWOptions = {}) {
    const defaults = {
      lr: options.lr ?? 1e-3,
      betas: options.betas ?? ([0.9, 0.999] as [number, number]),
      eps: options.eps ?? 1e-8,
      weightDecay: options.weightDecay ?? 1e-2,
      amsgrad: options.amsgrad ?? false,
      maximize: options.maximize ?? false,
    };
    super(defaults);
    this.#masterWeights = checkBoolean(options.masterWeights ?? true, 'AdamW options: masterWeights');
    this.checkGroup({ params: [], ...defaults }, 'AdamW options');
    this.initGroups(params);
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

  /** Waits for the queued GPU work of this optimizer (a no-op on the CPU). */
  synchronize(): void {
    this.handle().synchronize();
  }

  stateDict(): AdamWStateDict {
    const state: Record<number, AdamWParamState> = {};
    this.params.forEach((_, i) => {
      const s = this.handle().getState(i);
      if (s) state[i] = s;
    });
    let index = 0;
    const param_groups = this.paramGroups.map((g) => ({
      lr: g.lr,
      betas: [g.betas[0], g.betas[1]] as [number, number],
      eps: g.eps,
      weight_decay: g.weightDecay,
      amsgrad: g.amsgrad,
      maximize: g.maximize,
      ...(g.initialLr !== undefined ? { initial_lr: g.initialLr } : {}),
      params: g.params.map(() => index++),
    }));
    return { state, param_groups };
  }

  /** Restores hyperparameters and state; checks the whole dict before changing anything. */
  loadStateDict(sd: AdamWStateDict): void {
    if (sd === null || typeof sd !== 'object' || !Array.isArray(sd.param_groups) || typeof sd.state !== 'object' || sd.state === null) {
      throw new TypeError('loadStateDict: expected { state, param_groups }');
    }
    if (sd.param_groups.length !== this.paramGroups.length) {
      throw new RangeError(`loadStateDict: the dict has ${sd.param_groups.length} param groups but the optimizer has ${this.paramGroups.length}`);
    }
    const groups = sd.param_groups.map((saved, i) => {
      const where = `loadStateDict: param_groups[${i}]`;
      if (!Array.isArray(saved.params) || saved.params.length !== this.paramGroups[i].params.length) {
        throw new RangeError(`${where} has ${saved.params?.length} params but the optimizer's group has ${this.paramGroups[i].params.length}`);
      }
      return this.checkGroup(
        {
          ...this.paramGroups[i],
          lr: saved.lr,
          betas: saved.betas,
          eps: saved.eps,
          weightDecay: saved.weight_decay,
          amsgrad: saved.amsgrad ?? false,
          maximize: saved.maximize ?? false,
          initialLr: saved.initial_lr,
        },
        where,
      );
    });
    // torch maps saved ids to params by position in group order.
    const byIndex = new Map<number, Parameter>();
    sd.param_groups.forEach((saved, g) => saved.params.forEach((id, k) => byIndex.set(id, this.paramGroups[g].params[k])));
    const updates: Array<[number, NativeAdamWState]> = [];
    for (const [key, s] of Object.entries(sd.state)) {
      const p = byIndex.get(Number(key));
      if (!p) throw new RangeError(`loadStateDict: state ${key} does not belong to any param group`);
      const where = `loadStateDict: state ${key} (param '${p.name}')`;
      if (s === null || typeof s !== 'object') throw new TypeError(`${where} must be an object`);
      p.data.checkAlive(`${where}: data`);
      if (!Number.isSafeInteger(s.step) || s.step < 0) throw new RangeError(`${where}: step must be a non-negative integer`);
      for (const k of ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'master'] as const) {
        const v = s[k];
        if (v === undefined && (k === 'max_exp_avg_sq' || k === 'master')) continue;
        if (!(v instanceof Float32Array)) throw new TypeError(`${where}: ${k} must be a Float32Array`);
        if (v.length !== p.data.numel) throw new RangeError(`${where}: ${k} has ${v.length} elements but the param has ${p.data.numel}`);
      }
      if (s.master !== undefined && (p.data.dtype === 'float32' || !this.#masterWeights)) {
        throw new TypeError(`${where}: the param keeps no master weights, but the dict has one`);
      }
      updates.push([this.params.indexOf(p), s]);
    }
    // State first: the native side refuses while a stepAsync() runs, before anything changed.
    for (const [index, s] of updates) this.handle().setState(index, s);
    groups.forEach((g, i) => {
      const target = this.paramGroups[i];
      Object.assign(target, { lr: g.lr, betas: g.betas, eps: g.eps, weightDecay: g.weightDecay, amsgrad: g.amsgrad, maximize: g.maximize });
      if (g.initialLr === undefined) delete target.initialLr;
      else target.initialLr = g.initialLr;
    });
  }

  protected checkGroup(g: AdamWParamGroup, where: string): AdamWParamGroup {
    checkFiniteNumber(g.lr, `${where}: lr`, { min: 0 });
    g.betas = checkBetas(g.betas, `${where}: betas`);
    checkFiniteNumber(g.eps, `${where}: eps`, { min: 0, minExclusive: true });
    checkFiniteNumber(g.weightDecay, `${where}: weightDecay`, { min: 0 });
    checkBoolean(g.amsgrad, `${where}: amsgrad`);
    checkBoolean(g.maximize, `${where}: maximize`);
    if (g.initialLr !== undefined) checkFiniteNumber(g.initialLr, `${where}: initialLr`, { min: 0 });
    return g;
  }

  protected bindParam(p: Parameter, _index: number, groupIndex: number): void {
    this.handle().addParam(p.data.handle, groupIndex, p.name, this.#masterWeights);
  }

  protected bindGrad(index: number, grad: Parameter['grad']): void {
    this.handle().setGrad(index, grad ? grad.handle : null);
  }

  private handle(): NativeAdamWHandle {
    this.#handle ??= new (native().AdamWHandle)(deviceCode(this.device));
    return this.#handle;
  }

  // O(groups): the only per-step work in JavaScript.
  private hyperTable(): Float64Array {
    const n = this.paramGroups.length;
    if (this.#hyper.length !== n * FIELDS) this.#hyper = new Float64Array(n * FIELDS);
    const t = this.#hyper;
    for (let i = 0; i < n; i++) {
      const g = this.checkGroup(this.paramGroups[i], `paramGroups[${i}]`);
      t.set([g.lr, g.betas[0], g.betas[1], g.eps, g.weightDecay, g.amsgrad ? 1 : 0, g.maximize ? 1 : 0], i * FIELDS);
    }
    return t;
  }
}

// Fused AdamW with torch.optim.AdamW semantics (decoupled weight decay, amsgrad, maximize).
// One native call per step: the hyperparameters of every group travel as one small
// Float64Array; bias corrections are computed natively per (group, step count).
import { type FusedOptions, FusedOptimizer, type StateDict } from './fused_optimizer';
import { type NativeOptimizerHandle, native } from './native';
import { type ParamGroup, type ParamsInput, checkBetas, checkBoolean, checkFiniteNumber } from './optimizer';

export interface AdamWOptions extends FusedOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
  maximize?: boolean;
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

export interface AdamWGroupDict {
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  amsgrad: boolean;
  maximize: boolean;
  initial_lr?: number;
}

export type AdamWStateDict = StateDict<AdamWParamState, AdamWGroupDict>;

export class AdamW extends FusedOptimizer<AdamWParamGroup, AdamWParamState, AdamWGroupDict> {
  protected readonly hyperFields = 7; // native/core/algorithms.h AdamWAlgo::kHyperFields
  protected readonly stateBuffers = { required: ['exp_avg', 'exp_avg_sq'], optional: ['max_exp_avg_sq'] } as const;
  protected readonly hasStepCount = true;

  constructor(params: ParamsInput<AdamWParamGroup>, options: AdamWOptions = {}) {
    const defaults = {
      lr: options.lr ?? 1e-3,
      betas: options.betas ?? ([0.9, 0.999] as [number, number]),
      eps: options.eps ?? 1e-8,
      weightDecay: options.weightDecay ?? 1e-2,
      amsgrad: options.amsgrad ?? false,
      maximize: options.maximize ?? false,
    };
    super(defaults, options, new.target.name);
    this.checkGroup({ params: [], ...defaults }, `${this.constructor.name} options`);
    this.initGroups(params);
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

  protected writeHyper(g: AdamWParamGroup, out: Float64Array, o: number): void {
    out[o] = g.lr;
    out[o + 1] = g.betas[0];
    out[o + 2] = g.betas[1];
    out[o + 3] = g.eps;
    out[o + 4] = g.weightDecay;
    out[o + 5] = g.amsgrad ? 1 : 0;
    out[o + 6] = g.maximize ? 1 : 0;
  }

  protected createHandle(device: number): NativeOptimizerHandle {
    return new (native().AdamWHandle)(device);
  }

  protected groupToDict(g: AdamWParamGroup): AdamWGroupDict {
    return {
      lr: g.lr,
      betas: [g.betas[0], g.betas[1]],
      eps: g.eps,
      weight_decay: g.weightDecay,
      amsgrad: g.amsgrad,
      maximize: g.maximize,
      ...(g.initialLr !== undefined ? { initial_lr: g.initialLr } : {}),
    };
  }

  protected groupFromDict(saved: AdamWGroupDict, current: AdamWParamGroup): AdamWParamGroup {
    return {
      ...current,
      lr: saved.lr,
      betas: saved.betas,
      eps: saved.eps,
      weightDecay: saved.weight_decay,
      amsgrad: saved.amsgrad ?? false,
      maximize: saved.maximize ?? false,
      initialLr: saved.initial_lr,
    };
  }
}

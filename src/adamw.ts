// Fused AdamW with torch.optim.AdamW semantics (decoupled weight decay, amsgrad, maximize).
// One native call per step: the hyperparameters of every group travel as one small
// Float64Array; bias corrections are computed natively per (group, step count).
import { FUSED_OPTION_KEYS, type FusedOptions, FusedOptimizer, type StateDict } from './fused_optimizer';
import { declareOptimizerLayout } from './layouts';
import { checkBetas, checkBoolean, checkNumber, checkOptions } from './checks';
import type { ParamGroup, ParamsInput } from './optimizer';
import type { StateBuffers, StateDtypeGroup } from './state_dtype';

export interface AdamWOptions extends FusedOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
  maximize?: boolean;
}

export interface AdamWParamGroup extends ParamGroup, StateDtypeGroup {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
}

/** A param's state in a state dict: its buffers in the state's dtype (StateBuffers). */
export type AdamWParamState = {
  step: number;
  /** fp32 master weights of a float16/bfloat16 param. */
  master?: Float32Array;
} & StateBuffers<'exp_avg' | 'exp_avg_sq', 'max_exp_avg_sq'>;

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

/** The keys of AdamWOptions. */
export const ADAMW_OPTION_KEYS = ['lr', 'betas', 'eps', 'weightDecay', 'amsgrad', 'maximize', ...FUSED_OPTION_KEYS];

// torch.optim.AdamW's group keys that do not change the update (how torch runs it).
const TORCH_RUNTIME_KEYS = ['foreach', 'capturable', 'differentiable', 'fused', 'decoupled_weight_decay'];

// native/core/algorithms.h AdamWAlgo, checked when the addon is loaded.
const ADAMW_LAYOUT = declareOptimizerLayout({
  handle: 'AdamWHandle',
  hyperFields: ['lr', 'beta1', 'beta2', 'eps', 'weight_decay', 'amsgrad', 'maximize'],
  stateBuffers: { required: ['exp_avg', 'exp_avg_sq'], optional: ['max_exp_avg_sq'] },
  hasStepCount: true,
});

export class AdamW extends FusedOptimizer<AdamWParamGroup, AdamWParamState, AdamWGroupDict> {
  protected readonly optimizerName: string = 'AdamW';
  protected readonly layout = ADAMW_LAYOUT;
  protected readonly groupDictKeys = [
    'lr',
    'betas',
    'eps',
    'weight_decay',
    'amsgrad',
    'maximize',
    ...TORCH_RUNTIME_KEYS,
  ];

  constructor(params: ParamsInput<AdamWParamGroup>, options: AdamWOptions = {}) {
    const o = checkOptions(options, `${new.target.name} options`, ADAMW_OPTION_KEYS) as AdamWOptions;
    const defaults = {
      lr: o.lr ?? 1e-3,
      betas: o.betas ?? ([0.9, 0.999] as [number, number]),
      eps: o.eps ?? 1e-8,
      weightDecay: o.weightDecay ?? 1e-2,
      amsgrad: o.amsgrad ?? false,
      maximize: o.maximize ?? false,
    };
    super(defaults, o, new.target.name);
    // The state dtype options are FusedOptimizer's (checked there).
    this.checkGroup(
      { params: [], ...defaults, stateDtype: 'float32', stateBlockSize: 256 },
      `${this.constructor.name} options`,
    );
    this.initGroups(params);
  }

  protected checkGroup(g: AdamWParamGroup, where: string): AdamWParamGroup {
    checkNumber(g.lr, `${where}: lr`, { min: 0 });
    g.betas = checkBetas(g.betas, `${where}: betas`);
    checkNumber(g.eps, `${where}: eps`, { min: 0, minExclusive: true });
    checkNumber(g.weightDecay, `${where}: weightDecay`, { min: 0 });
    checkBoolean(g.amsgrad, `${where}: amsgrad`);
    checkBoolean(g.maximize, `${where}: maximize`);
    if (g.initialLr !== undefined) checkNumber(g.initialLr, `${where}: initialLr`, { min: 0 });
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
    // torch >= 2.7 writes this key for Adam too, where false means L2 decay coupled to the
    // grad: not this optimizer's update.
    if ((saved as { decoupled_weight_decay?: unknown }).decoupled_weight_decay === false)
      throw new TypeError(
        'loadStateDict: the dict has decoupled_weight_decay: false (torch.optim.Adam with L2 decay), but AdamW decouples its weight decay',
      );
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

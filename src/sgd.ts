// Fused SGD with torch.optim.SGD semantics: momentum (torch's form, the first step's buffer
// = the grad), dampening, Nesterov, weight decay as torch's coupled L2 (added to the grad),
// maximize. State: `momentum_buffer`, only when momentum != 0; no step count (torch keeps none).
import { FUSED_OPTION_KEYS, type FusedOptions, FusedOptimizer, type StateDict } from './fused_optimizer';
import { declareOptimizerLayout } from './layouts';
import { checkBoolean, checkNumber, checkOptions } from './checks';
import type { ParamGroup, ParamsInput } from './optimizer';
import type { StateBuffers, StateDtypeGroup } from './state_dtype';

export interface SGDOptions extends FusedOptions {
  lr?: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
  maximize?: boolean;
}

export interface SGDParamGroup extends ParamGroup, StateDtypeGroup {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  maximize: boolean;
}

/** A param's state in a state dict: its buffer in the state's dtype (StateBuffers). */
export type SGDParamState = {
  /** fp32 master weights of a float16/bfloat16 param. */
  master?: Float32Array;
} & StateBuffers<never, 'momentum_buffer'>;

export interface SGDGroupDict {
  lr: number;
  momentum: number;
  dampening: number;
  weight_decay: number;
  nesterov: boolean;
  maximize: boolean;
  initial_lr?: number;
}

export type SGDStateDict = StateDict<SGDParamState, SGDGroupDict>;

/** The keys of SGDOptions. */
export const SGD_OPTION_KEYS = [
  'lr',
  'momentum',
  'dampening',
  'weightDecay',
  'nesterov',
  'maximize',
  ...FUSED_OPTION_KEYS,
];

// torch.optim.SGD's group keys that do not change the update (how torch runs it).
const TORCH_RUNTIME_KEYS = ['foreach', 'differentiable', 'fused'];

// native/core/algorithms.h SgdAlgo, checked when the addon is loaded.
const SGD_LAYOUT = declareOptimizerLayout({
  handle: 'SgdHandle',
  hyperFields: ['lr', 'momentum', 'dampening', 'weight_decay', 'nesterov', 'maximize'],
  stateBuffers: { required: [], optional: ['momentum_buffer'] },
  hasStepCount: false,
});

export class SGD extends FusedOptimizer<SGDParamGroup, SGDParamState, SGDGroupDict> {
  protected readonly optimizerName: string = 'SGD';
  protected readonly layout = SGD_LAYOUT;
  protected readonly groupDictKeys = [
    'lr',
    'momentum',
    'dampening',
    'weight_decay',
    'nesterov',
    'maximize',
    ...TORCH_RUNTIME_KEYS,
  ];

  constructor(params: ParamsInput<SGDParamGroup>, options: SGDOptions = {}) {
    const o = checkOptions(options, `${new.target.name} options`, SGD_OPTION_KEYS) as SGDOptions;
    const defaults = {
      lr: o.lr ?? 1e-3, // torch >= 2.2's default (torch 1.13 requires lr)
      momentum: o.momentum ?? 0,
      dampening: o.dampening ?? 0,
      weightDecay: o.weightDecay ?? 0,
      nesterov: o.nesterov ?? false,
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

  protected checkGroup(g: SGDParamGroup, where: string): SGDParamGroup {
    checkNumber(g.lr, `${where}: lr`, { min: 0 });
    checkNumber(g.momentum, `${where}: momentum`, { min: 0 });
    checkNumber(g.dampening, `${where}: dampening`);
    checkNumber(g.weightDecay, `${where}: weightDecay`, { min: 0 });
    checkBoolean(g.nesterov, `${where}: nesterov`);
    checkBoolean(g.maximize, `${where}: maximize`);
    // torch.optim.SGD: "Nesterov momentum requires a momentum and zero dampening".
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0))
      throw new RangeError(
        `${where}: nesterov requires momentum > 0 and dampening 0, got momentum ${g.momentum} and dampening ${g.dampening}`,
      );
    if (g.initialLr !== undefined) checkNumber(g.initialLr, `${where}: initialLr`, { min: 0 });
    return g;
  }

  protected writeHyper(g: SGDParamGroup, out: Float64Array, o: number): void {
    out[o] = g.lr;
    out[o + 1] = g.momentum;
    out[o + 2] = g.dampening;
    out[o + 3] = g.weightDecay;
    out[o + 4] = g.nesterov ? 1 : 0;
    out[o + 5] = g.maximize ? 1 : 0;
  }

  protected groupToDict(g: SGDParamGroup): SGDGroupDict {
    return {
      lr: g.lr,
      momentum: g.momentum,
      dampening: g.dampening,
      weight_decay: g.weightDecay,
      nesterov: g.nesterov,
      maximize: g.maximize,
      ...(g.initialLr !== undefined ? { initial_lr: g.initialLr } : {}),
    };
  }

  protected groupFromDict(saved: SGDGroupDict, current: SGDParamGroup): SGDParamGroup {
    return {
      ...current,
      lr: saved.lr,
      momentum: saved.momentum,
      dampening: saved.dampening,
      weightDecay: saved.weight_decay,
      nesterov: saved.nesterov ?? false,
      maximize: saved.maximize ?? false,
      initialLr: saved.initial_lr,
    };
  }
}

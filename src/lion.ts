// Fused Lion, as MosaicML llm-foundry's DecoupledLionW: sign of an interpolated momentum,
// decoupled weight decay scaled by lr / initial_lr, state `exp_avg` only.
import { FUSED_OPTION_KEYS, type FusedOptions, FusedOptimizer, type StateDict } from './fused_optimizer';
import { declareOptimizerLayout } from './layouts';
import { checkBetas, checkNumber, checkOptions } from './checks';
import type { ParamGroup, ParamsInput } from './optimizer';
import type { Parameter } from './parameter';
import type { StateBuffers, StateDtypeGroup } from './state_dtype';

export interface LionOptions extends FusedOptions {
  lr?: number;
  betas?: [number, number];
  weightDecay?: number;
}

export interface LionParamGroup extends ParamGroup, StateDtypeGroup {
  lr: number;
  betas: [number, number];
  weightDecay: number;
}

/** A param's state in a state dict: its buffer in the state's dtype (StateBuffers). */
export type LionParamState = { master?: Float32Array } & StateBuffers<'exp_avg'>;

export interface LionGroupDict {
  lr: number;
  betas: [number, number];
  weight_decay: number;
  initial_lr?: number;
}

export type LionStateDict = StateDict<LionParamState, LionGroupDict>;

/** The keys of LionOptions. */
export const LION_OPTION_KEYS = ['lr', 'betas', 'weightDecay', ...FUSED_OPTION_KEYS];

// native/core/algorithms.h LionAlgo, checked when the addon is loaded.
const LION_LAYOUT = declareOptimizerLayout({
  handle: 'LionHandle',
  hyperFields: ['lr', 'beta1', 'beta2', 'weight_decay', 'initial_lr'],
  stateBuffers: { required: ['exp_avg'], optional: [] },
  hasStepCount: false,
});

export class Lion extends FusedOptimizer<LionParamGroup, LionParamState, LionGroupDict> {
  protected readonly optimizerName: string = 'Lion';
  protected readonly layout = LION_LAYOUT;
  protected readonly groupDictKeys = ['lr', 'betas', 'weight_decay'];

  constructor(params: ParamsInput<LionParamGroup>, options: LionOptions = {}) {
    const o = checkOptions(options, `${new.target.name} options`, LION_OPTION_KEYS) as LionOptions;
    const defaults = {
      lr: o.lr ?? 1e-4,
      betas: o.betas ?? ([0.9, 0.99] as [number, number]),
      weightDecay: o.weightDecay ?? 0,
    };
    super(defaults, o, new.target.name);
    // The state dtype options are FusedOptimizer's (checked there).
    this.checkGroup(
      { params: [], ...defaults, stateDtype: 'float32', stateBlockSize: 256 },
      `${this.constructor.name} options`,
    );
    this.initGroups(params);
    this.paramGroups.forEach((g) => this.warnIfLargeDecay(g));
  }

  override addParamGroup(group: Partial<LionParamGroup> & { params: Iterable<Parameter> }): void {
    super.addParamGroup(group);
    this.warnIfLargeDecay(this.paramGroups[this.paramGroups.length - 1]);
  }

  // As DecoupledLionW's constructor: decoupled decay this large is usually a mistake.
  #warned = false;
  private warnIfLargeDecay(g: LionParamGroup): void {
    if (g.weightDecay < 1e-3 || this.#warned) return;
    this.#warned = true;
    process.emitWarning(
      `Lion: weightDecay ${g.weightDecay} is large for DecoupledLionW: the weights will be multiplied by ` +
        `${1 - g.weightDecay} on every step (scaled by lr / initial_lr).`,
      { code: 'FUSED_OPTIM_LION_WEIGHT_DECAY' },
    );
  }

  protected checkGroup(g: LionParamGroup, where: string): LionParamGroup {
    checkNumber(g.lr, `${where}: lr`, { min: 0, minExclusive: true });
    g.betas = checkBetas(g.betas, `${where}: betas`, true);
    checkNumber(g.weightDecay, `${where}: weightDecay`, { min: 0 });
    // DecoupledLionW records initial_lr per group at construction and in add_param_group.
    g.initialLr ??= g.lr;
    checkNumber(g.initialLr, `${where}: initialLr`, { min: 0 });
    return g;
  }

  protected writeHyper(g: LionParamGroup, out: Float64Array, o: number): void {
    out[o] = g.lr;
    out[o + 1] = g.betas[0];
    out[o + 2] = g.betas[1];
    out[o + 3] = g.weightDecay;
    out[o + 4] = g.initialLr ?? 0;
  }

  protected groupToDict(g: LionParamGroup): LionGroupDict {
    return {
      lr: g.lr,
      betas: [g.betas[0], g.betas[1]],
      weight_decay: g.weightDecay,
      ...(g.initialLr !== undefined ? { initial_lr: g.initialLr } : {}),
    };
  }

  protected groupFromDict(saved: LionGroupDict, current: LionParamGroup): LionParamGroup {
    return {
      ...current,
      lr: saved.lr,
      betas: saved.betas,
      weightDecay: saved.weight_decay,
      initialLr: saved.initial_lr,
    };
  }
}

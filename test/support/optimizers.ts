// The registry of optimizers the shared suites run over (test/optimizers.shared.test.ts):
// one row per optimizer. A new optimizer gets the shared validation, state-dict, checkpoint
// and CUDA-vs-CPU checks by adding a row here; its torch replay (`fixture`) stays its own file.
import { AdamW, Lion, type Parameter, SGD } from '../../src/index';
import type { FusedOptimizer } from '../../src/fused_optimizer';
import type { ParamGroup } from '../../src/optimizer';
import type { ErrorClass } from './expect_throws';

export type AnyFused = FusedOptimizer<ParamGroup, object, object>;

export interface OptimizerRow {
  name: string;
  /** An optimizer over params (two groups when two params lists are given), with state after a step. */
  make(groups: Parameter[][], options?: Record<string, unknown>): AnyFused;
  /** [option key, bad value, error class, message pattern] */
  badHyperparameters: Array<[string, unknown, ErrorClass, RegExp]>;
  /** Option sets that are wrong together (one message each). */
  badCombinations?: Array<[Record<string, unknown>, ErrorClass, RegExp]>;
  /** The torch fixture file its replay test reads (test/fixtures). */
  fixture: string;
  /** The buffers a param's state holds after a step with `make`'s options (master aside). */
  stateBuffers: string[];
  hasStepCount: boolean;
}

const groupsWith = (groups: Parameter[][], hyper: Array<Record<string, unknown>>) =>
  groups.map((params, i) => ({ params, ...hyper[i % hyper.length] }));

export const OPTIMIZERS: OptimizerRow[] = [
  {
    name: 'AdamW',
    make: (groups, options) =>
      new AdamW(groupsWith(groups, [{ lr: 0.01 }, { lr: 0.02, weightDecay: 0.1 }]), options) as unknown as AnyFused,
    badHyperparameters: [
      ['lr', -1, RangeError, /lr must be >= 0/],
      ['eps', 0, RangeError, /eps must be > 0/],
      ['betas', [1, 0.9], RangeError, /betas\[0\]/],
      ['amsgrad', 1, TypeError, /amsgrad must be a boolean/],
    ],
    fixture: 'adamw_torch.json',
    stateBuffers: ['exp_avg', 'exp_avg_sq'],
    hasStepCount: true,
  },
  {
    name: 'Lion',
    make: (groups, options) =>
      new Lion(groupsWith(groups, [{ lr: 1e-3 }, { lr: 2e-3, weightDecay: 1e-4 }]), options) as unknown as AnyFused,
    badHyperparameters: [
      ['lr', 0, RangeError, /lr must be > 0/],
      ['betas', [0.9, 1.5], RangeError, /betas\[1\]/],
      ['weightDecay', NaN, RangeError, /weightDecay must be a finite number/],
    ],
    fixture: 'lion_torch.json',
    stateBuffers: ['exp_avg'],
    hasStepCount: false,
  },
  {
    name: 'SGD',
    make: (groups, options) =>
      new SGD(
        groupsWith(groups, [
          { lr: 0.05, momentum: 0.9, weightDecay: 0.01, nesterov: true },
          { lr: 0.02, momentum: 0.5, dampening: 0.2, maximize: true },
        ]),
        options,
      ) as unknown as AnyFused,
    badHyperparameters: [
      ['lr', -0.1, RangeError, /lr must be >= 0, got -0\.1/],
      ['lr', NaN, RangeError, /lr must be a finite number, got NaN/],
      ['momentum', -0.5, RangeError, /momentum must be >= 0/],
      ['momentum', '0.9', TypeError, /momentum must be a number/],
      ['dampening', Infinity, RangeError, /dampening must be a finite number/],
      ['weightDecay', -1e-4, RangeError, /weightDecay must be >= 0/],
      ['nesterov', 'yes', TypeError, /nesterov must be a boolean/],
      ['maximize', 1, TypeError, /maximize must be a boolean/],
    ],
    badCombinations: [
      [{ nesterov: true, momentum: 0 }, RangeError, /nesterov requires momentum > 0 and dampening 0, got momentum 0/],
      [{ nesterov: true, momentum: 0.9, dampening: 0.1 }, RangeError, /nesterov requires .* dampening 0\.1/],
    ],
    fixture: 'sgd_torch.json',
    stateBuffers: ['momentum_buffer'],
    hasStepCount: false,
  },
];

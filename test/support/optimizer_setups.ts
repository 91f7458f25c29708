// Reproducible Lion / AdamW / AdamWDL setups shared by the metrics and CUDA suites: the
// same seed gives the same params, groups and grad sequence on any device.
import { AdamW, AdamWDL, type DType, type DeviceName, Lion, Parameter, Tensor } from '../../src/index';
import type { FusedOptimizer } from '../../src/fused_optimizer';
import type { ParamGroup } from '../../src/optimizer';
import { bitsOf } from './compare';
import { type RulePrecision, adamwNext, lionNext, referenceMetrics } from './metrics_reference';
import type { MetricsDict } from '../../src/metrics';
import { randn, rng } from './random';

export type Kind = 'Lion' | 'AdamW' | 'AdamWDL';
export const KINDS: readonly Kind[] = ['Lion', 'AdamW', 'AdamWDL'];
export type AnyOptimizer = FusedOptimizer<ParamGroup, object, object>;

export interface ParamSpec {
  name: string;
  n: number;
  shape?: number[];
  dtype: DType;
  gradDtype: DType;
  group: number;
  /** Gets grads during the warm-up steps (false: never stepped, so it has no state). */
  stepped: boolean;
  /** Its grad when the metrics are taken: random, all zeros, or none. */
  atMetrics: 'random' | 'zero' | null;
}

/** Odd sizes, one over a CUDA/CPU chunk (65536), every dtype pair, and the absent cases. */
export const SPECS: ParamSpec[] = [
  {
    name: 'embeddings.word_embeddings.weight',
    n: 1001,
    shape: [7, 143],
    dtype: 'float32',
    gradDtype: 'float32',
    group: 0,
    stepped: true,
    atMetrics: 'random',
  },
  {
    name: 'encoder.layers.0.attention.weight',
    n: 70001,
    dtype: 'bfloat16',
    gradDtype: 'float32',
    group: 0,
    stepped: true,
    atMetrics: 'random',
  },
  {
    name: 'encoder.layers.3.output.bias',
    n: 7,
    dtype: 'float16',
    gradDtype: 'float16',
    group: 1,
    stepped: true,
    atMetrics: 'random',
  },
  {
    name: 'pooler.dense.weight',
    n: 1,
    dtype: 'float32',
    gradDtype: 'float32',
    group: 1,
    stepped: true,
    atMetrics: 'random',
  },
  {
    name: 'encoder.layers.2.zero_grad.weight',
    n: 37,
    dtype: 'float16',
    gradDtype: 'float32',
    group: 0,
    stepped: true,
    atMetrics: 'zero',
  },
  {
    name: 'encoder.layers.1.no_grad_now.weight',
    n: 33,
    dtype: 'bfloat16',
    gradDtype: 'bfloat16',
    group: 1,
    stepped: true,
    atMetrics: null,
  },
  {
    name: 'head.no_state.weight',
    n: 13,
    dtype: 'float32',
    gradDtype: 'float32',
    group: 1,
    stepped: false,
    atMetrics: 'random',
  },
];

/** The names metrics() must report (grad and state both present). */
export const PRESENT = SPECS.filter((s) => s.stepped && s.atMetrics !== null).map((s) => s.name);

// AdamWDL's rule for the setups: nLayers 4, decay 0.8, no decay for biases.
export const DL_OPTIONS = {
  layerwiseDecay: 0.8,
  nLayers: 4,
  applyDecayParamFun: (name: string) => !name.endsWith('.bias'),
};
export function dlRatio(name: string): number {
  const m = /encoder\.layers\.(\d+)/.exec(name);
  if (m) return 0.8 ** (4 - Number(m[1]));
  return name.includes('embedding') ? 0.8 ** 5 : 1;
}

/** The group hyperparameters each setup is built with (lr is also the group's initial_lr). */
export const GROUPS: Record<Kind, Array<Record<string, unknown>>> = {
  Lion: [
    { lr: 0.01, weightDecay: 5e-4 },
    { lr: 0.02, betas: [0.95, 0.98], weightDecay: 0 },
  ],
  AdamW: [
    { lr: 0.03, weightDecay: 0.1, amsgrad: true },
    { lr: 0.02, weightDecay: 0.01, maximize: true },
  ],
  AdamWDL: [
    { lr: 0.03, weightDecay: 0.1, amsgrad: true },
    { lr: 0.02, weightDecay: 0.01 },
  ],
};

export interface Setup {
  kind: Kind;
  specs: ParamSpec[];
  params: Parameter[];
  opt: AnyOptimizer;
  /** Gives every param its grad for warm-up step `s` (grads differ per step, same per seed). */
  stepGrads(s: number): void;
  /** Gives every param its grad for the metrics (the `atMetrics` column). */
  metricGrads(): void;
}

export function makeSetup(
  kind: Kind,
  { device = 'cpu', seed = 1, specs = SPECS }: { device?: DeviceName; seed?: number; specs?: ParamSpec[] } = {},
): Setup {
  const init = rng(seed);
  const params = specs.map(
    (s) =>
      new Parameter(Tensor.from(randn(s.n, init, 0.02), { dtype: s.dtype, shape: s.shape ?? [s.n], device }), {
        name: s.name,
      }),
  );
  const groups = GROUPS[kind].map((g, gi) => ({ ...g, params: params.filter((_, i) => specs[i].group === gi) }));
  const opt = (kind === 'Lion'
    ? new Lion(groups)
    : kind === 'AdamW'
      ? new AdamW(groups, { betas: [0.9, 0.99] })
      : new AdamWDL(groups, { betas: [0.9, 0.99], ...DL_OPTIONS })) as unknown as AnyOptimizer;
  const grad = (s: ParamSpec, values: Float32Array) =>
    Tensor.from(values, { dtype: s.gradDtype, shape: s.shape ?? [s.n], device });
  return {
    kind,
    specs,
    params,
    opt,
    stepGrads(step: number) {
      const next = rng(seed * 1000 + step);
      specs.forEach((s, i) => {
        const values = randn(s.n, next, 0.1);
        params[i].grad = s.stepped ? grad(s, values) : null;
      });
    },
    metricGrads() {
      const next = rng(seed * 1000 + 999);
      specs.forEach((s, i) => {
        const values = randn(s.n, next, 0.1);
        params[i].grad = s.atMetrics === null ? null : grad(s, s.atMetrics === 'zero' ? new Float32Array(s.n) : values);
      });
    },
  };
}

/** Three warm-up steps; before the third, group 0's lr is halved (Lion: lr / initial_lr = 0.5). */
export function warmUp(setup: Setup, steps = 3): void {
  for (let s = 0; s < steps; s++) {
    if (s === steps - 1) setup.opt.paramGroups[0].lr = (setup.opt.paramGroups[0].lr as number) / 2;
    setup.stepGrads(s);
    setup.opt.step();
  }
}

/** Raw bits of a tensor's values: fp32 as 32-bit patterns, half types as 16-bit ones. */
export function tensorBits(t: Tensor): number[] {
  return t.dtype === 'float32' ? Array.from(bitsOf(t.toFloat32Array())) : Array.from(t.toBits());
}

/** A state dict with every Float32Array replaced by its bit patterns (so -0/NaN compare exactly). */
export function stateBits(opt: AnyOptimizer): unknown {
  const sd = opt.stateDict();
  const state: Record<string, Record<string, unknown>> = {};
  for (const [k, s] of Object.entries(sd.state)) {
    state[k] = Object.fromEntries(
      Object.entries(s).map(([n, v]) => [n, v instanceof Float32Array ? Array.from(bitsOf(v)) : v]),
    );
  }
  return { state, param_groups: sd.param_groups };
}

export interface SavedState {
  step?: number;
  exp_avg: Float32Array;
  exp_avg_sq?: Float32Array;
  max_exp_avg_sq?: Float32Array;
  master?: Float32Array;
}

/** The metrics the documented rule gives from the optimizer's current state and grads. */
export function expectedMetrics(setup: Setup, precision: RulePrecision): MetricsDict {
  const { opt, kind } = setup;
  const sd = opt.stateDict() as { state: Record<number, SavedState> };
  const flat = opt.paramGroups.flatMap((g) => g.params);
  const out: MetricsDict = {};
  setup.params.forEach((p) => {
    const i = flat.indexOf(p);
    const s = sd.state[i];
    if (!s || !p.grad) return;
    const gi = opt.paramGroups.findIndex((g) => g.params.includes(p));
    const g = opt.paramGroups[gi] as unknown as Record<string, unknown> & {
      lr: number;
      betas: [number, number];
      weightDecay: number;
    };
    const param = s.master ?? p.data.toFloat32Array();
    const grad = p.grad.toFloat32Array();
    const next =
      kind === 'Lion'
        ? lionNext(
            param,
            grad,
            s.exp_avg,
            { lr: g.lr, betas: g.betas, weightDecay: g.weightDecay, initialLr: GROUPS.Lion[gi].lr as number },
            precision,
          )
        : adamwNext(
            param,
            grad,
            { m: s.exp_avg, v: s.exp_avg_sq!, vmax: s.max_exp_avg_sq },
            s.step! + 1,
            {
              lr: g.lr,
              betas: g.betas,
              eps: g.eps as number,
              weightDecay: g.weightDecay,
              amsgrad: g.amsgrad as boolean,
              maximize: g.maximize as boolean,
            },
            kind === 'AdamWDL' ? { ratio: dlRatio(p.name), applyDecay: DL_OPTIONS.applyDecayParamFun(p.name) } : {},
            precision,
          );
    Object.assign(out, referenceMetrics(p.name, { param, grad, moment: s.exp_avg, next }, precision));
  });
  return out;
}

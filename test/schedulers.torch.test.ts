// Every scheduler's lr sequence against torch 1.13's own schedulers (and the Hugging Face
// formulas run through torch's LambdaLR): test/fixtures/schedulers_torch.json, written by
// test/fixtures/gen_scheduler_fixtures.py. Also torch's state_dict at step 100, key for key.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  AdamW,
  CosineAnnealingLR,
  LambdaLR,
  type LRScheduler,
  LinearLR,
  Parameter,
  SequentialLR,
  Tensor,
  TransformerLR,
  constantWithWarmup,
  cosineWithWarmup,
  inverseSqrtWithWarmup,
  linearWarmup,
} from '../src/index';
import { transformerLrFactor } from '../src/schedulers/transformer_lr';

interface FixtureCase {
  name: string;
  kind: string;
  options: Record<string, number & number[]>;
  base_lrs: number[];
  steps: number;
  lrs: number[][];
  state_dict_at: number;
  state_dict: Record<string, unknown>;
}

const fixture = JSON.parse(readFileSync(join(__dirname, 'fixtures', 'schedulers_torch.json'), 'utf8')) as {
  torch_version: string;
  cases: FixtureCase[];
};

const RTOL = 1e-12;

function makeOptimizer(baseLrs: number[]): AdamW {
  return new AdamW(
    baseLrs.map((lr, i) => ({ params: [new Parameter(Tensor.from([0, 0]), { name: `w${i}` })], lr })),
    { weightDecay: 0 },
  );
}

const ramp = (s: number) => Math.min(1.0, (s + 1) / 25);

function build(c: FixtureCase, opt: AdamW): LRScheduler {
  const o = c.options;
  switch (c.kind) {
    case 'transformer':
      return new TransformerLR(opt, { dModel: o.d_model, warmupSteps: o.warmup_steps, factor: o.factor });
    case 'lambda_per_group':
      return new LambdaLR(opt, [
        (s) => transformerLrFactor(s, { dModel: o.d_model, warmupSteps: o.warmup_steps, factor: 1 }),
        ramp,
      ]);
    case 'linear':
      return new LinearLR(opt, { startFactor: o.start_factor, endFactor: o.end_factor, totalIters: o.total_iters });
    case 'cosine':
      return new CosineAnnealingLR(opt, { tMax: o.T_max, etaMin: o.eta_min });
    case 'sequential_linear_cosine':
      return new SequentialLR(opt, {
        schedulers: [
          new LinearLR(opt, { startFactor: o.start_factor, totalIters: o.total_iters }),
          new CosineAnnealingLR(opt, { tMax: o.T_max, etaMin: o.eta_min }),
        ],
        milestones: o.milestones,
      });
    case 'sequential_lambda_cosine_linear':
      return new SequentialLR(opt, {
        schedulers: [
          new LambdaLR(opt, ramp),
          new CosineAnnealingLR(opt, { tMax: o.T_max }),
          new LinearLR(opt, { startFactor: o.start_factor, endFactor: o.end_factor, totalIters: o.total_iters }),
        ],
        milestones: o.milestones,
      });
    case 'hf_linear':
      return linearWarmup(opt, { warmupSteps: o.warmup_steps, totalSteps: o.total_steps });
    case 'hf_cosine':
      return cosineWithWarmup(opt, { warmupSteps: o.warmup_steps, totalSteps: o.total_steps, numCycles: o.num_cycles });
    case 'hf_constant':
      return constantWithWarmup(opt, { warmupSteps: o.warmup_steps });
    case 'hf_inverse_sqrt':
      return inverseSqrtWithWarmup(opt, { warmupSteps: o.warmup_steps, timescale: o.timescale });
    default:
      throw new Error(`fixture case kind ${c.kind} has no builder`);
  }
}

function expectRelClose(actual: number, expected: number, what: string): void {
  const ok = actual === expected || Math.abs(actual - expected) <= RTOL * Math.abs(expected);
  if (!ok)
    throw new Error(
      `${what}: got ${actual}, torch ${expected} (relative error ${Math.abs(actual - expected) / Math.abs(expected)})`,
    );
}

// Our state dict must hold every key torch's holds, with the same values (lrs to RTOL).
function expectSameState(ours: unknown, torch: unknown, what: string): void {
  if (typeof torch === 'number') {
    expect(typeof ours, what).toBe('number');
    expectRelClose(ours as number, torch, what);
  } else if (Array.isArray(torch)) {
    expect(Array.isArray(ours), what).toBe(true);
    expect((ours as unknown[]).length, `${what}.length`).toBe(torch.length);
    torch.forEach((v, i) => expectSameState((ours as unknown[])[i], v, `${what}[${i}]`));
  } else if (torch !== null && typeof torch === 'object') {
    const o = ours as Record<string, unknown>;
    for (const [k, v] of Object.entries(torch)) {
      expect(k in o, `${what} lacks torch's key ${k}`).toBe(true);
      expectSameState(o[k], v, `${what}.${k}`);
    }
  } else {
    expect(ours, what).toBe(torch);
  }
}

// TransformerLR adds its shape; torch's seed schedule is a plain LambdaLR without it.
const EXTRA_KEYS: Record<string, string[]> = { transformer: ['d_model', 'warmup_steps', 'factor'] };

describe(`schedulers match torch ${fixture.torch_version}`, () => {
  it('the fixture covers every scheduler', () => {
    const kinds = new Set(fixture.cases.map((c) => c.kind));
    for (const k of [
      'transformer',
      'lambda_per_group',
      'linear',
      'cosine',
      'sequential_linear_cosine',
      'sequential_lambda_cosine_linear',
      'hf_linear',
      'hf_cosine',
      'hf_constant',
      'hf_inverse_sqrt',
    ]) {
      expect(kinds.has(k), k).toBe(true);
    }
  });

  for (const c of fixture.cases) {
    it(c.name, () => {
      const opt = makeOptimizer(c.base_lrs);
      const sched = build(c, opt);
      const check = (step: number) => {
        const want = c.lrs[step];
        const groups = opt.paramGroups.map((g) => g.lr);
        const last = sched.getLastLr();
        want.forEach((w, g) => {
          expectRelClose(groups[g], w, `step ${step} group ${g} lr`);
          expect(last[g], `step ${step} group ${g} getLastLr`).toBe(groups[g]);
        });
      };
      check(0);
      expect(opt.paramGroups.map((g) => g.initialLr)).toEqual(c.base_lrs);
      for (let step = 1; step <= c.steps; step++) {
        opt.step(); // no grads: a no-op step, in torch's order
        sched.step();
        check(step);
        if (step === c.state_dict_at) {
          const ours = sched.stateDict();
          expectSameState(ours, c.state_dict, 'state_dict');
          const allowed = new Set([...Object.keys(c.state_dict), ...(EXTRA_KEYS[c.kind] ?? [])]);
          expect(Object.keys(ours).filter((k) => !allowed.has(k))).toEqual([]);
        }
      }
      expect(sched.lastEpoch).toBe(c.steps);
    });
  }
});

// `fused-optim plot-lr SCHEDULE [options]`: an SVG of a built-in learning-rate schedule.
// The curve comes from the real scheduler classes driving a one-param optimizer on the
// CPU, stepped as in training (optimizer.step(), then scheduler.step()), so it is exactly
// the lr that training would see.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  AdamW,
  CosineAnnealingLR,
  LinearLR,
  type LRScheduler,
  Parameter,
  Tensor,
  TransformerLR,
  constantWithWarmup,
  cosineWithWarmup,
  inverseSqrtWithWarmup,
  linearWarmup,
} from '../index';
import { type OptionSpecs, type ParsedOptions, UsageError, describeOptions, parseOptions } from './args';
import { checkWritable } from './output_path';
import { formatLr } from './progress';
import { renderSvg } from './svg_plot';

interface Schedule {
  /** What the schedule is, for the help text. */
  about: string;
  /** Which schedule-specific options it takes. */
  options: readonly string[];
  defaultLr: number;
  defaultSteps(o: ParsedOptions): number;
  create(opt: AdamW, o: ParsedOptions): LRScheduler;
  describe(o: ParsedOptions): string;
}

const totalSteps = (o: ParsedOptions) =>
  (o['total-steps'] as number | undefined) ?? (o.steps as number | undefined) ?? 10_000;
/** --warmup-steps, else `fallback` (transformer: 4000, as the paper), else 10% of the steps. */
const warmup = (o: ParsedOptions, fallback?: number) =>
  (o['warmup-steps'] as number | undefined) ?? fallback ?? Math.round(0.1 * totalSteps(o));

export const SCHEDULES: Record<string, Schedule> = {
  transformer: {
    about: 'TransformerLR: "Attention is all you need" warmup, lr = base * factor * d^-0.5 * min(s^-0.5, s * w^-1.5)',
    options: ['d-model', 'warmup-steps', 'factor'],
    defaultLr: 1,
    defaultSteps: (o) => 5 * warmup(o, 4000),
    create: (opt, o) =>
      new TransformerLR(opt, {
        dModel: (o['d-model'] as number | undefined) ?? 512,
        warmupSteps: warmup(o, 4000),
        factor: (o.factor as number | undefined) ?? 1,
      }),
    describe: (o) =>
      `TransformerLR(dModel ${(o['d-model'] as number | undefined) ?? 512}, warmupSteps ${warmup(o, 4000)}, factor ${(o.factor as number | undefined) ?? 1})`,
  },
  'linear-warmup': {
    about:
      'linearWarmup (Hugging Face get_linear_schedule_with_warmup): 0 -> lr over the warmup, then linearly to 0 at --total-steps',
    options: ['warmup-steps', 'total-steps'],
    defaultLr: 1e-3,
    defaultSteps: (o) => totalSteps(o),
    create: (opt, o) => linearWarmup(opt, { warmupSteps: warmup(o), totalSteps: totalSteps(o) }),
    describe: (o) => `linearWarmup(warmupSteps ${warmup(o)}, totalSteps ${totalSteps(o)})`,
  },
  'cosine-warmup': {
    about:
      'cosineWithWarmup (get_cosine_schedule_with_warmup): 0 -> lr over the warmup, then a cosine to 0 at --total-steps',
    options: ['warmup-steps', 'total-steps', 'num-cycles'],
    defaultLr: 1e-3,
    defaultSteps: (o) => totalSteps(o),
    create: (opt, o) =>
      cosineWithWarmup(opt, {
        warmupSteps: warmup(o),
        totalSteps: totalSteps(o),
        numCycles: (o['num-cycles'] as number | undefined) ?? 0.5,
      }),
    describe: (o) =>
      `cosineWithWarmup(warmupSteps ${warmup(o)}, totalSteps ${totalSteps(o)}, numCycles ${(o['num-cycles'] as number | undefined) ?? 0.5})`,
  },
  'constant-warmup': {
    about: 'constantWithWarmup (get_constant_schedule_with_warmup): 0 -> lr over the warmup, then constant',
    options: ['warmup-steps'],
    defaultLr: 1e-3,
    defaultSteps: (o) => 5 * Math.max(1, warmup(o)),
    create: (opt, o) => constantWithWarmup(opt, { warmupSteps: warmup(o) }),
    describe: (o) => `constantWithWarmup(warmupSteps ${warmup(o)})`,
  },
  'inverse-sqrt-warmup': {
    about:
      'inverseSqrtWithWarmup (get_inverse_sqrt_schedule): 0 -> lr over the warmup, then lr / sqrt((s + shift) / timescale)',
    options: ['warmup-steps', 'timescale'],
    defaultLr: 1e-3,
    defaultSteps: (o) => 10 * Math.max(1, warmup(o)),
    create: (opt, o) =>
      inverseSqrtWithWarmup(opt, { warmupSteps: warmup(o), timescale: o.timescale as number | undefined }),
    describe: (o) =>
      `inverseSqrtWithWarmup(warmupSteps ${warmup(o)}${o.timescale !== undefined ? `, timescale ${o.timescale}` : ''})`,
  },
  linear: {
    about: 'LinearLR (torch): the factor goes linearly from --start-factor to --end-factor over --total-iters steps',
    options: ['start-factor', 'end-factor', 'total-iters'],
    defaultLr: 1e-3,
    defaultSteps: (o) => Math.max(10, 2 * ((o['total-iters'] as number | undefined) ?? 5)),
    create: (opt, o) =>
      new LinearLR(opt, {
        startFactor: (o['start-factor'] as number | undefined) ?? 1 / 3,
        endFactor: (o['end-factor'] as number | undefined) ?? 1,
        totalIters: (o['total-iters'] as number | undefined) ?? 5,
      }),
    describe: (o) =>
      `LinearLR(startFactor ${Number(((o['start-factor'] as number | undefined) ?? 1 / 3).toFixed(4))}, endFactor ${(o['end-factor'] as number | undefined) ?? 1}, totalIters ${(o['total-iters'] as number | undefined) ?? 5})`,
  },
  'cosine-annealing': {
    about: 'CosineAnnealingLR (torch): a cosine from lr down to --eta-min over --t-max steps, then back up',
    options: ['t-max', 'eta-min'],
    defaultLr: 1e-3,
    defaultSteps: (o) => 2 * ((o['t-max'] as number | undefined) ?? 1000),
    create: (opt, o) =>
      new CosineAnnealingLR(opt, {
        tMax: (o['t-max'] as number | undefined) ?? 1000,
        etaMin: (o['eta-min'] as number | undefined) ?? 0,
      }),
    describe: (o) =>
      `CosineAnnealingLR(tMax ${(o['t-max'] as number | undefined) ?? 1000}, etaMin ${(o['eta-min'] as number | undefined) ?? 0})`,
  },
};

export const PLOT_LR_OPTIONS: OptionSpecs = {
  steps: {
    type: 'int',
    min: 2, // a curve needs two points
    max: 10_000_000,
    help: 'steps to plot, at least 2 (default: a span that shows the whole shape)',
  },
  lr: {
    type: 'number',
    min: 0,
    minExclusive: true,
    metavar: 'X',
    help: "the optimizer's base lr (default 1 for transformer, else 0.001)",
  },
  'warmup-steps': { type: 'int', min: 0, help: 'warmup length (default 4000 for transformer, else 10% of the steps)' },
  'd-model': { type: 'int', min: 1, help: 'transformer: the model width d_model (default 512)' },
  factor: {
    type: 'number',
    min: 0,
    minExclusive: true,
    metavar: 'X',
    help: 'transformer: a constant multiplier (default 1)',
  },
  'total-steps': {
    type: 'int',
    min: 1,
    help: 'linear-warmup, cosine-warmup: the step where the lr reaches 0 (default --steps or 10000)',
  },
  'num-cycles': {
    type: 'number',
    min: 0,
    minExclusive: true,
    metavar: 'X',
    help: 'cosine-warmup: cosine waves after the warmup (default 0.5)',
  },
  timescale: {
    type: 'int',
    min: 1,
    help: 'inverse-sqrt-warmup: the decay time scale (default: warmup steps, or 10000)',
  },
  'start-factor': {
    type: 'number',
    min: 0,
    minExclusive: true,
    max: 1,
    metavar: 'X',
    help: 'linear: the factor at step 0 (default 1/3)',
  },
  'end-factor': { type: 'number', min: 0, max: 1, metavar: 'X', help: 'linear: the final factor (default 1)' },
  'total-iters': { type: 'int', min: 1, help: 'linear: steps from start to end factor (default 5)' },
  't-max': { type: 'int', min: 1, help: 'cosine-annealing: steps of one half cosine (default 1000)' },
  'eta-min': { type: 'number', min: 0, metavar: 'X', help: 'cosine-annealing: the lowest lr (default 0)' },
  log: { type: 'flag', help: 'log-scale lr axis' },
  out: {
    type: 'string',
    alias: 'o',
    metavar: 'FILE',
    help: "the SVG to write, '-' for stdout (default lr-SCHEDULE.svg)",
  },
  help: { type: 'flag', alias: 'h', help: 'show this help' },
};

export const PLOT_LR_USAGE = `usage: fused-optim plot-lr SCHEDULE [options]

Plots a built-in learning-rate schedule as an SVG: the lr after each scheduler step, as
training with these options would see it (the lr at step s is what optimizer step s + 1
uses). Example:
  fused-optim plot-lr transformer --d-model 512 --warmup-steps 4000 --steps 20000 -o lr.svg

schedules:
${Object.entries(SCHEDULES)
  .map(
    ([name, s]) =>
      `  ${name.padEnd(20)}${s.about}\n  ${''.padEnd(20)}options: ${s.options.map((k) => `--${k}`).join(', ')}`,
  )
  .join('\n')}

options:
${describeOptions(PLOT_LR_OPTIONS)}`;

/** The lr at scheduler steps 0 .. steps-1 of `schedule`, computed by the real classes. */
export function scheduleCurve(schedule: Schedule, o: ParsedOptions, steps: number): Float64Array {
  const lr = (o.lr as number | undefined) ?? schedule.defaultLr;
  const param = new Parameter(Tensor.zeros([1], { device: 'cpu' }), { name: 'lr-probe' });
  const opt = new AdamW([param], { lr, weightDecay: 0 });
  let scheduler: LRScheduler;
  try {
    scheduler = schedule.create(opt, o);
  } catch (e) {
    // The library's own checks (e.g. totalSteps < warmupSteps) are mistakes in the options.
    if (e instanceof RangeError || e instanceof TypeError) throw new UsageError(e.message);
    throw e;
  }
  const out = new Float64Array(steps);
  out[0] = opt.paramGroups[0].lr;
  for (let s = 1; s < steps; s++) {
    opt.step(); // no grad: updates nothing, but keeps torch's optimizer-then-scheduler order
    scheduler.step();
    out[s] = opt.paramGroups[0].lr;
  }
  param.data.dispose();
  return out;
}

export function runPlotLr(argv: readonly string[]): number {
  const { options: o, positional } = parseOptions(argv, PLOT_LR_OPTIONS);
  if (o.help) {
    process.stdout.write(`${PLOT_LR_USAGE}\n`);
    return 0;
  }
  if (positional.length === 0) throw new UsageError(`which schedule? one of ${Object.keys(SCHEDULES).join(', ')}`);
  if (positional.length > 1) throw new UsageError(`unexpected argument ${JSON.stringify(positional[1])}`);
  const name = positional[0];
  const schedule = SCHEDULES[name];
  if (!schedule)
    throw new UsageError(`unknown schedule ${JSON.stringify(name)}; one of ${Object.keys(SCHEDULES).join(', ')}`);
  const common = new Set(['steps', 'lr', 'log', 'out', 'help']);
  for (const key of Object.keys(o)) {
    if (o[key] !== undefined && !common.has(key) && !schedule.options.includes(key)) {
      throw new UsageError(
        `--${key} does not apply to ${name} (its options: ${schedule.options.map((k) => `--${k}`).join(', ')})`,
      );
    }
  }
  const out = (o.out as string | undefined) ?? `lr-${name}.svg`;
  if (out !== '-') checkWritable(out, '--out');
  const steps = (o.steps as number | undefined) ?? schedule.defaultSteps(o);
  const lrs = scheduleCurve(schedule, o, steps);

  let peak = 0;
  let low = 0;
  for (let s = 1; s < steps; s++) {
    if (lrs[s] > lrs[peak]) peak = s;
    if (lrs[s] < lrs[low]) low = s;
  }
  const baseLr = (o.lr as number | undefined) ?? schedule.defaultLr;
  const summary =
    `lr ${formatLr(lrs[0])} at step 0, peak ${formatLr(lrs[peak])} at step ${peak}, ` +
    `minimum ${formatLr(lrs[low])} at step ${low}, ${formatLr(lrs[steps - 1])} at step ${steps - 1}`;
  const svg = renderSvg({
    title: `${name}: ${schedule.describe(o)}`,
    subtitle: `base lr ${baseLr}; ${summary}`,
    xLabel: 'step',
    left: { label: 'learning rate', log: Boolean(o.log) },
    series: [{ label: 'lr', x: Float64Array.from({ length: steps }, (_, i) => i), y: lrs, color: '#d62728', width: 2 }],
    markers: peak > 0 && peak < steps - 1 ? [{ x: peak, label: `peak ${formatLr(lrs[peak])} at step ${peak}` }] : [],
  });
  if (out === '-') {
    process.stdout.write(svg);
  } else {
    writeFileSync(resolve(out), svg);
    process.stdout.write(
      `${schedule.describe(o)}, base lr ${baseLr}, ${steps} steps: ${summary}\nwrote ${resolve(out)}\n`,
    );
  }
  return 0;
}

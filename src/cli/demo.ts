// `fused-optim demo` (and `npm run demo`): trains a small model end to end from Node.
//
// A 16 -> 64 -> 1 tanh MLP learns y = sin(x.u) + 0.5 (x.v)^2 - 0.5 from 4096 samples. The
// forward and backward passes are plain TypeScript over Float32Arrays; only the optimizer
// step runs in fused-optim (on the GPU when one is usable): you bring params and grads, the
// package does everything after backward().
//
// The run has two phases. Phase 1 trains half the steps and saves a checkpoint. Phase 2
// builds everything afresh (new random params, a new optimizer and scheduler), loads the
// checkpoint and trains the rest. The uninterrupted run also takes a few more steps before
// it is dropped, and the resumed run must reproduce them exactly: the loss curve continues
// as if training had never stopped. At the end an SVG of loss and lr over the steps is
// written.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AdamW, AdamWDL, Lion, Parameter, SGD, Tensor, TransformerLR, backendInfo, noDecayParamGroups } from '../index';
import type { BackendInfo } from '../backend';
import type { DType, DeviceName } from '../dtype';
import { type OptionSpecs, type ParsedOptions, UsageError, describeOptions, parseOptions } from './args';
import { type CheckpointStore, checkpointStore } from './checkpoint_store';
import { checkWritable } from './output_path';
import { ProgressBar, formatLr } from './progress';
import { renderSvg } from './svg_plot';

type DemoOptimizer = AdamW | Lion | SGD;

type OptimizerGroups = ReturnType<typeof noDecayParamGroups>;

/** What the demo knows of each optimizer it can run, in one place. */
interface DemoOptimizerSpec {
  title: string;
  /** The peak lr when --lr is not given. */
  defaultLr: number;
  /** AdamW-style decay on the weights; Lion's is decoupled from lr (p *= 1 - (lr / initial_lr) * wd), so small. */
  weightDecay: number;
  /** The optimizer's settings for the log line. */
  settings: string;
  make(groups: OptimizerGroups, lr: number): DemoOptimizer;
}

const OPTIMIZERS: Record<string, DemoOptimizerSpec> = {
  adamw: {
    title: 'AdamW',
    defaultLr: 1e-2,
    weightDecay: 1e-2,
    settings: 'betas [0.9, 0.999]',
    make: (groups, lr) => new AdamW(groups, { lr, betas: [0.9, 0.999], eps: 1e-8 }),
  },
  adamwdl: {
    title: 'AdamWDL',
    defaultLr: 1e-2,
    weightDecay: 1e-2,
    settings: 'betas [0.9, 0.999], layerwiseDecay 0.8, nLayers 2',
    make: (groups, lr) => new AdamWDL(groups, { lr, betas: [0.9, 0.999], eps: 1e-8, layerwiseDecay: 0.8, nLayers: 2 }),
  },
  lion: {
    title: 'Lion',
    defaultLr: 3e-3,
    weightDecay: 1e-4,
    settings: 'betas [0.9, 0.99]',
    make: (groups, lr) => new Lion(groups, { lr, betas: [0.9, 0.99] }),
  },
  sgd: {
    title: 'SGD',
    defaultLr: 5e-2,
    weightDecay: 1e-4, // torch's coupled L2, added to the grad
    settings: 'momentum 0.9, nesterov',
    make: (groups, lr) => new SGD(groups, { lr, momentum: 0.9, nesterov: true }),
  },
};

export const DEMO_OPTIONS: OptionSpecs = {
  optimizer: {
    type: 'choice',
    choices: Object.keys(OPTIMIZERS),
    default: 'adamw',
    help: 'AdamW, AdamWDL (layer-wise lr decay), Lion or SGD (momentum, Nesterov)',
  },
  dtype: {
    type: 'choice',
    choices: ['float32', 'float16', 'bfloat16'],
    default: 'float32',
    help: 'param dtype; grads stay float32, half params get fp32 master weights',
  },
  device: {
    type: 'choice',
    choices: ['cpu', 'cuda'],
    help: 'where params and optimizer state live (default: the GPU when usable, else the CPU)',
  },
  steps: {
    type: 'int',
    min: 10,
    max: 1_000_000,
    default: 600,
    help: 'optimizer steps in all, half of them after the checkpoint',
  },
  seed: {
    type: 'int',
    min: 0,
    max: 2 ** 32 - 1,
    default: 1234,
    help: 'seed of the data, the initial weights and the batch order',
  },
  lr: {
    type: 'number',
    min: 0,
    minExclusive: true,
    max: 1,
    metavar: 'X',
    help: 'peak learning rate (default 0.01, Lion 0.003, SGD 0.05)',
  },
  out: {
    type: 'string',
    alias: 'o',
    default: 'fused-optim-demo.svg',
    metavar: 'FILE',
    help: 'where to write the loss/lr plot (SVG)',
  },
  checkpoint: {
    type: 'string',
    metavar: 'FILE',
    help: 'keep the halfway checkpoint here (default: a temporary file, removed at the end)',
  },
  'no-progress': { type: 'flag', help: 'no progress bar on stderr' },
  help: { type: 'flag', alias: 'h', help: 'show this help' },
};

export const DEMO_USAGE = `usage: fused-optim demo [options]      (or: npm run demo -- [options])

Trains a 16 -> 64 -> 1 tanh MLP on a synthetic regression task: gradients computed in
TypeScript, the optimizer step in fused-optim. AdamW-style weight decay on the weights
only (noDecayParamGroups), the Transformer warmup schedule (TransformerLR), a checkpoint
halfway, and a resumed second phase that must continue the loss curve exactly. Writes a
plot of loss and lr over the steps.

options:
${describeOptions(DEMO_OPTIONS)}`;

// ---------------------------------------------------------------------------------------
// Data and model
// ---------------------------------------------------------------------------------------

const IN = 16;
const HIDDEN = 64;
const N_TRAIN = 4096;
const N_TEST = 1024;
const BATCH = 256;
const BATCHES_PER_EPOCH = Math.floor(N_TRAIN / BATCH);
/** The uninterrupted run's steps after the checkpoint that the resumed run must reproduce. */
const CHECK_STEPS = 5;

function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normalFrom(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()); // Box-Muller
}

interface Dataset {
  x: Float32Array;
  y: Float32Array;
  n: number;
}

/** y = sin(x.u) + 0.5 (x.v)^2 - 0.5, x ~ N(0, I): variance about 1, out of reach of a linear model. */
function makeData(seed: number): { train: Dataset; test: Dataset } {
  const normal = normalFrom(mulberry32(seed));
  const unit = () => {
    const v = Array.from({ length: IN }, normal);
    const norm = Math.hypot(...v);
    return v.map((a) => a / norm);
  };
  const u = unit();
  const v = unit();
  const make = (n: number): Dataset => {
    const x = new Float32Array(n * IN);
    const y = new Float32Array(n);
    for (let s = 0; s < n; s++) {
      let xu = 0;
      let xv = 0;
      for (let k = 0; k < IN; k++) {
        const xk = normal();
        x[s * IN + k] = xk;
        xu += xk * u[k];
        xv += xk * v[k];
      }
      y[s] = Math.sin(xu) + 0.5 * xv * xv - 0.5;
    }
    return { x, y, n };
  };
  return { train: make(N_TRAIN), test: make(N_TEST) };
}

/**
 * The samples of step `step` (1-based): epoch e = floor((step - 1) / batchesPerEpoch) is a
 * permutation seeded by (seed, e). A function of the step alone, so a resumed run sees the
 * same batches as an uninterrupted one without saving any sampler state.
 */
class BatchOrder {
  #epoch = -1;
  #order: number[] = [];
  constructor(readonly seed: number) {}

  batch(step: number): number[] {
    const epoch = Math.floor((step - 1) / BATCHES_PER_EPOCH);
    if (epoch !== this.#epoch) {
      const rand = mulberry32((this.seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
      this.#order = Array.from({ length: N_TRAIN }, (_, i) => i);
      for (let i = N_TRAIN - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [this.#order[i], this.#order[j]] = [this.#order[j], this.#order[i]];
      }
      this.#epoch = epoch;
    }
    const at = ((step - 1) % BATCHES_PER_EPOCH) * BATCH;
    return this.#order.slice(at, at + BATCH);
  }
}

/** The MLP's four params (torch.nn.Linear's init) and float32 grads, on `device`. */
class Mlp {
  readonly params: Parameter[];
  readonly grads = [
    new Float32Array(HIDDEN * IN),
    new Float32Array(HIDDEN),
    new Float32Array(HIDDEN),
    new Float32Array(1),
  ];
  readonly #h = new Float32Array(HIDDEN);

  constructor(dtype: DType, device: DeviceName, seed: number) {
    const rand = mulberry32(seed);
    // Layer-named params (encoder.layers.N) for AdamWDL's layer-wise lr rule.
    const spec: Array<[string, number[], number]> = [
      ['encoder.layers.0.fc.weight', [HIDDEN, IN], IN],
      ['encoder.layers.0.fc.bias', [HIDDEN], IN],
      ['encoder.layers.1.fc.weight', [1, HIDDEN], HIDDEN],
      ['encoder.layers.1.fc.bias', [1], HIDDEN],
    ];
    this.params = spec.map(([name, shape, fanIn]) => {
      const bound = 1 / Math.sqrt(fanIn);
      const values = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (2 * rand() - 1) * bound);
      const p = new Parameter(Tensor.from(values, { shape, dtype, device }), { name });
      p.grad = Tensor.zeros(shape, { dtype: 'float32', device }); // allocated once, refilled every step
      return p;
    });
  }

  get numel(): number {
    return this.params.reduce((n, p) => n + p.data.numel, 0);
  }

  /** The values the model computes with: for half params, the rounded half values. */
  weights(): Float32Array[] {
    return this.params.map((p) => p.data.toFloat32Array());
  }

  /** Mean squared error over `rows`; with `withGrad`, fills this.grads and hands them to the params. */
  loss(data: Dataset, rows: ArrayLike<number>, withGrad: boolean): number {
    const [W1, B1, W2, B2] = this.weights();
    const [gW1, gB1, gW2, gB2] = this.grads;
    const h = this.#h;
    if (withGrad) for (const g of this.grads) g.fill(0);
    let loss = 0;
    for (let r = 0; r < rows.length; r++) {
      const s = rows[r];
      const xo = s * IN;
      let out = B2[0];
      for (let j = 0; j < HIDDEN; j++) {
        let z = B1[j];
        for (let k = 0; k < IN; k++) z += W1[j * IN + k] * data.x[xo + k];
        h[j] = Math.tanh(z);
        out += W2[j] * h[j];
      }
      const err = out - data.y[s];
      loss += err * err;
      if (!withGrad) continue;
      const dOut = (2 * err) / rows.length;
      gB2[0] += dOut;
      for (let j = 0; j < HIDDEN; j++) {
        gW2[j] += dOut * h[j];
        const dz = dOut * W2[j] * (1 - h[j] * h[j]);
        gB1[j] += dz;
        for (let k = 0; k < IN; k++) gW1[j * IN + k] += dz * data.x[xo + k];
      }
    }
    if (withGrad) this.params.forEach((p, i) => p.grad!.copyFrom(this.grads[i]));
    return loss / rows.length;
  }

  dispose(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.data.dispose();
    }
  }
}

// ---------------------------------------------------------------------------------------
// Optimizer and schedule
// ---------------------------------------------------------------------------------------

interface Setup {
  optimizer: DemoOptimizer;
  scheduler: TransformerLR;
}

interface Hyper {
  spec: DemoOptimizerSpec;
  lr: number;
  warmupSteps: number;
  factor: number;
}

function hyperparameters(o: ParsedOptions): Hyper {
  const spec = OPTIMIZERS[o.optimizer as string];
  const lr = (o.lr as number | undefined) ?? spec.defaultLr;
  const warmupSteps = Math.max(1, Math.round((o.steps as number) * 0.1));
  // TransformerLR's factor at step s is factor * dModel^-0.5 * min(s^-0.5, s * warmup^-1.5),
  // which peaks at s = warmup at factor / sqrt(dModel * warmup). This factor makes the peak
  // 1, so the lr peaks at exactly the base lr and then decays as 1/sqrt(step).
  const factor = Math.sqrt(HIDDEN * warmupSteps);
  return { spec, lr, warmupSteps, factor };
}

function makeSetup(model: Mlp, h: Hyper): Setup {
  // Weight decay on the weights, none on the biases (names containing "bias").
  const groups = noDecayParamGroups(model.params, { weightDecay: h.spec.weightDecay });
  const optimizer = h.spec.make(groups, h.lr);
  const scheduler = new TransformerLR(optimizer, { dModel: HIDDEN, warmupSteps: h.warmupSteps, factor: h.factor });
  return { optimizer, scheduler };
}

function describeOptimizer(s: Setup, h: Hyper): string {
  const groups = s.optimizer.paramGroups.map(
    (g) => `weight decay ${g.weightDecay} on ${g.params.map((p) => p.name.replace('encoder.layers.', 'L')).join(', ')}`,
  );
  let text = `${h.spec.title}, ${h.spec.settings}, peak lr ${h.lr}; groups: ${groups.join('; ')}`;
  if (s.optimizer instanceof AdamWDL) {
    const ratios = [...s.optimizer.ratios].map(
      ([name, r]) => `${name.replace('encoder.layers.', 'L')} x${Number(r.ratio.toFixed(4))}`,
    );
    text += `\n           lr ratios (layer-wise decay): ${ratios.join(', ')}`;
  }
  return text;
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

interface Recorder {
  steps: number[];
  loss: number[];
  lr: number[];
}

/** One training step: loss and grads of the step's batch in TS, then the fused update and the schedule. */
function trainStep(model: Mlp, s: Setup, data: Dataset, order: BatchOrder, step: number): { loss: number; lr: number } {
  const loss = model.loss(data, order.batch(step), true);
  const lr = s.optimizer.paramGroups[0].lr; // the lr this step uses
  s.optimizer.step(); // one fused native call for every param of both groups
  s.scheduler.step();
  return { loss, lr };
}

function fmtInfo(info: BackendInfo): string {
  if (info.backend === 'cuda') return `cuda (${info.device}, compute capability ${info.computeCapability})`;
  const why = info.cudaCompiled ? `CUDA compiled in but not used: ${info.cudaError}` : 'built without CUDA';
  return `cpu (${info.threads} threads; ${why})`;
}

export async function runDemo(argv: readonly string[]): Promise<number> {
  const { options: o, positional } = parseOptions(argv, DEMO_OPTIONS);
  if (o.help) {
    process.stdout.write(`${DEMO_USAGE}\n`);
    return 0;
  }
  if (positional.length) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`);
  const steps = o.steps as number;
  const seed = o.seed as number;
  const dtype = o.dtype as DType;
  const outPath = resolve(o.out as string);
  // Before any training: where the results go must be writable.
  checkWritable(o.out as string, '--out');
  if (o.checkpoint) checkWritable(o.checkpoint as string, '--checkpoint');
  const h = hyperparameters(o);
  const log = (line: string) => process.stdout.write(`${line}\n`);

  const info = backendInfo();
  const device = (o.device as DeviceName | undefined) ?? info.backend;
  if (device === 'cuda' && info.computeCapability === undefined) {
    throw new Error(`--device cuda: CUDA is not usable here (${info.cudaError ?? 'unknown reason'})`);
  }
  const { train, test } = makeData(seed);
  const order = new BatchOrder(seed);
  const half = Math.floor(steps / 2);
  const check = Math.min(CHECK_STEPS, steps - half);
  const rec: Recorder = { steps: [], loss: [], lr: [] };
  const progress = (label: string, total: number) => (o['no-progress'] ? undefined : new ProgressBar({ total, label }));

  log('fused-optim demo');
  log(`backend:   ${fmtInfo(info)}; params on ${device}`);
  const model = new Mlp(dtype, device, seed + 1);
  log(
    `model:     ${IN} -> ${HIDDEN} -> 1 tanh MLP, ${model.numel} params (${dtype}, grads float32), ${N_TRAIN} samples, batch ${BATCH}`,
  );
  const first = makeSetup(model, h);
  log(`optimizer: ${describeOptimizer(first, h)}`);
  const lastLr = h.lr * Math.sqrt(h.warmupSteps / Math.max(steps - 1, h.warmupSteps));
  log(
    `schedule:  TransformerLR(dModel ${HIDDEN}, warmupSteps ${h.warmupSteps}, factor ${Number(h.factor.toFixed(3))}): ` +
      `lr ${formatLr(first.optimizer.paramGroups[0].lr)} at step 1, peak ${formatLr(h.lr)} at step ${h.warmupSteps + 1}, ${formatLr(lastLr)} at step ${steps}`,
  );

  const started = performance.now();
  const allRows = Array.from({ length: N_TRAIN }, (_, i) => i);
  const initialLoss = model.loss(train, allRows, false);
  log(`phase 1:   steps 1-${half} (train loss before training ${initialLoss.toFixed(6)})`);
  let bar = progress('phase 1', steps);
  for (let step = 1; step <= half; step++) {
    const r = trainStep(model, first, train, order, step);
    rec.steps.push(step);
    rec.loss.push(r.loss);
    rec.lr.push(r.lr);
    bar?.update({ step, loss: r.loss, lr: r.lr }, step === half);
  }

  // --- Checkpoint ---------------------------------------------------------------------
  const store: CheckpointStore = checkpointStore(process.env.FUSED_OPTIM_DEMO_MEMORY_CHECKPOINT === '1');
  const tempDir = o.checkpoint ? undefined : mkdtempSync(join(tmpdir(), 'fused-optim-demo-'));
  const ckptPath = o.checkpoint ? resolve(o.checkpoint as string) : join(tempDir!, 'demo.ckpt');
  try {
    const savedLoss = model.loss(train, allRows, false);
    const savedLr = first.optimizer.paramGroups.map((g) => g.lr);
    await store.save(ckptPath, { params: model.params, optimizer: first.optimizer, scheduler: first.scheduler });
    const where =
      store.kind === 'file' ? ` to ${ckptPath}${tempDir ? ' (temporary: --checkpoint FILE keeps it)' : ''}` : '';
    log(`checkpoint: step ${half} saved with ${store.description}${where}`);

    // The uninterrupted run goes on a few steps: the reference the resumed run must match.
    const reference: Array<{ loss: number; lr: number }> = [];
    for (let step = half + 1; step <= half + check; step++) reference.push(trainStep(model, first, train, order, step));
    model.dispose();

    // --- Phase 2: everything new, then the checkpoint -------------------------------------
    const resumed = new Mlp(dtype, device, seed + 2);
    const freshLoss = resumed.loss(train, allRows, false);
    const second = makeSetup(resumed, h);
    await store.load(ckptPath, { params: resumed.params, optimizer: second.optimizer, scheduler: second.scheduler });
    const loadedLoss = resumed.loss(train, allRows, false);
    const loadedLr = second.optimizer.paramGroups.map((g) => g.lr);
    const same = (a: number, b: number) => Object.is(a, b);
    log(
      `phase 2:   fresh params (train loss ${freshLoss.toFixed(6)}), optimizer and scheduler; after loading the checkpoint: ` +
        `train loss ${loadedLoss.toFixed(6)} (${same(loadedLoss, savedLoss) ? 'identical to' : 'DIFFERENT from'} step ${half}), ` +
        `lr ${formatLr(loadedLr[0])} (${loadedLr.every((v, i) => same(v, savedLr[i])) ? 'identical' : 'DIFFERENT'})`,
    );

    log(`phase 2:   steps ${half + 1}-${steps}`);
    bar = progress('phase 2', steps);
    const mismatches: string[] = [];
    for (let step = half + 1; step <= steps; step++) {
      const r = trainStep(resumed, second, train, order, step);
      rec.steps.push(step);
      rec.loss.push(r.loss);
      rec.lr.push(r.lr);
      const ref = reference[step - half - 1];
      if (ref && (!same(ref.loss, r.loss) || !same(ref.lr, r.lr))) {
        mismatches.push(`step ${step}: loss ${r.loss} vs ${ref.loss}, lr ${r.lr} vs ${ref.lr}`);
      }
      bar?.update({ step, loss: r.loss, lr: r.lr }, step === steps);
    }
    const seconds = (performance.now() - started) / 1000;
    const resumeOk =
      mismatches.length === 0 && same(loadedLoss, savedLoss) && loadedLr.every((v, i) => same(v, savedLr[i]));
    if (resumeOk) {
      log(
        `resume:    seamless: steps ${half + 1}-${half + check} of the resumed run have the same losses and lrs, bit for bit, as the uninterrupted run`,
      );
    } else {
      log(
        `resume:    NOT seamless: the resumed run differs from the uninterrupted one:\n           ${mismatches.slice(0, 5).join('\n           ') || 'after loading'}`,
      );
    }

    // --- Result and plot -------------------------------------------------------------------
    const finalLoss = resumed.loss(train, allRows, false);
    const heldOut = resumed.loss(
      test,
      Array.from({ length: N_TEST }, (_, i) => i),
      false,
    );
    const ratio = initialLoss / finalLoss;
    log(
      `result:    train loss ${initialLoss.toFixed(6)} -> ${finalLoss.toFixed(6)} (${ratio >= 1.05 ? `${ratio.toFixed(ratio >= 10 ? 0 : 1)}x lower` : 'did not fall'}), ` +
        `held-out ${heldOut.toFixed(6)} (${N_TEST} unseen samples), ${steps} steps in ${seconds.toFixed(1)} s`,
    );
    const smooth = ema(rec.loss, 0.9);
    const svg = renderSvg({
      title: `fused-optim demo: ${h.spec.title} + TransformerLR on ${device} (${dtype})`,
      subtitle: `${IN}-${HIDDEN}-1 tanh MLP, batch ${BATCH}, ${steps} steps, warmup ${h.warmupSteps}; checkpoint at step ${half}, resumed in fresh objects`,
      xLabel: 'step',
      left: { label: 'training loss (MSE)', log: true },
      right: { label: 'learning rate' },
      series: [
        { label: 'minibatch loss', x: rec.steps, y: rec.loss, color: '#9ecae1', width: 1 },
        { label: 'loss (EMA 0.9)', x: rec.steps, y: smooth, color: '#1f5fa8', width: 2 },
        { label: 'lr', x: rec.steps, y: rec.lr, axis: 'right', color: '#d62728', width: 2 },
      ],
      markers: [{ x: half + 0.5, label: `checkpoint (step ${half}) / resume` }],
    });
    writeFileSync(outPath, svg);
    log(`plot:      ${outPath}`);
    resumed.dispose();
    return resumeOk ? 0 : 1;
  } finally {
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  }
}

/** Exponential moving average with bias correction (as TensorBoard's smoothing). */
function ema(values: readonly number[], beta: number): number[] {
  let m = 0;
  return values.map((v, i) => {
    m = beta * m + (1 - beta) * v;
    return m / (1 - beta ** (i + 1));
  });
}

// A TensorFlow.js classifier trained with fused-optim: AdamW with no weight decay on the
// biases, the Transformer warmup schedule stepped per batch, a checkpoint half-way,
// and a second model resumed from it that must end exactly where the uninterrupted run ends.
//
//   npm install && npm start          (node train.mjs [--epochs N] [--backend cpu|wasm])
//
// The task: three interleaved spiral arms in the plane (600 points), an MLP 2-64-64-3 (4.5K
// params). Runs in seconds; exits non-zero unless the loss falls to a third and the resume
// is exact.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { AdamW, TransformerLR, noDecayParamGroups } from 'fused-optim';
import { TfjsOptimizer, loadCheckpoint, saveCheckpoint } from 'fused-optim/tfjs';

const { values: args } = parseArgs({
  options: { epochs: { type: 'string', default: '20' }, backend: { type: 'string', default: 'cpu' } },
});
const epochs = Number(args.epochs);
if (!Number.isInteger(epochs) || epochs < 2 || epochs % 2) throw new Error('--epochs must be an even integer >= 2');
if (args.backend === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
tf.enableProdMode(); // no per-op checks (and no "install tfjs-node" banner)
await tf.setBackend(args.backend);

// --- data: three spirals, a fixed pseudo-random order -------------------------------------
function spirals(perClass) {
  let seed = 7;
  const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const xs = [];
  const ys = [];
  for (let i = 0; i < perClass * 3; i++) {
    const c = i % 3;
    const r = (Math.floor(i / 3) / perClass) * 4;
    const angle = r + (c * 2 * Math.PI) / 3 + rand() * 0.3;
    xs.push(r * Math.cos(angle), r * Math.sin(angle));
    ys.push(c);
  }
  return { x: tf.tensor2d(xs, [perClass * 3, 2]), y: tf.oneHot(tf.tensor1d(ys, 'int32'), 3) };
}
const { x, y } = spirals(200);

// --- the model: explicit layer names, so a second copy has the same checkpoint names ------
function buildModel() {
  const init = (seed) => tf.initializers.glorotUniform({ seed });
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ name: 'hidden1', units: 64, activation: 'relu', inputShape: [2], kernelInitializer: init(1) }),
      tf.layers.dense({ name: 'hidden2', units: 64, activation: 'relu', kernelInitializer: init(2) }),
      tf.layers.dense({ name: 'classes', units: 3, activation: 'softmax', kernelInitializer: init(3) }),
    ],
  });
  // What a tfjs user changes: the optimizer (and the schedule, as a callback of fit).
  // TransformerLR multiplies the base lr (1 here, as the seed course writes it) by
  // factor * (dModel * warmupSteps)^-0.5 at its peak: 0.03 after 30 steps.
  const opt = new TfjsOptimizer(
    model,
    (params) => new AdamW(noDecayParamGroups(params, { weightDecay: 0.01 }), { lr: 1 }),
  );
  const sched = new TransformerLR(opt.fused, { dModel: 64, warmupSteps: 30, factor: 0.03 * Math.sqrt(64 * 30) });
  model.compile({ optimizer: opt, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return { model, opt, sched };
}

const fitOptions = { batchSize: 50, shuffle: false, verbose: 0 };
async function train(run, label, initialEpoch, untilEpoch) {
  const history = await run.model.fit(x, y, {
    ...fitOptions,
    initialEpoch,
    epochs: untilEpoch,
    callbacks: [
      run.opt.schedulerCallback(run.sched),
      {
        onEpochEnd: async (epoch, logs) => {
          const lr = run.opt.fused.paramGroups[0].lr;
          console.log(
            `${label} epoch ${String(epoch + 1).padStart(2)}  loss ${logs.loss.toFixed(4)}  accuracy ${logs.acc.toFixed(3)}  lr ${lr.toExponential(2)}`,
          );
        },
      },
    ],
  });
  return history.history.loss;
}

const dir = mkdtempSync(join(tmpdir(), 'fused-optim-tfjs-example-'));
const file = join(dir, 'checkpoint.safetensors');
try {
  const half = epochs / 2;
  const first = buildModel();
  const groups = first.opt.fused.paramGroups;
  console.log(
    `tfjs ${tf.version.tfjs} on ${tf.getBackend()}: ${first.opt.params.length} variables, ` +
      `${first.opt.params.reduce((n, p) => n + p.data.numel, 0)} params; AdamW groups: ` +
      groups.map((g) => `${g.params.length} with weight decay ${g.weightDecay}`).join(', '),
  );
  const lossesA = await train(first, 'run', 0, half);
  await saveCheckpoint(file, {
    optimizer: first.opt,
    model: first.model,
    scheduler: first.sched,
    extra: { epoch: half },
  });
  console.log(`checkpoint after epoch ${half}: ${file}`);
  const lossesB = await train(first, 'run', half, epochs);

  // A fresh model, optimizer and schedule, resumed from the checkpoint.
  const second = buildModel();
  const { epoch } = await loadCheckpoint(file, { optimizer: second.opt, model: second.model, scheduler: second.sched });
  const resumed = await train(second, 'resumed', epoch, epochs);

  const all = [...lossesA, ...lossesB];
  const same = second.model.weights.every((w, i) => {
    const a = first.model.weights[i].read().dataSync();
    const b = w.read().dataSync();
    return a.length === b.length && a.every((v, k) => Object.is(v, b[k]));
  });
  const exact = same && resumed.every((l, i) => l === lossesB[i]);
  console.log(`loss ${all[0].toFixed(4)} -> ${all[all.length - 1].toFixed(4)}`);
  console.log(
    exact
      ? `the resumed run matches the uninterrupted one exactly (weights and losses of epochs ${half + 1}-${epochs})`
      : 'the resumed run DIFFERS from the uninterrupted one',
  );
  if (!(all[all.length - 1] < all[0] / 3)) throw new Error('the loss did not fall to a third');
  if (!exact) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}

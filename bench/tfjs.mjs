// The TensorFlow.js case of the suite: one optimizer step of TfjsOptimizer (AdamW with
// weightDecay 0: Adam's math) against tf.train.adam on the same models, with the same grads,
// on every tfjs backend installed (the pure-JS CPU backend of @tensorflow/tfjs,
// @tensorflow/tfjs-backend-wasm, @tensorflow/tfjs-node's TensorFlow C library when present),
// in the same run. Models: an MLP of about 1M params (6 variables) and a deep narrow MLP of
// hundreds of small variables. The grads are computed once and applied at every step, so
// only the optimizer step is timed (tfjs's whole applyGradients, for both).
//
// Bytes per param of a TfjsOptimizer step (fp32): grads copied into the fused tensors
// (read 4 + write 4), the fused AdamW step (28: docs/design.md section 6), updated values copied
// into a new tensor for the variable (read 4 + write 4): 44. "of which fused step" is
// opt.fused.step() alone, timed the same way: the rest is the tfjs side's copies and calls.
import { median, nowMs } from './stats.mjs';

export const TFJS_BYTES_PER_PARAM = 44;
const LR = 1e-3;

const MODELS = {
  full: [
    { id: 'mlp-1m', title: 'MLP 512-1024-512-10 (1.06M params, 6 variables)', widths: [512, 1024, 512, 10], batch: 32 },
    {
      id: 'many-small',
      title: '128 dense layers of 32 (135K params, 256 variables)',
      deep: { layers: 128, width: 32 },
      batch: 16,
    },
  ],
  quick: [
    { id: 'mlp-1m', title: 'MLP 64-128-64-10 (quick)', widths: [64, 128, 64, 10], batch: 8 },
    { id: 'many-small', title: '16 dense layers of 8 (quick)', deep: { layers: 16, width: 8 }, batch: 4 },
  ],
};

const SETTINGS = {
  full: { warmup: 3, minReps: 5, maxReps: 100, targetMs: 2000 },
  quick: { warmup: 1, minReps: 2, maxReps: 3, targetMs: 20 },
};

/** The tfjs backends this run can use, and why the others are not. */
async function loadBackends(tf) {
  const out = [
    { name: 'cpu', package: '@tensorflow/tfjs', available: true },
    { name: 'wasm', package: '@tensorflow/tfjs-backend-wasm', available: false },
    { name: 'tensorflow', package: '@tensorflow/tfjs-node', available: false },
  ];
  for (const b of out.slice(1)) {
    try {
      await import(b.package);
      b.available = (await tf.setBackend(b.name)) === true;
      if (!b.available) b.reason = `${b.package} is installed but tf.setBackend('${b.name}') failed`;
    } catch (e) {
      b.reason = `${b.package} could not be loaded (${String(e.message).split('\n')[0]})`;
    }
  }
  await tf.setBackend('cpu');
  return out;
}

function buildModel(tf, spec, prefix) {
  const layers = [];
  if (spec.widths) {
    for (let i = 1; i < spec.widths.length; i++) {
      layers.push(
        tf.layers.dense({
          units: spec.widths[i],
          activation: i < spec.widths.length - 1 ? 'relu' : 'linear',
          name: `${prefix}_d${i}`,
          ...(i === 1 ? { inputShape: [spec.widths[0]] } : {}),
        }),
      );
    }
  } else {
    const { layers: n, width } = spec.deep;
    for (let i = 0; i < n; i++)
      layers.push(
        tf.layers.dense({
          units: width,
          activation: 'tanh',
          name: `${prefix}_d${i}`,
          ...(i === 0 ? { inputShape: [width] } : {}),
        }),
      );
  }
  return tf.sequential({ layers });
}

function timeSteps(step, { warmup, minReps, maxReps, targetMs }) {
  for (let i = 0; i < warmup; i++) step();
  const samples = [];
  const once = () => {
    const t0 = nowMs();
    step();
    samples.push(nowMs() - t0);
  };
  once();
  const reps = Math.max(minReps, Math.min(maxReps, Math.ceil(targetMs / Math.max(samples[0], 1e-3))));
  while (samples.length < reps) once();
  return { msMedian: median(samples), msMin: Math.min(...samples), reps: samples.length };
}

/** The progress steps of this section: two per model (TfjsOptimizer, tf.train.adam) and backend. */
export function tfjsProgressCount(quick) {
  return MODELS[quick ? 'quick' : 'full'].length * 3 * 2;
}

/**
 * Runs the section: { backends, runs }. `fo` is fused-optim, `foTfjs` fused-optim/tfjs,
 * `tf` @tensorflow/tfjs (production mode). Fused tensors on `device`. Each run's
 * fractionOfCopy is left for the caller, who knows the reference copy bandwidth.
 */
export async function runTfjsBench({ fo, foTfjs, tf, quick, device, progress }) {
  const models = MODELS[quick ? 'quick' : 'full'];
  const S = SETTINGS[quick ? 'quick' : 'full'];
  const backends = await loadBackends(tf);
  const runs = [];
  for (const b of backends) {
    if (!b.available) {
      for (let i = 0; i < models.length * 2; i++) {
        progress.start(`tfjs ${b.name}`);
        progress.done('skipped: not installed');
      }
      continue;
    }
    await tf.setBackend(b.name);
    await tf.ready();
    for (const spec of models) {
      progress.start(`tfjs ${b.name} ${spec.id}`);
      const fusedModel = buildModel(tf, spec, `bench_${b.name}_${spec.id}_f`);
      const adamModel = buildModel(tf, spec, `bench_${b.name}_${spec.id}_a`);
      const fusedVars = fusedModel.trainableWeights.map((w) => w.read());
      const adamVars = adamModel.trainableWeights.map((w) => w.read());
      const inputs = spec.widths ? spec.widths[0] : spec.deep.width;
      const x = tf.randomNormal([spec.batch, inputs], 0, 1, 'float32', 1);
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(fusedModel.apply(x))), fusedVars);
      value.dispose();
      const adamGrads = Object.fromEntries(adamVars.map((v, i) => [v.name, grads[fusedVars[i].name]]));
      const params = fusedVars.reduce((s, v) => s + v.size, 0);

      const opt = new foTfjs.TfjsOptimizer(
        fusedModel,
        (ps) => new fo.AdamW(ps, { lr: LR, weightDecay: 0, eps: 1e-7 }),
        { device },
      );
      const fused = timeSteps(() => opt.applyGradients(grads), S);
      // The fused step alone: the grads are bound since the first applyGradients.
      const fusedStep = timeSteps(() => {
        opt.fused.step();
        opt.fused.synchronize();
      }, S);
      progress.done(`${fused.msMedian.toFixed(2)} ms`);

      progress.start(`tfjs ${b.name} ${spec.id} tf.train.adam`);
      const adam = tf.train.adam(LR, 0.9, 0.999, 1e-7);
      const tfAdam = timeSteps(() => adam.applyGradients(adamGrads), {
        ...S,
        maxReps: Math.min(S.maxReps, 30),
      });
      progress.done(`${tfAdam.msMedian.toFixed(1)} ms`);

      const gbps = (TFJS_BYTES_PER_PARAM * params) / (fused.msMedian / 1e3) / 1e9;
      runs.push({
        id: `tfjs/${b.name}/${spec.id}`,
        backend: b.name,
        model: spec.id,
        modelTitle: spec.title,
        variables: fusedVars.length,
        params,
        device,
        fused,
        fusedStep,
        adam: tfAdam,
        speedup: tfAdam.msMedian / fused.msMedian,
        bytesPerParam: TFJS_BYTES_PER_PARAM,
        gbps,
        fractionOfCopy: null, // set by run.mjs against the suite's reference copy bandwidth
        transfers: { ...opt.transfers },
        target: b.name === 'cpu' && spec.id === 'mlp-1m' && !quick ? 3 : null,
      });
      opt.dispose();
      adam.dispose();
      tf.dispose([x, grads]);
      fusedModel.dispose();
      adamModel.dispose();
    }
  }
  await tf.setBackend('cpu');
  return {
    backends: backends.map(({ name, package: pkg, available, reason }) => ({ name, package: pkg, available, reason })),
    runs,
    note:
      "TfjsOptimizer(AdamW, weightDecay 0) vs tf.train.adam, one applyGradients with fixed grads; tfjs's CPU and wasm " +
      "backends run on one thread, the fused step on fused-optim's CPU pool (or the GPU)",
  };
}

const fix = (x, d) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

/** The section's table rows for bench/report.mjs. */
export function tfjsTable(section) {
  return section.runs.map((r) => [
    r.backend,
    r.model,
    String(r.variables),
    String(r.params),
    fix(r.fused.msMedian, 2),
    fix(r.fusedStep.msMedian, 2),
    fix(r.adam.msMedian, 2),
    `${fix(r.speedup, 1)}x`,
    fix(r.gbps, 1),
    Number.isFinite(r.fractionOfCopy) ? `${(100 * r.fractionOfCopy).toFixed(0)}%` : 'n/a',
    r.target === null ? '' : `${r.target}x ${r.speedup >= r.target ? 'met' : 'MISSED'}`,
  ]);
}

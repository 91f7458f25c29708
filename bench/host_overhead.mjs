// Host-side cost of one step() call: the JavaScript of the optimizer (the per-step
// hyperparameter table), the addon's argument handling and the engine's prepare (checks,
// plan key, slots), before and around the update itself. Measured on fp32 tensors of ONE
// element each, so the update does next to nothing: the time per call at N tensors is fitted
// as a + b * N (least squares on relative errors), a being the fixed cost per call and b the
// cost per tensor; each point is also checked against the target, 5 us + 0.2 us per tensor.
// b is an upper bound on the per-tensor host cost: it also holds the native loop over one
// element of each tensor. All N one-element tensors fit one work item of the CPU pool, so the
// step runs inline on the calling thread and no worker wake-up is timed.
// On CUDA, step() only enqueues: the calls are timed without synchronizing (the queue is
// drained after each sample, outside the timing).
import { linearFit, median, nowMs } from './stats.mjs';

function makeOptimizer(fo, algo, n, device) {
  const params = [];
  for (let i = 0; i < n; i++) {
    const p = new fo.Parameter(fo.Tensor.from(new Float32Array([0.01 * (i % 7) - 0.03]), { device }), {
      name: `encoder.layers.${i % 12}.w${i}`,
    });
    p.grad = fo.Tensor.from(new Float32Array([0.001 * ((i % 5) - 2) + 0.0005]), { device });
    params.push(p);
  }
  const opt =
    algo === 'lion'
      ? new fo.Lion(params, { lr: 1e-4, weightDecay: 1e-5 })
      : algo === 'adamwdl'
        ? new fo.AdamWDL(params, { lr: 1e-3, weightDecay: 0.01, layerwiseDecay: 0.9, nLayers: 12 })
        : new fo.AdamW(params, { lr: 1e-3, weightDecay: 0.01 });
  const dispose = () => params.forEach((p) => (p.data.dispose(), p.grad.dispose()));
  return { opt, dispose };
}

/** Microseconds per step() call: median over `samples` batches of `calls` back-to-back calls. */
function usPerCall(opt, { calls, samples, warmup }) {
  for (let i = 0; i < warmup; i++) opt.step();
  opt.synchronize();
  const per = [];
  for (let s = 0; s < samples; s++) {
    const t0 = nowMs();
    for (let i = 0; i < calls; i++) opt.step();
    per.push(((nowMs() - t0) * 1e3) / calls);
    opt.synchronize();
  }
  return median(per);
}

/**
 * { counts, fits: [{ algo, points: [{ tensors, usPerCall }], a, b, r2 }], stepCount }.
 * onProgress(label) is called before each optimizer's measurement, onDone() after.
 */
export function measureHostOverhead(
  fo,
  { algos, device, counts, calls, samples, warmup, stepCountSteps, window, progress },
) {
  const fits = [];
  for (const algo of algos) {
    progress?.start(`host overhead ${algo.name}`);
    const points = [];
    for (const n of counts) {
      const { opt, dispose } = makeOptimizer(fo, algo.id, n, device);
      // Fewer calls for many tensors, so each point takes about the same time.
      const c = Math.max(20, Math.round(calls / Math.max(1, n / 64)));
      points.push({ tensors: n, usPerCall: usPerCall(opt, { calls: c, samples, warmup }), calls: c });
      dispose();
    }
    const { a, b, r2 } = linearFit(
      points.map((p) => p.tensors),
      points.map((p) => p.usPerCall),
    );
    // The target, point by point: under 5 us + 0.2 us per tensor at every count.
    for (const p of points) p.withinTarget = p.usPerCall < 5 + 0.2 * p.tensors;
    fits.push({
      algo: algo.id,
      algoName: algo.name,
      points,
      a,
      b,
      r2,
      withinTarget: points.every((p) => p.withinTarget),
    });
    progress?.done(`a ${a.toFixed(2)} us, b ${b.toFixed(3)} us/tensor`);
  }

  // Independence of the step count: AdamW (per-param step counts, bias corrections
  // recomputed every step) over many steps, each call timed, median per window.
  progress?.start('host overhead vs step count');
  const tensors = 64;
  const { opt, dispose } = makeOptimizer(fo, 'adamw', tensors, device);
  const us = new Float64Array(stepCountSteps);
  for (let i = 0; i < stepCountSteps; i++) {
    const t0 = nowMs();
    opt.step();
    us[i] = (nowMs() - t0) * 1e3;
  }
  opt.synchronize();
  dispose();
  const windows = [];
  for (let i = 0; i + window <= stepCountSteps; i += window) windows.push(median(us.subarray(i, i + window)));
  const firstUs = windows[0];
  const lastUs = windows[windows.length - 1];
  const ratio = lastUs / firstUs;
  const stepCount = {
    algo: 'adamw',
    algoName: 'AdamW',
    tensors,
    steps: stepCountSteps,
    window,
    windowsUs: windows,
    firstUs,
    lastUs,
    ratio,
    minUs: Math.min(...windows),
    maxUs: Math.max(...windows),
    // Flat: the last window within 25% of the first (a cost growing with the step count, e.g.
    // a pow() loop or a growing table, would show as a steady climb).
    independent: ratio >= 0.8 && ratio <= 1.25,
  };
  progress?.done(`first ${firstUs.toFixed(2)} us, last ${lastUs.toFixed(2)} us`);
  return { counts, fits, stepCount };
}

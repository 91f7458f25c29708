// Data-parallel training with fused-optim/distributed (docs/distributed.md):
//
//   mpirun -np 2 node examples/data-parallel.mjs [--zero] [--steps N] [--checkpoint DIR]
//
// Every rank holds the model (here: y = Wx + b, fitted to a fixed linear map), computes grads on
// its share of each batch, averages them with allReduceGrads, and steps. With --zero the
// optimizer state is sharded (ZeRO-1): each rank keeps AdamW's moments for about half the
// params. Every 10 steps rank 0 prints the loss; with --checkpoint the run is saved at the
// end (a sharded checkpoint with --zero, else rank 0's saveCheckpoint).
import { join } from 'node:path';
import { AdamW, LinearLR, Parameter, Tensor, saveCheckpoint } from 'fused-optim';
import {
  ZeroRedundancyOptimizer,
  allReduceGrads,
  broadcastParams,
  init,
  saveShardedCheckpoint,
} from 'fused-optim/distributed';

const zero = process.argv.includes('--zero');
const option = (name) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : undefined);
const steps = Number(option('--steps') ?? 50);
const checkpoint = option('--checkpoint');
const [IN, OUT, BATCH] = [64, 16, 32];

const group = await init();
const W = new Parameter(Tensor.zeros([OUT, IN]), { name: 'W' });
const b = new Parameter(Tensor.zeros([OUT]), { name: 'b' });
const params = [W, b];
await broadcastParams(params, { group }); // every rank starts from rank 0's values

const opt = zero
  ? new ZeroRedundancyOptimizer(params, (shard) => new AdamW(shard, { lr: 0.05 }), { group })
  : new AdamW(params, { lr: 0.05 });
const scheduler = new LinearLR(opt, { startFactor: 0.1, totalIters: 10 });

// The same "dataset" on every rank: sample s of step t (y = A x); rank r takes every
// worldSize-th sample of the batch.
const A = Float32Array.from({ length: OUT * IN }, (_, k) => Math.cos(k));
function sample(t, s) {
  let seed = (t * 7919 + s * 104729 + 1) >>> 0;
  const next = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  const x = Float32Array.from({ length: IN }, next);
  const y = Float32Array.from({ length: OUT }, (_, o) => x.reduce((acc, v, i) => acc + A[o * IN + i] * v, 0));
  return { x, y };
}

for (let t = 0; t < steps; t++) {
  const w = W.data.toFloat32Array();
  const bias = b.data.toFloat32Array();
  const gW = new Float32Array(OUT * IN);
  const gb = new Float32Array(OUT);
  let loss = 0;
  for (let s = group.rank; s < BATCH; s += group.worldSize) {
    const { x, y } = sample(t, s);
    for (let o = 0; o < OUT; o++) {
      let pred = bias[o];
      for (let i = 0; i < IN; i++) pred += w[o * IN + i] * x[i];
      const err = pred - y[o]; // d(0.5 err^2)/d pred, averaged over the batch below
      loss += (0.5 * err * err) / BATCH;
      gb[o] += err / BATCH;
      for (let i = 0; i < IN; i++) gW[o * IN + i] += (err * x[i]) / BATCH;
    }
  }
  W.grad = Tensor.from(gW, { shape: [OUT, IN] });
  b.grad = Tensor.from(gb);
  // Each rank's grad is its part of the batch's sum: 'sum' gives the whole batch's mean.
  await allReduceGrads(params, { group, op: 'sum' });
  await opt.stepAsync();
  scheduler.step();
  const total = Float64Array.of(loss);
  await group.allReduceAsync(total, 'sum');
  if (group.rank === 0 && (t % 10 === 9 || t === steps - 1)) console.log(`step ${t + 1}: loss ${total[0].toFixed(4)}`);
}

if (checkpoint && zero) await saveShardedCheckpoint(checkpoint, { optimizer: opt, scheduler, extra: { steps } });
if (checkpoint && !zero && group.rank === 0) {
  // Every rank holds the same state: rank 0 saves it.
  await saveCheckpoint(join(checkpoint, 'run.safetensors'), { params, optimizer: opt, scheduler, extra: { steps } });
}
group.destroy();

// `node --expose-gc memory_churn.cjs DIST MODE COUNT`: builds COUNT AdamW optimizers over one
// 1M-element fp32 param (8 MiB of state each: exp_avg and exp_avg_sq), steps each once and
// drops it, with an await per iteration as a training loop would have; prints the peak and
// final RSS as JSON. The param and grad are made once, so the optimizers' state is all that
// is allocated: only its report to V8 can make the garbage collector run. MODE drop: each
// optimizer is only dropped; MODE dispose: each is disposed before it is dropped.
'use strict';
const [dist, mode, countText] = process.argv.slice(2);
const fo = require(dist);
const count = Number(countText);
const numel = 1 << 20;

const rssMiB = () => process.memoryUsage.rss() / 2 ** 20;

async function main() {
  const p = new fo.Parameter(fo.Tensor.zeros([numel], { device: 'cpu' }), { name: 'w' });
  p.grad = fo.Tensor.from(new Float32Array(numel).fill(0.5), { device: 'cpu' });
  let peak = rssMiB();
  let steps = 0;
  for (let i = 0; i < count; i++) {
    const opt = new fo.AdamW([p], { lr: 1e-3 });
    opt.step();
    steps++;
    if (mode === 'dispose') opt.dispose();
    await new Promise((resolve) => setImmediate(resolve));
    peak = Math.max(peak, rssMiB());
  }
  globalThis.gc?.();
  process.stdout.write(`${JSON.stringify({ peakRssMiB: peak, endRssMiB: rssMiB(), steps })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e.stack}\n`);
  process.exit(1);
});

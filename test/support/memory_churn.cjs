// `node --expose-gc memory_churn.cjs DIST MODE COUNT`: builds COUNT AdamW optimizers of one
// 1M-element fp32 param each (8 MiB of state: exp_avg and exp_avg_sq), steps each once and
// drops it, with an await per iteration as a training loop would have; prints the peak and
// final RSS as JSON. MODE drop: the optimizer and its param are only dropped (the garbage
// collector must see their size); MODE dispose: both are disposed before they are dropped.
'use strict';
const [dist, mode, countText] = process.argv.slice(2);
const fo = require(dist);
const count = Number(countText);
const numel = 1 << 20;

const rssMiB = () => process.memoryUsage.rss() / 2 ** 20;

async function main() {
  const grad = fo.Tensor.from(new Float32Array(numel).fill(0.5), { device: 'cpu' });
  let peak = rssMiB();
  let steps = 0;
  for (let i = 0; i < count; i++) {
    const p = new fo.Parameter(fo.Tensor.zeros([numel], { device: 'cpu' }), { name: 'w' });
    p.grad = grad;
    const opt = new fo.AdamW([p], { lr: 1e-3 });
    opt.step();
    steps++;
    if (mode === 'dispose') {
      opt.dispose();
      p.data.dispose();
    }
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

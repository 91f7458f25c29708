#!/usr/bin/env node
// fused-optim demo: `npm run demo [-- options]`, the same as `npx fused-optim demo [options]`.
//
// Trains a 16 -> 64 -> 1 tanh MLP on a synthetic regression task, with the gradients
// computed in plain TypeScript and the optimizer step in fused-optim (on the GPU when one is
// usable): AdamW with no weight decay on the biases (noDecayParamGroups), the Transformer
// warmup schedule (TransformerLR), a progress bar, a checkpoint halfway, a second phase
// that resumes from it in freshly built params/optimizer/scheduler and must continue the
// loss curve exactly, and an SVG plot of loss and lr (fused-optim-demo.svg).
//
//   npm run demo
//   npm run demo -- --optimizer lion --dtype bfloat16 --steps 1000 --out lion.svg
//   npm run demo -- --help
//
// The training code is src/cli/demo.ts (compiled to dist/cjs/cli/demo.js). This file only
// runs it. Exit codes: 0 done, 1 runtime error, 2 bad command-line options.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let cli;
try {
  cli = require('../dist/cjs/cli/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND') {
    console.error(
      'demo: the compiled JavaScript (dist/) is missing.\n' +
        'Run `npm install` in the package root (or `npm run build:ts` if the addon is already built).\n' +
        `(${e.message.split('\n')[0]})`,
    );
    process.exit(1);
  }
  throw e;
}
process.exitCode = await cli.main(['demo', ...process.argv.slice(2)]);

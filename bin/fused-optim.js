#!/usr/bin/env node
// The `fused-optim` command: info, demo, bench, plot-lr, help. The code is TypeScript in
// src/cli/, compiled to dist/cjs/cli/ (npm run build:ts).
'use strict';
const path = require('node:path');

const entry = path.join(__dirname, '..', 'dist', 'cjs', 'cli', 'main.js');
let cli;
try {
  cli = require(entry);
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes(entry)) {
    console.error(
      `fused-optim: the compiled command is missing (${entry}).\nRun \`npm run build:ts\` (or \`npm install\`) in the package root.`,
    );
    process.exit(1);
  }
  throw e;
}
// `fused-optim ... | head` closes the pipe early: that ends the output, it is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e && e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}
cli.main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(`fused-optim: ${e && e.stack ? e.stack : e}`);
    process.exitCode = 1;
  },
);

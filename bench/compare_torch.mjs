#!/usr/bin/env node
// Compares a fused-optim run (node bench/run.mjs --json --out fused.json) with the PyTorch side
// (python3 bench/torch_fused_adamw.py --out torch.json), both taken on the same GPU machine,
// and checks the CUDA targets: at least as fast as torch.optim.AdamW(fused=True) at every
// case, at least twice as fast on the 4096 small tensors, and at least 85% of the device's
// copy bandwidth for 100M+ params. Prints a table; exits 0 whatever the outcome (a report,
// not a gate), or 2 on bad input.
//
//   node bench/compare_torch.mjs fused.json torch.json [--markdown]
import { readFileSync } from 'node:fs';
import { formatTable } from './report.mjs';

const args = process.argv.slice(2);
const markdown = args.includes('--markdown');
const files = args.filter((a) => !a.startsWith('--'));
if (files.length !== 2) {
  console.error('usage: node bench/compare_torch.mjs fused.json torch.json [--markdown]');
  process.exit(2);
}
const [fused, torch] = files.map((f) => JSON.parse(readFileSync(f, 'utf8')));
if (!Array.isArray(fused.results) || !Array.isArray(torch.results)) {
  console.error('compare_torch: expected the JSON of bench/run.mjs and of bench/torch_fused_adamw.py');
  process.exit(2);
}

const rows = [];
for (const t of torch.results) {
  const f = fused.results.find((r) => r.id === t.id);
  if (!f) continue;
  const speedup = t.msMedian / f.msMedian;
  const need = t.case === 'small-4096' ? 2 : 1;
  rows.push([
    t.case,
    t.variant,
    f.msMedian.toFixed(3),
    t.msMedian.toFixed(3),
    `${speedup.toFixed(2)}x`,
    `${need}x ${speedup >= need ? 'met' : 'MISSED'}`,
    `${(100 * f.fractionOfCopy).toFixed(0)}%`,
    `${(100 * t.fractionOfCopy).toFixed(0)}%`,
  ]);
}
console.log(
  `fused-optim ${fused.backend?.device ?? '?'} (${fused.commit ?? '?'}) vs ${torch.tool} ${torch.torch} on ${torch.device}`,
);
console.log(
  `copy bandwidth: fused-optim run ${fused.copyBandwidth.referenceGBps.toFixed(0)} GB/s, torch run ${torch.copyBandwidth.gbps.toFixed(0)} GB/s`,
);
console.log(
  formatTable(
    ['case', 'dtype', 'fused ms', 'torch ms', 'torch / fused', 'target', 'fused of copy', 'torch of copy'],
    rows,
    { markdown, right: [2, 3, 4, 6, 7] },
  ),
);
const big = fused.results.filter((r) => r.params >= 100e6 && r.algo === 'adamw');
for (const r of big) {
  console.log(
    `${r.id}: ${(100 * r.fractionOfCopy).toFixed(0)}% of copy bandwidth (target 85%: ${r.fractionOfCopy >= 0.85 ? 'met' : 'MISSED'})`,
  );
}

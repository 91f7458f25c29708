#!/usr/bin/env node
// The short table at the end of scripts/gpu-check.sh: from OUT/fused.json (bench/run.mjs) and,
// when present, OUT/torch.json (bench/torch_fused_adamw.py, same machine and call): per case,
// optimizer and the fp32 and bf16 layouts, ms per step, bytes per param, GB/s, the fraction of
// the device copy bandwidth measured in the same run, and torch's fused AdamW alongside.
//
//   node scripts/gpu-check-summary.mjs OUT
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatTable } from '../bench/report.mjs';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node scripts/gpu-check-summary.mjs OUT');
  process.exit(2);
}
const fused = JSON.parse(readFileSync(join(dir, 'fused.json'), 'utf8'));
const torchFile = join(dir, 'torch.json');
const torch = existsSync(torchFile) ? JSON.parse(readFileSync(torchFile, 'utf8')) : null;

const rows = [];
for (const r of fused.results) {
  if (r.dtype !== 'fp32' && r.dtype !== 'bf16') continue;
  const t = torch?.results.find((x) => x.id === r.id);
  rows.push([
    r.case,
    r.algo,
    r.dtype,
    r.msMedian.toFixed(3),
    String(r.bytesPerParam),
    r.gbps.toFixed(0),
    `${(100 * r.fractionOfCopy).toFixed(0)}%`,
    t ? t.msMedian.toFixed(3) : '',
    t ? `${(t.msMedian / r.msMedian).toFixed(2)}x` : '',
  ]);
}
console.log(
  `copy bandwidth (device to device, read + write): ${fused.copyBandwidth.referenceGBps.toFixed(0)} GB/s` +
    (torch ? `; torch's run measured ${torch.copyBandwidth.gbps.toFixed(0)} GB/s` : ''),
);
console.log(
  formatTable(['case', 'optimizer', 'dtype', 'ms/step', 'B/param', 'GB/s', 'of copy', 'torch ms', 'torch/ours'], rows, {
    right: [3, 4, 5, 6, 7, 8],
  }),
);

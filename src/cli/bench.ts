// `fused-optim bench [args]`: runs the package's benchmark suite, bench/run.mjs, in a child
// Node process with the remaining arguments, and exits with its exit code.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './package_root';

export const BENCH_USAGE = `usage: fused-optim bench [benchmark options]

Runs the benchmark suite (bench/run.mjs in the package) and passes every argument on to it;
\`fused-optim bench --help\` shows the suite's own options. Same as \`npm run bench\` in a
source checkout.`;

export function runBench(argv: readonly string[]): number {
  const { root } = packageRoot();
  const script = join(root, 'bench', 'run.mjs');
  const help = argv.includes('--help') || argv.includes('-h');
  if (help) process.stdout.write(`${BENCH_USAGE}\n`);
  if (!existsSync(script)) {
    if (help) return 0;
    throw new Error(
      `the benchmark suite is not in this copy of fused-optim (no ${script}); it ships in the package from the release that adds it`,
    );
  }
  if (help) process.stdout.write("\nThe suite's own options (bench/run.mjs --help):\n\n");
  const r = spawnSync(process.execPath, [script, ...argv], { stdio: 'inherit', cwd: process.cwd() });
  if (r.error) throw r.error;
  if (r.signal) {
    process.stderr.write(`fused-optim bench: the benchmark was killed by ${r.signal}\n`);
    return 1;
  }
  return r.status ?? 1;
}

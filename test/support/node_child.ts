// Runs a snippet of CommonJS in a fresh Node process (for environment variables that are
// read once per process, and for builds that must be loaded in isolation).
import { spawnSync } from 'node:child_process';

export function runNode(
  code: string,
  { env = {}, cwd }: { env?: Record<string, string | undefined>; cwd?: string } = {},
) {
  const r = spawnSync(process.execPath, ['-e', code], {
    cwd,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

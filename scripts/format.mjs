#!/usr/bin/env node
// Formats the sources (prettier for TypeScript/JavaScript/JSON, clang-format for C++ and
// CUDA), or with --check only reports files that are not formatted and exits 1.
// Usage: node scripts/format.mjs [--check]
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const check = process.argv.includes('--check');
const tracked = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { encoding: 'utf8' })
  .split('\n')
  .filter(Boolean);
const nativeFiles = tracked.filter((f) => /\.(h|cpp|cu|cuh)$/.test(f));

let failed = false;

const prettier = createRequire(import.meta.url).resolve('prettier/bin/prettier.cjs');
const p = spawnSync(process.execPath, [prettier, check ? '--check' : '--write', '--log-level', 'warn', '.'], {
  stdio: 'inherit',
});
if (p.status !== 0) failed = true;

const clang = spawnSync('clang-format', ['--version'], { encoding: 'utf8' });
if (clang.error) {
  console.error('clang-format not found (Debian: apt-get install clang-format)');
  process.exit(1);
}
const c = spawnSync('clang-format', check ? ['--dry-run', '--Werror', ...nativeFiles] : ['-i', ...nativeFiles], {
  stdio: 'inherit',
});
if (c.status !== 0) failed = true;

if (failed && check) console.error('Not formatted: run `npm run format`.');
process.exit(failed ? 1 : 0);

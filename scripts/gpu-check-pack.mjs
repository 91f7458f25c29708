#!/usr/bin/env node
// `npm run gpu-check:pack`: packs what scripts/gpu-check.sh needs on a lent GPU machine that
// has CUDA, PyTorch and compute-sanitizer but no Node.js, into .gpu-check/ (git-ignored; the
// device tool carries it): this Node binary, the node_modules that vitest and the addon
// loader need (not the whole tree), the addon built here and the TypeScript build. Then, on
// the device: `bash scripts/gpu-check.sh` (the device tool's carry: [".gpu-check"]).
//
//   node scripts/gpu-check-pack.mjs [--allow-emulated]
//
// The addon must be a real CUDA build (npm run build:gyp with nvcc on PATH); --allow-emulated
// packs an emulated one, to try the check end to end here (scripts/gpu-check.sh --emulated).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, '.gpu-check');
const allowEmulated = process.argv.includes('--allow-emulated');
const BUDGET = 60 * 2 ** 20; // the device tool carries 64 MiB in all

function fail(message) {
  console.error(`gpu-check:pack: ${message}`);
  process.exit(1);
}

// --- the addon and the TypeScript build ---------------------------------------------------
const addon = join(root, 'build', 'Release', 'fused_optim.node');
if (!existsSync(addon)) fail('no build/Release/fused_optim.node: run `npm run build:gyp` (with nvcc on PATH) first');
const info = createRequire(import.meta.url)(addon).nativeInfo();
if (!info.cudaCompiled) fail('the addon was built without CUDA: put nvcc on PATH and run `npm run build:gyp`');
if (info.cudaEmulated && !allowEmulated)
  fail('the addon is the CUDA host emulator build: rebuild with `npm run build:gyp` (or pass --allow-emulated)');
if (!existsSync(join(root, 'dist', 'cjs', 'index.js'))) fail('no dist/: run `npm run build:ts` first');

// --- node_modules: the dependency closure of what the check loads ------------------------
// Resolved as Node resolves (a package's own node_modules first, then the parents'), with
// the optional dependencies that are installed (platform binaries of rolldown, lightningcss).
function closure(names) {
  const seen = new Set();
  const visit = (name, fromDir) => {
    for (let dir = fromDir; ; dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) {
        if (seen.has(candidate)) return;
        seen.add(candidate);
        const pkg = JSON.parse(readFileSync(join(candidate, 'package.json'), 'utf8'));
        const deps = { ...pkg.dependencies, ...pkg.optionalDependencies, ...pkg.peerDependencies };
        for (const dep of Object.keys(deps)) visit(dep, candidate);
        return;
      }
      if (dir === root || dir === dirname(dir)) return; // not installed (an optional or peer one)
    }
  };
  for (const name of names) visit(name, root);
  return [...seen].map((p) => relative(root, p)).sort();
}
const modules = closure(['vitest', 'node-gyp-build']);

// --- pack ----------------------------------------------------------------------------------
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const tar = (file, cwd, paths) =>
  execFileSync('tar', ['-cJf', join(out, file), '-C', cwd, ...paths], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, XZ_OPT: '-6 -T0' },
  });
tar('node.tar.xz', dirname(process.execPath), [process.execPath.split('/').pop()]);
tar('modules.tar.xz', root, modules);
tar('build.tar.xz', root, ['build/Release/fused_optim.node', 'dist']);

const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8' });
const manifest = {
  packed: new Date().toISOString(),
  commit: dirty.trim() ? `${commit} + uncommitted changes` : commit,
  node: process.version,
  addon: { archs: info.cudaArchs, emulated: info.cudaEmulated, runtime: info.cudaRuntimeVersion },
  modules: modules.length,
};
writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);

let total = 0;
for (const f of ['node.tar.xz', 'modules.tar.xz', 'build.tar.xz', 'manifest.json']) {
  const size = statSync(join(out, f)).size;
  total += size;
  console.log(`${f.padEnd(16)} ${(size / 2 ** 20).toFixed(1).padStart(6)} MiB`);
}
console.log(`${'total'.padEnd(16)} ${(total / 2 ** 20).toFixed(1).padStart(6)} MiB (commit ${manifest.commit})`);
if (total > BUDGET) fail(`.gpu-check/ is ${(total / 2 ** 20).toFixed(1)} MiB, over the ${BUDGET / 2 ** 20} MiB budget`);
console.log('on the GPU machine: bash scripts/gpu-check.sh   (device tool carry: [".gpu-check"])');

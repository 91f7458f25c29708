#!/usr/bin/env node
// `npm run prebuild`: the prebuilt binary that the published package ships,
// prebuilds/linux-x64/fused-optim.node, made with prebuildify (Node-API, stripped) and
// loaded at run time by node-gyp-build.
//
// The build runs in a staging copy of the sources (package.json, binding.gyp, native/,
// scripts/find-cuda.js), so the checkout's own build/ (what `npm install` or
// `npm run build` made) is left alone: prebuildify would otherwise run `node-gyp rebuild`
// in place and move the binary out of build/Release.
//
// Nothing is downloaded: node-gyp compiles against Node's own headers, from npm's `nodedir`
// setting (npm_config_nodedir) or, when that is not set, from the running Node's
// installation prefix (include/node/ next to bin/node). A Node-API build needs no other
// headers, and the binary works on every Node version from 20 on.
//
// The CUDA backend is compiled in when binding.gyp finds nvcc (scripts/find-cuda.js):
// device code for sm_75, sm_80 (run by sm_86 and sm_89), sm_90, sm_100 and sm_120 plus compute_90 PTX, with the CUDA runtime linked
// statically, so the binary needs only the NVIDIA driver. FUSED_OPTIM_CUDA=ON makes a
// missing nvcc an error (for release builds), OFF builds a CPU-only binary.
//
// Options: --quiet (hide the compiler output), --jobs N (parallel compiles, default: all cores).
// Afterwards the binary is checked: it loads, reports whether CUDA is compiled in, its
// device code is listed (scripts/fatbin.mjs: sm_75..sm_120 and compute_90 PTX), and its shared-library needs are only
// the C/C++ runtime (ldd).
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listFatbins } from './fatbin.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// npm runs a script named `prebuild` before `npm run build` too (its pre-hook rule). There
// the cmake-js build is wanted, not a prebuilt binary: skip, unless `npm run prebuild` (or
// `node scripts/prebuild.mjs`) was asked for. npm gives a hook the same environment, so the
// command line of the npm process above this one tells (Linux /proc; elsewhere we build).
function npmScriptRequested() {
  let pid = process.ppid;
  for (let depth = 0; depth < 4 && pid > 1; depth++) {
    let cmd;
    let stat;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      // npm sets its process title to "npm run build", which replaces argv as one string.
      if (cmd.length === 1) cmd = cmd[0].split(/\s+/);
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return undefined;
    }
    const run = cmd.findIndex((a) => ['run', 'run-script', 'rum', 'urn'].includes(a));
    if (run >= 0 && cmd.some((a) => /(^|\/)npm(-cli\.js)?$/.test(a)))
      return cmd.slice(run + 1).find((a) => !a.startsWith('-'));
    pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  }
  return undefined;
}
if (process.env.npm_lifecycle_event === 'prebuild') {
  const requested = npmScriptRequested();
  if (requested !== undefined && requested !== 'prebuild') {
    console.log(
      `prebuild: skipped (npm runs "prebuild" before "${requested}"; \`npm run prebuild\` makes the prebuilt binary)`,
    );
    process.exit(0);
  }
}

const args = process.argv.slice(2);
const quiet = args.includes('--quiet');
const jobsAt = args.indexOf('--jobs');
const jobs = jobsAt >= 0 ? args[jobsAt + 1] : String(availableParallelism());
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--quiet') continue;
  if (args[i] === '--jobs' && /^\d+$/.test(args[i + 1] ?? '')) {
    i++;
    continue;
  }
  console.error(
    `prebuild: unknown option ${JSON.stringify(args[i])}\nusage: npm run prebuild [-- --quiet] [-- --jobs N]`,
  );
  process.exit(2);
}

function fail(message) {
  console.error(`prebuild: ${message}`);
  process.exit(1);
}

// The published binary is never a test build: no CUDA host emulator, no sanitizers.
if (/^emulate$/i.test(process.env.FUSED_OPTIM_CUDA ?? ''))
  fail('FUSED_OPTIM_CUDA=EMULATE builds the CUDA host emulator, which is for tests only: unset it to prebuild');
if (process.env.FUSED_OPTIM_SANITIZE) fail('FUSED_OPTIM_SANITIZE is for test builds only: unset it to prebuild');
if (process.env.FUSED_OPTIM_CUDA_ARCHS)
  fail('FUSED_OPTIM_CUDA_ARCHS narrows the GPU code to a compile check: unset it to prebuild every architecture');

// --- Node's headers, without a download ---------------------------------------------------
let nodedir = process.env.npm_config_nodedir;
if (!nodedir) {
  const prefix = resolve(dirname(process.execPath), '..');
  if (
    existsSync(join(prefix, 'include', 'node', 'node_api.h')) &&
    existsSync(join(prefix, 'include', 'node', 'common.gypi'))
  )
    nodedir = prefix;
}
if (!nodedir) {
  console.warn("prebuild: no local Node headers found (set npm's nodedir); node-gyp will try to download them");
}

// --- CUDA: found or not -------------------------------------------------------------------
const nvcc = spawnSync(process.execPath, [join(root, 'scripts', 'find-cuda.js'), 'nvcc'], {
  encoding: 'utf8',
}).stdout.trim();
if (/^on$/i.test(process.env.FUSED_OPTIM_CUDA ?? '') && !nvcc) {
  fail('FUSED_OPTIM_CUDA=ON but no usable nvcc (with libcudart_static.a) was found on PATH or in CUDACXX');
}
console.log(
  `prebuild: node ${process.version}, headers from ${nodedir ?? '(download)'}, CUDA: ${nvcc || 'not found, CPU-only binary'}`,
);

// --- Staging copy -------------------------------------------------------------------------
const stage = mkdtempSync(join(tmpdir(), 'fused-optim-prebuild-'));
try {
  for (const f of ['package.json', 'binding.gyp', 'native', 'scripts/find-cuda.js']) {
    cpSync(join(root, f), join(stage, f), { recursive: true });
  }
  symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'), 'dir');

  const prebuildify = join(root, 'node_modules', 'prebuildify', 'bin.js');
  if (!existsSync(prebuildify)) fail('prebuildify is not installed: run `npm install` first (it is a devDependency)');
  const env = { ...process.env, npm_config_jobs: jobs };
  if (nodedir) env.npm_config_nodedir = nodedir;
  const started = Date.now();
  const r = spawnSync(
    process.execPath,
    [
      prebuildify,
      '--napi',
      '--strip',
      '--target',
      process.versions.node,
      '--cwd',
      stage,
      ...(quiet ? ['--quiet'] : []),
    ],
    { cwd: stage, env, stdio: 'inherit' },
  );
  if (r.status !== 0) fail(`prebuildify failed (exit ${r.status ?? r.signal})`);

  const built = join(stage, 'prebuilds');
  const outDir = join(root, 'prebuilds');
  mkdirSync(outDir, { recursive: true });
  for (const tuple of readdirSync(built)) {
    rmSync(join(outDir, tuple), { recursive: true, force: true });
    cpSync(join(built, tuple), join(outDir, tuple), { recursive: true });
  }
  console.log(`prebuild: built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}

// --- Checks -------------------------------------------------------------------------------
const tuple = `${process.platform}-${process.arch}`;
const dir = join(root, 'prebuilds', tuple);
const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.node')) : [];
if (files.length !== 1) fail(`expected one .node file in prebuilds/${tuple}, found ${files.length}`);
const binary = join(dir, files[0]);
console.log(`prebuild: prebuilds/${tuple}/${files[0]} (${(statSync(binary).size / 1e6).toFixed(1)} MB)`);
// Every architecture's device code makes the binary grow; npm users download it.
if (statSync(binary).size > 30e6)
  fail(`the binary is ${(statSync(binary).size / 1e6).toFixed(1)} MB, over the 30 MB budget`);

// Load exactly this file (not build/Release, which node-gyp-build would prefer).
const probe = spawnSync(
  process.execPath,
  [
    '-e',
    `const m = { exports: {} }; process.dlopen(m, ${JSON.stringify(binary)}); console.log(JSON.stringify(m.exports.nativeInfo()))`,
  ],
  { encoding: 'utf8', env: { ...process.env, FUSED_OPTIM_THREADS: '1' } },
);
if (probe.status !== 0) fail(`the prebuilt binary does not load:\n${probe.stderr}`);
const info = JSON.parse(probe.stdout);
console.log(
  `prebuild: loads; cudaCompiled ${info.cudaCompiled}${info.cudaCompiled ? ` (${info.cudaArchs})` : ''}; usable GPU: ${info.cudaUsable ? info.cudaDeviceName : `no (${info.cudaError})`}`,
);
if (Boolean(nvcc) !== info.cudaCompiled)
  fail(`nvcc was ${nvcc ? '' : 'not '}found but the binary reports cudaCompiled ${info.cudaCompiled}`);

if (info.cudaCompiled) {
  // The device code itself (what cuobjdump --list-elf/--list-ptx shows), read from the file.
  const containers = listFatbins(readFileSync(binary));
  const archs = [...new Set(containers.flat().map((e) => e.arch))].sort();
  console.log(`prebuild: CUDA code: ${containers.length} fat binaries with ${archs.join(', ')}`);
  for (const want of ['sm_75', 'sm_80', 'sm_90', 'sm_100', 'sm_120', 'compute_90']) {
    if (!containers.length || !containers.every((entries) => entries.some((e) => e.arch === want)))
      fail(`the binary lacks ${want} code`);
  }
}

const ldd = spawnSync('ldd', [binary], { encoding: 'utf8' });
if (ldd.status === 0) {
  const libs = ldd.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
  const allowed =
    /^(linux-vdso\.so|\/lib64\/ld-linux|ld-linux|libc\.so|libm\.so|libstdc\+\+\.so|libgcc_s\.so|libpthread\.so|libdl\.so|librt\.so)/;
  const other = libs.filter((l) => !allowed.test(l));
  console.log(`prebuild: shared libraries: ${libs.join(' ')}`);
  if (other.length) fail(`the binary needs libraries beyond the C/C++ runtime: ${other.join(', ')}`);
}

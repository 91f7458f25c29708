#!/usr/bin/env node
// Builds the MPI module of fused-optim/distributed (native/mpi, its own gyp project) when an
// MPI compiler wrapper is found (scripts/find-mpi.js): `npm run build:mpi`, and after the
// main addon at install time (`--optional`: a missing wrapper or a failed build is a notice,
// not an install failure; the main addon works without MPI and init() says what is missing).
//
// Nothing is downloaded: node-gyp compiles against the running Node's own headers
// (npm's nodedir, or include/node next to bin/node), as scripts/prebuild.mjs does.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const optional = process.argv.includes('--optional');
const say = (message) => console.log(`fused-optim: ${message}`);

function finish(message, failed) {
  if (failed && !optional) {
    console.error(`fused-optim: ${message}`);
    process.exit(1);
  }
  say(message);
  process.exit(0);
}

if (/^(off|0|false|no)$/i.test(process.env.FUSED_OPTIM_MPI || ''))
  finish('MPI module skipped (FUSED_OPTIM_MPI=OFF)', false);
const wrapper = spawnSync(process.execPath, [join(root, 'scripts', 'find-mpi.js'), 'wrapper'], {
  encoding: 'utf8',
}).stdout.trim();
if (!wrapper)
  finish(
    'MPI module not built: no MPI compiler wrapper (mpicc) on PATH. fused-optim/distributed needs one ' +
      '(Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev), then `npm rebuild fused-optim`.',
    !optional,
  );

// npm's own node-gyp during npm scripts, else the dev dependency.
let nodeGyp = process.env.npm_config_node_gyp;
if (!nodeGyp || !existsSync(nodeGyp)) {
  try {
    nodeGyp = createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    finish('MPI module not built: node-gyp is not available', true);
  }
}
const args = [nodeGyp, 'rebuild', `--directory=${join(root, 'native', 'mpi')}`];
let nodedir = process.env.npm_config_nodedir;
const prefix = resolve(dirname(process.execPath), '..');
if (!nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) nodedir = prefix;
if (nodedir) args.push(`--nodedir=${nodedir}`);
say(`building the MPI module with ${wrapper}'s flags`);
const r = spawnSync(process.execPath, args, { stdio: optional ? 'pipe' : 'inherit', encoding: 'utf8' });
if (r.status !== 0) {
  if (optional) process.stderr.write(`${r.stdout ?? ''}${r.stderr ?? ''}`.slice(-4000));
  rmSync(join(root, 'native', 'mpi', 'build'), { recursive: true, force: true });
  finish('the MPI module failed to build (the output is above); fused-optim works without it', true);
}
say('MPI module built: native/mpi/build/Release/fused_optim_mpi.node');

#!/usr/bin/env node
// Used by binding.gyp (and CMakeLists.txt) for the optional MPI module
// (native/mpi -> build/Release/mpi/fused_optim_mpi.node, loaded by fused-optim/distributed):
//   node find-mpi.js wrapper   the MPI C compiler wrapper found (mpicc), or nothing
//   node find-mpi.js cflags    its include flags (-I...), one per line
//   node find-mpi.js libs      its link flags (-L..., -l..., with an rpath for each -L)
// Nothing is printed when no wrapper is found, which leaves the MPI module out of the
// build; the main addon never needs MPI. Like CMake's FindMPI, the wrapper must be on PATH
// (or MPICC must name it); FUSED_OPTIM_MPI=OFF leaves it out even when one is found.
// Open MPI's wrappers answer --showme:compile / --showme:link; MPICH's and Intel MPI's
// answer -compile-info / -link-info.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

function onPath(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return '';
}

function findWrapper() {
  if (/^(off|0|false|no)$/i.test(process.env.FUSED_OPTIM_MPI || '')) return '';
  if (process.env.MPICC && fs.existsSync(process.env.MPICC)) return process.env.MPICC;
  return onPath('mpicc');
}

function ask(wrapper, args) {
  const r = spawnSync(wrapper, args, { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

// The wrapper's compile and link lines, without the compiler name MPICH puts first.
function flags(wrapper) {
  let compile = ask(wrapper, ['--showme:compile']);
  let link = ask(wrapper, ['--showme:link']);
  if (compile === undefined || link === undefined) {
    compile = ask(wrapper, ['-compile-info']);
    link = ask(wrapper, ['-link-info']);
  }
  if (compile === undefined || link === undefined) return undefined;
  const tokens = (s) => s.split(/\s+/).filter(Boolean);
  const cflags = tokens(compile).filter((t) => t.startsWith('-I'));
  const libs = [];
  for (const t of tokens(link)) {
    if (t.startsWith('-L')) libs.push(t, `-Wl,-rpath,${t.slice(2)}`);
    else if (t.startsWith('-l') || t.startsWith('-Wl,') || t === '-pthread') libs.push(t);
  }
  if (!libs.some((t) => t.startsWith('-lmpi'))) return undefined;
  return { cflags, libs };
}

const wrapper = findWrapper();
const found = wrapper ? flags(wrapper) : undefined;
const what = process.argv[2];
if (!found) process.stdout.write('');
else if (what === 'wrapper') process.stdout.write(wrapper);
else if (what === 'cflags') process.stdout.write(found.cflags.join('\n'));
else if (what === 'libs') process.stdout.write(found.libs.join('\n'));
else {
  process.stderr.write('usage: node find-mpi.js wrapper|cflags|libs\n');
  process.exit(2);
}

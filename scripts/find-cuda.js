#!/usr/bin/env node
// Used by binding.gyp: prints the nvcc to compile with (`node find-cuda.js nvcc`) or the
// CUDA library folder holding libcudart_static.a (`node find-cuda.js lib`), or nothing
// when CUDA is not available, which selects the CPU-only build. Like CMake's detection,
// nvcc must be on PATH (or CUDACXX must name it); FUSED_OPTIM_CUDA=OFF forces CPU only.
// `node find-cuda.js mode` prints nvcc, emulate or off: FUSED_OPTIM_CUDA=EMULATE builds the
// CUDA sources as host C++ against the CUDA host emulator (tools/cuda-emu; tests only).
// `node find-cuda.js sanitize` prints FUSED_OPTIM_SANITIZE (e.g. address,undefined).
// `node find-cuda.js archs` / `gencode` print the GPU architectures compiled (FO_CUDA_ARCHS)
// and their nvcc flags: every supported one, or only FUSED_OPTIM_CUDA_ARCHS (e.g. "90" or
// "80,90", no PTX), which CI uses for builds that only check the code compiles (a release,
// scripts/prebuild.mjs, refuses it).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const emulate = /^emulate$/i.test(process.env.FUSED_OPTIM_CUDA || '');

function findNvcc() {
  if (emulate || /^(off|0|false|no)$/i.test(process.env.FUSED_OPTIM_CUDA || '')) return '';
  if (process.env.CUDACXX && fs.existsSync(process.env.CUDACXX)) return process.env.CUDACXX;
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'nvcc');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return '';
}

function findLibDir(nvcc) {
  const roots = [
    process.env.CUDA_PATH,
    process.env.CUDA_HOME,
    path.dirname(path.dirname(fs.realpathSync(nvcc))),
    '/usr/local/cuda',
  ];
  for (const root of roots) {
    if (!root) continue;
    for (const lib of ['lib64', 'lib', 'targets/x86_64-linux/lib']) {
      if (fs.existsSync(path.join(root, lib, 'libcudart_static.a'))) return path.join(root, lib);
    }
  }
  return '';
}

// Turing to Hopper and Blackwell (sm_100 data centre, sm_120 consumer; sm_80's cubin also
// runs on sm_86 and sm_89), plus compute_90 PTX that newer GPUs JIT-compile; the same list as
// CMakeLists.txt.
const ALL_ARCHS = ['75', '80', '90', '100', '120'];
const PTX_ARCH = '90';

function archList() {
  const only = (process.env.FUSED_OPTIM_CUDA_ARCHS || '').trim();
  if (!only) return { archs: ALL_ARCHS, ptx: PTX_ARCH };
  const archs = only.split(/[,; ]+/).filter(Boolean);
  for (const a of archs) {
    if (!/^[0-9]{2,3}$/.test(a)) {
      process.stderr.write(`FUSED_OPTIM_CUDA_ARCHS: '${a}' is not an architecture number such as 90\n`);
      process.exit(1);
    }
  }
  return { archs, ptx: null };
}

function archsText({ archs, ptx }) {
  return [...archs.map((a) => `sm_${a}`), ...(ptx ? [`compute_${ptx}`] : [])].join(',');
}

function gencodeFlags({ archs, ptx }) {
  return archs
    .map((a) => `-gencode arch=compute_${a},code=${a === ptx ? `[sm_${a},compute_${a}]` : `sm_${a}`}`)
    .join(' ');
}

const nvcc = findNvcc();
const lib = nvcc ? findLibDir(nvcc) : '';
// Both or neither: an nvcc without its static runtime cannot link.
const usable = nvcc && lib;
const what = process.argv[2];
if (what === 'mode') process.stdout.write(emulate ? 'emulate' : usable ? 'nvcc' : 'off');
else if (what === 'archs') process.stdout.write(archsText(archList()));
else if (what === 'gencode') process.stdout.write(gencodeFlags(archList()));
else if (what === 'sanitize') process.stdout.write((process.env.FUSED_OPTIM_SANITIZE || '').replace(/[^a-z,]/g, ''));
else process.stdout.write(usable ? (what === 'lib' ? lib : nvcc) : '');

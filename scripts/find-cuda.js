#!/usr/bin/env node
// Used by binding.gyp: prints the nvcc to compile with (`node find-cuda.js nvcc`) or the
// CUDA library folder holding libcudart_static.a (`node find-cuda.js lib`), or nothing
// when CUDA is not available, which selects the CPU-only build. Like CMake's detection,
// nvcc must be on PATH (or CUDACXX must name it); FUSED_OPTIM_CUDA=OFF forces CPU only.
// `node find-cuda.js mode` prints nvcc, emulate or off: FUSED_OPTIM_CUDA=EMULATE builds the
// CUDA sources as host C++ against the CUDA host emulator (tools/cuda-emu; tests only).
// `node find-cuda.js sanitize` prints FUSED_OPTIM_SANITIZE (e.g. address,undefined).
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

const nvcc = findNvcc();
const lib = nvcc ? findLibDir(nvcc) : '';
// Both or neither: an nvcc without its static runtime cannot link.
const usable = nvcc && lib;
const what = process.argv[2];
if (what === 'mode') process.stdout.write(emulate ? 'emulate' : usable ? 'nvcc' : 'off');
else if (what === 'sanitize') process.stdout.write((process.env.FUSED_OPTIM_SANITIZE || '').replace(/[^a-z,]/g, ''));
else process.stdout.write(usable ? (what === 'lib' ? lib : nvcc) : '');

// Packaging: the CPU-only build (nvcc hidden from PATH) and the ESM/CommonJS entry points.
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runNode } from './support/node_child';

const root = join(__dirname, '..');

// CI (.ci/run) runs `npm ci` with nvcc hidden from PATH, so the checkout's own build is the
// build this test makes; FUSED_OPTIM_TEST_BUILT_WITHOUT_NVCC=1 (set there) checks that build
// in place instead of compiling it a second time (two minutes on CI's 2 cores).
const builtWithoutNvcc = process.env.FUSED_OPTIM_TEST_BUILT_WITHOUT_NVCC === '1';

describe('CPU-only build (no nvcc on PATH)', () => {
  const dir = builtWithoutNvcc ? root : mkdtempSync(join(tmpdir(), 'fused-optim-cpu-only-'));
  afterAll(() => {
    if (!builtWithoutNvcc) rmSync(dir, { recursive: true, force: true });
  });

  it('builds with node-gyp, loads, reports no CUDA and steps an optimizer', () => {
    if (!builtWithoutNvcc) buildWithoutNvcc(dir);
    expectCpuOnlyBuildWorks(dir);
  }, 600_000);
});

function buildWithoutNvcc(dir: string): void {
  for (const f of ['package.json', 'binding.gyp', 'native', 'scripts', 'dist'])
    cpSync(join(root, f), join(dir, f), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  // Drop every PATH entry that holds nvcc, and any CUDA hint in the environment.
  const path = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((d) => spawnSync('test', ['-x', join(d, 'nvcc')]).status !== 0)
    .join(delimiter);
  const env = { ...process.env, PATH: path, CUDACXX: '', CUDA_PATH: '', CUDA_HOME: '' };
  const gyp = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const build = spawnSync(process.execPath, [gyp, 'rebuild', '--jobs', '2'], {
    cwd: dir,
    env,
    encoding: 'utf8',
    timeout: 600_000,
  });
  expect(build.status, build.stderr.slice(-3000)).toBe(0);
  expect(build.stdout).not.toMatch(/nvcc/);
}

function expectCpuOnlyBuildWorks(dir: string): void {
  const r = runNode(
    `const f = require('./dist/cjs/index.js');
       const info = f.backendInfo();
       const p = new f.Parameter(f.Tensor.from([1, 2, 3]), { name: 'w' });
       p.grad = f.Tensor.from([1, 1, 1]);
       new f.AdamW([p], { lr: 0.1, weightDecay: 0 }).step();
       console.log(JSON.stringify({ info, after: Array.from(p.data.toFloat32Array()) }));`,
    { cwd: dir },
  );
  expect(r.stderr).toBe('');
  const out = JSON.parse(r.stdout);
  expect(out.info.cudaCompiled).toBe(false);
  expect(out.info.backend).toBe('cpu');
  expect(out.info.cudaError).toMatch(/built without CUDA/);
  // First Adam step moves each weight by lr against the grad's sign.
  out.after.forEach((x: number, i: number) => expect(x).toBeCloseTo(i + 1 - 0.1, 5));
}

describe('package entry points', () => {
  it('require() loads the CommonJS build with the public names', () => {
    const r = runNode(`const f = require('fused-optim'); console.log(Object.keys(f).sort().join(','))`, { cwd: root });
    expect(r.stderr).toBe('');
    for (const name of ['AdamW', 'Parameter', 'Tensor', 'backendInfo']) expect(r.stdout).toContain(name);
  });

  it('import loads the ESM entry and shares classes with require()', () => {
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { AdamW, Tensor } from 'fused-optim';
         import { createRequire } from 'node:module';
         const cjs = createRequire(import.meta.url)('fused-optim');
         console.log(AdamW === cjs.AdamW && Tensor === cjs.Tensor && typeof Tensor.from);`,
      ],
      { cwd: root, encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('function');
  });
});

// The published package: `npm pack`, then install the tarball into an empty project on a
// PATH that has node, npm and sh but no compiler (no gcc/g++/cc/make/python/nvcc). The
// install script (node-gyp-build) must find the prebuilt binary and compile nothing; then
// require() and import both load it, it selects the CPU backend here (no GPU), steps an
// optimizer, and the `fused-optim` command runs from node_modules/.bin.
//
// Needs the prebuilt binary: `npm run prebuild` first (CI does, then runs this file with
// FUSED_OPTIM_PACK_TEST=require, which turns the skip into a failure).
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const tuple = `${process.platform}-${process.arch}`;
const prebuildDir = join(root, 'prebuilds', tuple);
const prebuilt = existsSync(prebuildDir) ? readdirSync(prebuildDir).filter((f) => f.endsWith('.node')) : [];
const required = process.env.FUSED_OPTIM_PACK_TEST === 'require';
const run = prebuilt.length > 0 || required;
const title = run
  ? 'npm pack + install with no compilers: the prebuilt binary'
  : `npm pack + install with no compilers (SKIPPED: no prebuilds/${tuple}/; run \`npm run prebuild\` first)`;

if (!run)
  console.warn(
    `package.test.ts: skipped: no prebuilt binary in prebuilds/${tuple}/ (run \`npm run prebuild\` first; CI does)`,
  );

// Where node and npm live, as links: the only programs on the install's PATH besides sh.
function toolDir(dir: string): string {
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const npmCli = join(process.execPath, '..', '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  const npm = existsSync(npmCli)
    ? npmCli
    : spawnSync('sh', ['-c', 'readlink -f "$(command -v npm)"'], { encoding: 'utf8' }).stdout.trim();
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync(npm, join(bin, 'npm'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  return bin;
}

describe.skipIf(!run)(title, () => {
  const dir = mkdtempSync(join(tmpdir(), 'fused-optim-pack-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const project = join(dir, 'project');
  const installed = join(project, 'node_modules', 'fused-optim');
  let env: NodeJS.ProcessEnv = {};

  const sh = (cmd: string, args: string[], cwd = project, timeout = 120_000) =>
    spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout });

  it('npm pack ships the prebuilt binary, dist/, bin/ and bench/, and no tests or build output', () => {
    expect(prebuilt, `no prebuilt binary in prebuilds/${tuple}: run \`npm run prebuild\``).toHaveLength(1);
    expect(existsSync(join(root, 'dist', 'cjs', 'cli', 'main.js')), 'dist/ is missing: run `npm run build:ts`').toBe(
      true,
    );
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(pack.status, pack.stderr).toBe(0);
    const [info] = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = info.files.map((f) => f.path);
    for (const f of [
      `prebuilds/${tuple}/${prebuilt[0]}`,
      'dist/cjs/index.js',
      'dist/cjs/index.d.ts',
      'dist/esm/index.mjs',
      'dist/esm/index.d.mts',
      'dist/cjs/tfjs/index.js',
      'dist/cjs/tfjs/index.d.ts',
      'dist/esm/tfjs.mjs',
      'dist/esm/tfjs.d.mts',
      'dist/cjs/cli/main.js',
      'bin/fused-optim.js',
      'binding.gyp',
      'package.json',
    ]) {
      expect(files).toContain(f);
    }
    expect(files.filter((f) => /^(test|src|build)\//.test(f) || f.endsWith('.tgz'))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(manifest.bin['fused-optim']).toBe('bin/fused-optim.js');

    // The install's environment: node, npm and sh only; nothing from the npm running vitest.
    const bin = toolDir(dir);
    env = {
      HOME: process.env.HOME,
      PATH: bin,
      LANG: process.env.LANG ?? 'C.UTF-8',
      TMPDIR: process.env.TMPDIR ?? tmpdir(),
    };
    const which = spawnSync(
      '/bin/sh',
      ['-c', 'for t in gcc g++ cc c++ make python python3 nvcc cmake; do command -v $t; done; true'],
      { env, encoding: 'utf8' },
    );
    expect(which.stdout.trim(), 'compilers are still on PATH').toBe('');

    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'smoke', version: '1.0.0', private: true }));
    writeFileSync(join(dir, 'tarball'), info.filename);
  }, 180_000);

  it('installs from the tarball with no compiler: the install script finds the prebuilt binary and builds nothing', () => {
    const tarball = join(dir, readFileSync(join(dir, 'tarball'), 'utf8'));
    // Dependencies (node-addon-api, node-gyp-build) come from npm's cache when it has them.
    const r = sh(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts', tarball],
      project,
      300_000,
    );
    expect(r.status, `${r.stdout}\n${r.stderr}`.slice(-4000)).toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/node-gyp-build/); // the install script ran
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/gyp info|gyp ERR|CXX\(target\)|nvcc/);
    expect(existsSync(join(installed, 'build')), 'the install compiled the addon').toBe(false);
    expect(existsSync(join(installed, 'prebuilds', tuple, prebuilt[0]))).toBe(true);
  }, 300_000);

  it('require() loads the prebuilt binary, selects the CPU backend here and steps AdamW', async () => {
    writeFileSync(
      join(project, 'smoke.cjs'),
      `const f = require('fused-optim');
       const path = require('node:path');
       const binary = require('node-gyp-build').path(path.dirname(require.resolve('fused-optim/package.json')));
       const info = f.backendInfo();
       const p = new f.Parameter(f.Tensor.from([1, 2, 3]), { name: 'w' });
       p.grad = f.Tensor.from([1, -1, 1]);
       new f.AdamW([p], { lr: 0.1, weightDecay: 0 }).step();
       console.log(JSON.stringify({ info, binary, after: Array.from(p.data.toFloat32Array()) }));`,
    );
    const r = sh('node', ['smoke.cjs']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.binary).toBe(join(installed, 'prebuilds', tuple, prebuilt[0]));
    // No GPU here: the CPU backend (on a machine with a usable GPU it would be cuda).
    expect(out.info.backend).toBe(out.info.computeCapability === undefined ? 'cpu' : 'cuda');
    if (out.info.backend === 'cpu' && out.info.cudaCompiled) expect(out.info.cudaError).toBeTruthy();
    // Adam's first step moves each weight by lr against the grad's sign.
    expect(out.after[0]).toBeCloseTo(0.9, 5);
    expect(out.after[1]).toBeCloseTo(2.1, 5);
    expect(out.after[2]).toBeCloseTo(2.9, 5);

    // A binary built where nvcc was found carries the GPU code for sm_75..sm_120 and PTX.
    if (out.info.cudaCompiled) {
      const { listFatbins } = (await import(pathToFileURL(join(root, 'scripts', 'fatbin.mjs')).href)) as {
        listFatbins(b: Buffer): Array<Array<{ arch: string }>>;
      };
      const archs = new Set(
        listFatbins(readFileSync(out.binary))
          .flat()
          .map((e) => e.arch),
      );
      for (const a of ['sm_75', 'sm_80', 'sm_90', 'sm_100', 'sm_120', 'compute_90']) expect(archs).toContain(a);
    }
  });

  it('import loads the ESM entry, which shares its classes with require()', () => {
    writeFileSync(
      join(project, 'smoke.mjs'),
      `import { AdamW, Lion, Tensor, TransformerLR, backendInfo } from 'fused-optim';
       import { createRequire } from 'node:module';
       const cjs = createRequire(import.meta.url)('fused-optim');
       console.log(JSON.stringify({ same: AdamW === cjs.AdamW && Tensor === cjs.Tensor && Lion === cjs.Lion && TransformerLR === cjs.TransformerLR, backend: backendInfo().backend }));`,
    );
    const r = sh('node', ['smoke.mjs']);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.same).toBe(true);
    expect(['cpu', 'cuda']).toContain(out.backend);
  });

  it('the fused-optim command runs from node_modules/.bin: info, plot-lr and a short demo', () => {
    const cli = join(project, 'node_modules', '.bin', 'fused-optim');
    const info = sh(cli, ['info', '--json']);
    expect(info.status, info.stderr).toBe(0);
    const report = JSON.parse(info.stdout);
    expect(report.binaryKind).toBe('prebuilt');
    expect(report.backend).toBe(report.computeCapability === undefined ? 'cpu' : 'cuda');

    const plot = sh(cli, [
      'plot-lr',
      'transformer',
      '--d-model',
      '512',
      '--warmup-steps',
      '40',
      '--steps',
      '200',
      '-o',
      'lr.svg',
    ]);
    expect(plot.status, plot.stderr).toBe(0);
    expect(readFileSync(join(project, 'lr.svg'), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>\n$/);

    const demo = sh(cli, ['demo', '--steps', '40', '--no-progress', '--out', 'demo.svg']);
    expect(demo.status, demo.stderr + demo.stdout).toBe(0);
    expect(demo.stdout).toMatch(/resume: +seamless/);
    expect(existsSync(join(project, 'demo.svg'))).toBe(true);
  }, 120_000);
});

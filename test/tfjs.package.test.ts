// The fused-optim/tfjs subpath as a consumer project reaches it (node_modules/fused-optim: a
// link to this checkout, so package.json's "exports", "types" and "typesVersions" are what
// resolve): the main entry loads no tfjs; require() and import of the subpath share one
// TfjsOptimizer, built on the project's own @tensorflow/tfjs-core; without tfjs-core the
// subpath fails naming it while the main entry works; and its types compile for ESM and
// CommonJS consumers (test/fixtures/tfjs-typings: ok.ts clean, bad.ts's marked lines exactly;
// with skipLibCheck, since checking tfjs-core's own declarations triples the time: an
// unresolved or wrong declaration of ours still shows, as bad.ts's errors would change).
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const dir = mkdtempSync(join(tmpdir(), 'fused-optim-tfjs-package-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A project dir whose node_modules links fused-optim and, unless told not to, @tensorflow. */
function project(name: string, { tfjs = true, from }: { tfjs?: boolean; from?: string } = {}): string {
  const at = join(dir, name);
  if (from) cpSync(from, at, { recursive: true });
  else mkdirSync(at);
  if (!existsSync(join(at, 'package.json')))
    writeFileSync(join(at, 'package.json'), JSON.stringify({ name, private: true }));
  mkdirSync(join(at, 'node_modules'));
  symlinkSync(root, join(at, 'node_modules', 'fused-optim'), 'dir');
  if (tfjs) symlinkSync(join(root, 'node_modules', '@tensorflow'), join(at, 'node_modules', '@tensorflow'), 'dir');
  return at;
}

/** A project with a copy of the built package (no link: nothing resolves from this checkout). */
function installedCopy(name: string): string {
  const at = join(dir, name);
  const pkg = join(at, 'node_modules', 'fused-optim');
  mkdirSync(join(pkg, 'build', 'Release'), { recursive: true });
  writeFileSync(join(at, 'package.json'), JSON.stringify({ name, private: true }));
  cpSync(join(root, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(root, 'dist'), join(pkg, 'dist'), { recursive: true });
  cpSync(join(root, 'build', 'Release', 'fused_optim.node'), join(pkg, 'build', 'Release', 'fused_optim.node'));
  symlinkSync(join(root, 'node_modules', 'node-gyp-build'), join(at, 'node_modules', 'node-gyp-build'), 'dir');
  return at;
}

function node(cwd: string, file: string, source: string): { status: number | null; stdout: string; stderr: string } {
  writeFileSync(join(cwd, file), source);
  return spawnSync(process.execPath, [file], { cwd, encoding: 'utf8', timeout: 60_000 });
}

describe('fused-optim/tfjs from a consumer project', () => {
  it('dist/ is built', () => {
    for (const f of ['dist/cjs/tfjs/index.js', 'dist/cjs/tfjs/index.d.ts', 'dist/esm/tfjs.mjs', 'dist/esm/tfjs.d.mts'])
      expect(existsSync(join(root, f)), `${f} is missing: run \`npm run build:ts\``).toBe(true);
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(manifest.peerDependencies['@tensorflow/tfjs-core']).toBeDefined();
    expect(manifest.peerDependenciesMeta['@tensorflow/tfjs-core'].optional).toBe(true);
    expect(manifest.dependencies['@tensorflow/tfjs-core']).toBeUndefined();
  });

  it('the main entry (require and import) loads no tfjs module', () => {
    const at = project('main-only');
    const r = node(
      at,
      'main.mjs',
      `import { createRequire } from 'node:module';
       const require = createRequire(import.meta.url);
       const fo = require('fused-optim');
       const esm = await import('fused-optim');
       console.log(JSON.stringify({
         loaded: Object.keys(require.cache).filter((k) => k.includes('@tensorflow')),
         same: esm.AdamW === fo.AdamW,
       }));`,
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ loaded: [], same: true });
  });

  it("require() and import share one TfjsOptimizer, a subclass of the project's tf.Optimizer", () => {
    const at = project('both');
    const r = node(
      at,
      'both.mjs',
      `import { createRequire } from 'node:module';
       import * as tf from '@tensorflow/tfjs';
       import { TfjsOptimizer, saveCheckpoint } from 'fused-optim/tfjs';
       const require = createRequire(import.meta.url);
       const cjs = require('fused-optim/tfjs');
       const cores = Object.keys(require.cache).filter((k) => /@tensorflow[\\\\/]tfjs-core[\\\\/]/.test(k) && k.endsWith('.js'));
       console.log(JSON.stringify({
         same: TfjsOptimizer === cjs.TfjsOptimizer && saveCheckpoint === cjs.saveCheckpoint,
         subclass: Object.getPrototypeOf(TfjsOptimizer) === tf.Optimizer,
         cores: cores.map((k) => k.slice(k.indexOf('@tensorflow'))),
         registered: tf.serialization.SerializationMap.getMap().classNameMap.FusedOptimTfjsOptimizer?.[0] === TfjsOptimizer,
       }));`,
    );
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ same: true, subclass: true, registered: true });
    expect(out.cores).toEqual(['@tensorflow/tfjs-core/dist/tf-core.node.js']); // one copy
  });

  it('without @tensorflow/tfjs-core the subpath fails naming it, and the main entry still works', () => {
    const at = installedCopy('no-tfjs');
    const r = node(
      at,
      'none.cjs',
      `const fo = require('fused-optim');
       let error = '';
       try { require('fused-optim/tfjs'); } catch (e) { error = e.message; }
       console.log(JSON.stringify({ error: error.split('\\n')[0], main: typeof fo.AdamW }));`,
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ error: "Cannot find module '@tensorflow/tfjs-core'", main: 'function' });
  });

  const fixtures = join(root, 'test', 'fixtures', 'tfjs-typings');
  const cases = [
    { name: 'ESM (module nodenext: dist/esm/tfjs.d.mts)', project: 'esm', tsconfig: 'tsconfig.json' },
    { name: 'CommonJS (module node16: dist/cjs/tfjs/index.d.ts)', project: 'cjs', tsconfig: 'tsconfig.json' },
    { name: 'CommonJS, moduleResolution node10 (typesVersions)', project: 'cjs', tsconfig: 'tsconfig.node10.json' },
  ];
  const projects = new Map<string, string>();
  for (const c of cases) {
    it(`types: ${c.name}: ok.ts compiles clean, bad.ts reports exactly its marked errors`, () => {
      if (!projects.has(c.project))
        projects.set(c.project, project(`types-${c.project}`, { from: join(fixtures, c.project) }));
      const at = projects.get(c.project)!;
      const r = spawnSync(process.execPath, [tsc, '-p', c.tsconfig, '--pretty', 'false'], {
        cwd: at,
        encoding: 'utf8',
        timeout: 120_000,
      });
      const output = `${r.stdout}${r.stderr}`;
      const found = [...output.matchAll(/^(.+?)\((\d+),\d+\): error (TS\d+):/gm)].map((m) => `${m[1]}:${m[2]} ${m[3]}`);
      const expected = readFileSync(join(at, 'bad.ts'), 'utf8')
        .split('\n')
        .flatMap((text, i) => {
          const m = /\/\/ error (TS\d+)\s*$/.exec(text);
          return m ? [`bad.ts:${i + 1} ${m[1]}`] : [];
        });
      expect(expected.length).toBeGreaterThan(0);
      expect(found, output).toEqual(expected);
    }, 120_000);
  }
});

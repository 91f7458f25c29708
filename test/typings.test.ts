// Types for consumers: an ES module project and a CommonJS project (test/fixtures/typings)
// compiled with tsc against the built package, reached as node_modules/fused-optim (a link
// to this checkout, so the package.json "exports" conditions and "types" are what resolve).
// ok.ts must compile clean; bad.ts's marked lines must be exactly the errors reported.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const fixtures = join(root, 'test', 'fixtures', 'typings');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

interface Diagnostic {
  file: string;
  line: number;
  code: string;
}

/** The `// error TSxxxx` marks of a fixture file. */
function expectedErrors(dir: string, file: string): Diagnostic[] {
  return readFileSync(join(dir, file), 'utf8')
    .split('\n')
    .flatMap((text, i) => {
      const m = /\/\/ error (TS\d+)\s*$/.exec(text);
      return m ? [{ file, line: i + 1, code: m[1] }] : [];
    });
}

describe('typings: ESM and CommonJS consumers compile with tsc', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fused-optim-typings-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function project(name: 'esm' | 'cjs'): string {
    const at = join(dir, name);
    if (!existsSync(at)) {
      cpSync(join(fixtures, name), at, { recursive: true });
      mkdirSync(join(at, 'node_modules'));
      symlinkSync(root, join(at, 'node_modules', 'fused-optim'), 'dir');
    }
    return at;
  }

  function compile(at: string, tsconfig: string): { status: number | null; diagnostics: Diagnostic[]; output: string } {
    const r = spawnSync(process.execPath, [tsc, '-p', tsconfig, '--pretty', 'false'], {
      cwd: at,
      encoding: 'utf8',
      timeout: 120_000,
    });
    const output = `${r.stdout}${r.stderr}`;
    const diagnostics = [...output.matchAll(/^(.+?)\((\d+),\d+\): error (TS\d+):/gm)].map((m) => ({
      file: m[1],
      line: Number(m[2]),
      code: m[3],
    }));
    return { status: r.status, diagnostics, output };
  }

  const cases = [
    {
      name: 'ESM (type: module, module nodenext: the "import" types, dist/esm/index.d.mts)',
      project: 'esm',
      tsconfig: 'tsconfig.json',
    },
    {
      name: 'CommonJS (module node16: the "require" types, dist/cjs/index.d.ts)',
      project: 'cjs',
      tsconfig: 'tsconfig.json',
    },
    {
      name: 'CommonJS, legacy resolution (moduleResolution node10: the "types" field)',
      project: 'cjs',
      tsconfig: 'tsconfig.node10.json',
    },
  ] as const;

  for (const c of cases) {
    it(`${c.name}: ok.ts compiles clean and bad.ts's deliberate errors are reported`, () => {
      expect(existsSync(join(root, 'dist', 'esm', 'index.d.mts')), 'dist/ is missing: run `npm run build:ts`').toBe(
        true,
      );
      const at = project(c.project);
      const r = compile(at, c.tsconfig);
      const expected = expectedErrors(at, 'bad.ts');
      expect(expected.length).toBeGreaterThan(0);
      // Exactly the marked errors: none in ok.ts or in the package's declarations.
      expect(r.diagnostics, r.output).toEqual(expected);
      expect(r.status).toBe(2);
    }, 120_000);
  }
});

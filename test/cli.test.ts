// The `fused-optim` command (bin/fused-optim.js -> dist/cjs/cli/main.js): help and exit
// codes, info, plot-lr, demo and bench run as a user would run them, plus unit tests of
// the option parser and the SVG plotter (src/cli/).
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transformerLrFactor } from '../src/schedulers/transformer_lr';
import { UsageError, parseOptions } from '../src/cli/args';
import { SCHEDULES, scheduleCurve } from '../src/cli/plot_lr';
import { downsample, formatTick, formatTicks, logTicks, niceTicks, renderSvg } from '../src/cli/svg_plot';

const root = join(__dirname, '..');
const bin = join(root, 'bin', 'fused-optim.js');
const tmp = mkdtempSync(join(tmpdir(), 'fused-optim-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function cli(
  args: string[],
  { cwd = tmp, env = {}, script = bin }: { cwd?: string; env?: Record<string, string>; script?: string } = {},
) {
  const r = spawnSync(process.execPath, [script, ...args], {
    cwd,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every element opened is closed, in order (a well-formedness check without an XML parser). */
function expectWellFormedSvg(svg: string): void {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)\b[^>]*?(\/?)>/g)) {
    if (m[3]) continue; // self-closing
    if (m[1]) expect(stack.pop()).toBe(m[2]);
    else stack.push(m[2]);
  }
  expect(stack).toEqual([]);
  expect(svg).not.toMatch(/NaN|Infinity|undefined/);
}

beforeAll(() => {
  expect(existsSync(join(root, 'dist', 'cjs', 'cli', 'main.js')), 'dist/ is missing: run `npm run build:ts`').toBe(
    true,
  );
});

describe('fused-optim: help and exit codes', () => {
  it('help prints the commands and exits 0', () => {
    const r = cli(['help']);
    expect(r.status).toBe(0);
    for (const c of ['info', 'demo', 'bench', 'plot-lr']) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    expect(r.stdout).toMatch(/Exit codes: 0 done,\s+1 runtime error, 2 usage error/);
    expect(cli(['--help']).stdout).toBe(r.stdout);
  });

  it('no command prints the help on stderr and exits 2; an unknown command exits 2 with a hint', () => {
    const none = cli([]);
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/usage: fused-optim <command>/);
    const bad = cli(['plot']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/unknown command "plot" \(did you mean plot-lr\?\)/);
  });

  it('--version prints the package version', () => {
    const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
    expect(cli(['--version']).stdout.trim()).toBe(version);
  });

  it('each command has --help (exit 0), and `help <command>` prints the same', () => {
    for (const c of ['info', 'demo', 'plot-lr', 'bench']) {
      const r = cli([c, '--help']);
      expect(r.status, c).toBe(0);
      expect(r.stdout, c).toMatch(new RegExp(`^usage: fused-optim ${c}`));
      if (c !== 'bench') expect(cli(['help', c]).stdout).toBe(r.stdout);
    }
    expect(cli(['help', 'nope']).status).toBe(2);
  });

  it('a bad option is a usage error (exit 2) naming the option, before any work', () => {
    const cases: Array<[string[], RegExp]> = [
      [['info', '--verbose'], /unknown option "--verbose"/],
      [['demo', '--steps', 'ten'], /--steps must be an integer, got "ten"/],
      [['demo', '--steps', '1e3'], /--steps must be an integer/],
      [['demo', '--steps', '5'], /--steps must be >= 10, got 5/],
      [['demo', '--optimizer', 'rmsprop'], /--optimizer must be one of adamw, adamwdl, lion, sgd, got "rmsprop"/],
      [['demo', '--dtype', 'float64'], /--dtype must be one of float32, float16, bfloat16/],
      [['demo', '--device', 'tpu'], /--device must be one of cpu, cuda/],
      [['demo', '--lr', '0'], /--lr must be > 0, got 0/],
      [['demo', '--out'], /--out needs a value/],
      [['demo', '--step', '10'], /unknown option "--step" \(did you mean --steps\?\)/],
      [['demo', 'now'], /unexpected argument "now"/],
      [['plot-lr'], /which schedule\? one of transformer, linear-warmup/],
      [['plot-lr', 'exponential'], /unknown schedule "exponential"/],
      [
        ['plot-lr', 'linear', '--d-model', '512'],
        /--d-model does not apply to linear \(its options: --start-factor, --end-factor, --total-iters\)/,
      ],
      [
        ['plot-lr', 'linear-warmup', '--warmup-steps', '100', '--total-steps', '10'],
        /totalSteps \(10\) must be >= options.warmupSteps \(100\)/,
      ],
      [['plot-lr', 'transformer', '--d-model', '0'], /--d-model must be >= 1, got 0/],
      [['plot-lr', 'transformer', '--steps', '10', '--steps', '20'], /--steps was given twice/],
    ];
    for (const [args, message] of cases) {
      const r = cli(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr).toMatch(/Run `fused-optim \S+ --help` for the options/);
      expect(r.stdout).toBe('');
    }
  });
});

describe('fused-optim info', () => {
  it('--json reports the backend, the device and what the binary was built with', () => {
    const r = cli(['info', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(['cpu', 'cuda']).toContain(info.backend);
    expect(typeof info.cudaCompiled).toBe('boolean');
    expect(info.threads).toBeGreaterThan(0);
    expect(existsSync(info.binary)).toBe(true);
    expect(['prebuilt', 'local build']).toContain(info.binaryKind);
    if (info.backend === 'cuda') expect(info.computeCapability).toMatch(/^\d+\.\d+$/);
    else if (info.cudaCompiled) expect(info.cudaError).toBeTruthy();
  });

  it('prints a readable summary; FUSED_OPTIM_DEVICE=cpu forces the CPU backend', () => {
    const r = cli(['info'], { env: { FUSED_OPTIM_DEVICE: 'cpu' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^backend: +cpu$/m);
    for (const row of ['fused-optim', 'device', 'GPU', 'binary', 'built with', 'CPU threads'])
      expect(r.stdout).toMatch(new RegExp(`^${row}: `, 'm'));
  });

  it('a bad FUSED_OPTIM_DEVICE is a runtime error (exit 1) with the reason', () => {
    const r = cli(['info'], { env: { FUSED_OPTIM_DEVICE: 'tpu' } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/fused-optim info: error: FUSED_OPTIM_DEVICE must be 'cpu' or 'cuda'/);
  });
});

describe('fused-optim plot-lr', () => {
  it('plots the Transformer schedule from the real scheduler: peak (dModel * warmup)^-0.5 at the warmup step', () => {
    const r = cli([
      'plot-lr',
      'transformer',
      '--d-model',
      '512',
      '--warmup-steps',
      '4000',
      '--steps',
      '20000',
      '-o',
      'lr.svg',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`peak ${(1 / Math.sqrt(512 * 4000)).toExponential(3)} at step 4000`);
    expect(r.stdout).toContain(`wrote ${join(tmp, 'lr.svg')}`);
    const svg = readFileSync(join(tmp, 'lr.svg'), 'utf8');
    expectWellFormedSvg(svg);
    expect(svg).toContain('TransformerLR(dModel 512, warmupSteps 4000, factor 1)');
    // 20,000 steps are drawn from at most ~1,600 points.
    const points = (svg.match(/<path d="([^"]+)" stroke="#d62728"/)?.[1].match(/[ML]/g) ?? []).length;
    expect(points).toBeGreaterThan(500);
    expect(points).toBeLessThan(2000);
    expect(svg.length).toBeLessThan(100_000);
  });

  it('the curve is exactly what the scheduler gives: base lr * the Transformer factor at each step', () => {
    const o = { 'd-model': 64, 'warmup-steps': 10, factor: 2, lr: 0.5 };
    const lrs = scheduleCurve(SCHEDULES.transformer, o, 50);
    lrs.forEach((lr, s) => expect(lr).toBe(0.5 * transformerLrFactor(s, { dModel: 64, warmupSteps: 10, factor: 2 })));
  });

  it('plots every built-in schedule with its defaults, and log scale', () => {
    for (const name of Object.keys(SCHEDULES)) {
      const r = cli(['plot-lr', name, '--steps', '300', '--log', '-o', `${name}.svg`]);
      expect(r.status, `${name}: ${r.stderr}`).toBe(0);
      const svg = readFileSync(join(tmp, `${name}.svg`), 'utf8');
      expectWellFormedSvg(svg);
      expect(svg).toContain('(log scale)');
    }
  });

  it('-o - writes the SVG to stdout; an unwritable path is a runtime error (exit 1)', () => {
    const r = cli(['plot-lr', 'cosine-annealing', '--t-max', '50', '-o', '-']);
    expect(r.status).toBe(0);
    expectWellFormedSvg(r.stdout);
    const bad = cli(['plot-lr', 'constant-warmup', '-o', join(tmp, 'no', 'such', 'dir', 'x.svg')]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toBe(
      `fused-optim plot-lr: error: --out ${join(tmp, 'no', 'such', 'dir', 'x.svg')}: cannot write there (the directory ${join(tmp, 'no', 'such', 'dir')} does not exist)\n`,
    );
  });

  it('--steps 1 is a usage error (a curve needs two points); the x axis ends at the last step', () => {
    const one = cli(['plot-lr', 'linear', '--steps', '1', '-o', '-']);
    expect(one.status).toBe(2);
    expect(one.stderr).toMatch(/--steps must be >= 2, got 1/);
    const r = cli(['plot-lr', 'linear', '-o', '-']); // 10 steps: 0 .. 9
    expect(r.status).toBe(0);
    const xLabels = [...r.stdout.matchAll(/text-anchor="middle">([^<]*)<\/text>/g)].map((m) => m[1]);
    expect(xLabels.filter((l) => /^\d+$/.test(l)).map(Number)).toEqual([0, 2, 4, 6, 8]);
  });

  it('the summary gives the minimum as well as the peak and the last value', () => {
    const out = join(tmp, 'cos.svg');
    const r = cli(['plot-lr', 'cosine-annealing', '--t-max', '10', '--steps', '30', '-o', out]);
    expect(r.status, r.stderr).toBe(0);
    // A cosine from 0.001 to 0 over 10 steps and back: the minimum at step 10, the peak at step 0 and 20.
    expect(r.stdout).toMatch(/peak 1\.000e-3 at step (0|20), minimum 0 at step 10, [\d.e-]+ at step 29/);
  });
});

describe('fused-optim demo', () => {
  it('trains, checkpoints halfway, resumes seamlessly in fresh objects and writes the plot', () => {
    const out = join(tmp, 'demo.svg');
    const r = cli(['demo', '--steps', '60', '--out', out]);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(
      /^optimizer: AdamW, .*weight decay 0\.01 on L0\.fc\.weight, L1\.fc\.weight; weight decay 0 on L0\.fc\.bias, L1\.fc\.bias/m,
    );
    expect(r.stdout).toMatch(/^schedule: +TransformerLR\(dModel 64, warmupSteps 6, /m);
    expect(r.stdout).toMatch(/^checkpoint: step 30 saved with /m);
    expect(r.stdout).toMatch(
      /after loading the checkpoint: train loss [\d.]+ \(identical to step 30\), lr [\d.e-]+ \(identical\)/,
    );
    expect(r.stdout).toMatch(
      /^resume: +seamless: steps 31-35 of the resumed run have the same losses and lrs, bit for bit/m,
    );
    const m = /train loss ([\d.]+) -> ([\d.]+)/.exec(r.stdout);
    expect(Number(m?.[2])).toBeLessThan(Number(m?.[1]) / 2);
    expect(r.stdout).toContain(`plot:      ${out}`);
    // Not a terminal: plain progress lines on stderr, with step, loss and lr.
    expect(r.stderr).toMatch(/^phase 1 step +\d+\/60 +loss [\d.]+ +lr [\d.]+e-\d+/m);
    expect(r.stderr).toMatch(/^phase 2 step +60\/60 /m);
    const svg = readFileSync(out, 'utf8');
    expectWellFormedSvg(svg);
    for (const s of [
      'minibatch loss',
      'loss (EMA 0.9)',
      'lr (right axis)',
      'checkpoint (step 30) / resume',
      'training loss (MSE) (log scale)',
    ])
      expect(svg).toContain(s);
  });

  it('runs Lion, AdamWDL and SGD, in half precision, resuming seamlessly', () => {
    for (const args of [
      ['--optimizer', 'lion', '--dtype', 'bfloat16'],
      ['--optimizer', 'adamwdl', '--dtype', 'float16'],
      ['--optimizer', 'sgd', '--dtype', 'bfloat16'],
    ]) {
      const r = cli(['demo', ...args, '--steps', '40', '--no-progress', '--out', join(tmp, 'd.svg')]);
      expect(r.status, r.stderr + r.stdout).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^resume: +seamless/m);
      if (args[1] === 'lion') expect(r.stdout).toMatch(/^optimizer: Lion, betas \[0\.9, 0\.99\], peak lr 0\.003/m);
      else if (args[1] === 'sgd') expect(r.stdout).toMatch(/^optimizer: SGD, momentum 0\.9, nesterov, peak lr 0\.05/m);
      else expect(r.stdout).toMatch(/lr ratios \(layer-wise decay\): L0\.fc\.weight x0\.64, L1\.fc\.weight x0\.8/);
    }
  });

  it('with saveCheckpoint in the package, --checkpoint FILE keeps the checkpoint file', () => {
    const lib = createRequire(join(root, 'package.json'))('./dist/cjs/index.js') as Record<string, unknown>;
    const file = join(tmp, 'kept.ckpt');
    const r = cli(['demo', '--steps', '20', '--no-progress', '--out', join(tmp, 'k.svg'), '--checkpoint', file]);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    if (typeof lib.saveCheckpoint === 'function') {
      expect(r.stdout).toContain(
        `checkpoint: step 10 saved with saveCheckpoint/loadCheckpoint (a checkpoint file) to ${file}\n`,
      );
      expect(existsSync(file)).toBe(true);
    } else {
      expect(r.stdout).toMatch(
        /^checkpoint: step 10 saved with stateDict\(\)\/loadStateDict\(\) in memory \(this build of fused-optim has no saveCheckpoint/m,
      );
    }
    expect(r.stdout).toMatch(/^resume: +seamless/m);
  });

  it('the in-memory checkpoint fallback also resumes seamlessly', () => {
    const r = cli(['demo', '--steps', '20', '--no-progress', '--out', join(tmp, 'm.svg')], {
      env: { FUSED_OPTIM_DEMO_MEMORY_CHECKPOINT: '1' },
    });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(
      /^checkpoint: step 10 saved with stateDict\(\)\/loadStateDict\(\) in memory \(FUSED_OPTIM_DEMO_MEMORY_CHECKPOINT=1\)/m,
    );
    expect(r.stdout).toMatch(/^resume: +seamless/m);
  });

  it('--device cuda without a usable GPU is a runtime error (exit 1) saying why', () => {
    const info = JSON.parse(cli(['info', '--json']).stdout);
    if (info.computeCapability !== undefined) return; // a GPU is usable here: nothing to refuse
    const r = cli(['demo', '--device', 'cuda', '--steps', '10']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/fused-optim demo: error: --device cuda: CUDA is not usable here \(.+\)/);
  });

  it('an --out or --checkpoint that cannot be written is one line and exit 1, before any training', () => {
    const missing = join(tmp, 'no-such-dir');
    for (const args of [
      ['--out', join(missing, 'd.svg')],
      ['--out', tmp],
      ['--checkpoint', join(missing, 'c.ckpt'), '--out', join(tmp, 'ok.svg')],
    ]) {
      const r = cli(['demo', '--steps', '10', '--no-progress', ...args]);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stdout).toBe(''); // nothing ran
      expect(r.stderr).toMatch(new RegExp(`^fused-optim demo: error: ${args[0]} .*: cannot write there \\(.+\\)\n$`));
    }
  });

  it('npm run demo (examples/demo.mjs) runs the same demo', () => {
    const r = cli(['--steps', '20', '--no-progress', '--out', join(tmp, 'e.svg')], {
      script: join(root, 'examples', 'demo.mjs'),
    });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/^fused-optim demo$/m);
    expect(existsSync(join(tmp, 'e.svg'))).toBe(true);
    const bad = cli(['--steps', 'x'], { script: join(root, 'examples', 'demo.mjs') });
    expect(bad.status).toBe(2);
  });
});

describe('fused-optim bench', () => {
  // A copy of the package's JavaScript (no native code needed) with or without bench/run.mjs.
  function packageCopy(name: string, withBench: boolean): string {
    const dir = join(tmp, name);
    mkdirSync(dir);
    for (const f of ['package.json', 'bin', 'dist']) cpSync(join(root, f), join(dir, f), { recursive: true });
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
    if (withBench) {
      mkdirSync(join(dir, 'bench'));
      writeFileSync(
        join(dir, 'bench', 'run.mjs'),
        'console.log(JSON.stringify(process.argv.slice(2))); process.exit(3);\n',
      );
    }
    return dir;
  }

  it('runs bench/run.mjs with the remaining arguments and passes its exit code on', () => {
    const dir = packageCopy('with-bench', true);
    const r = cli(['bench', '--quick', '--json', 'out.json'], { script: join(dir, 'bin', 'fused-optim.js') });
    expect(r.stdout.trim()).toBe(JSON.stringify(['--quick', '--json', 'out.json']));
    expect(r.status).toBe(3);
  });

  it('checks the device, --out and --filter before running: one line each, exit 1 or 2', () => {
    const info = JSON.parse(cli(['info', '--json']).stdout);
    if (info.computeCapability === undefined) {
      const r = cli(['bench', '--device', 'cuda', '--quick']);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/^bench: --device cuda: .*CUDA is not usable.*\n$/);
    }
    const out = cli(['bench', '--quick', '--out', join(tmp, 'no-such-dir', 'r.json')]);
    expect(out.status).toBe(1);
    expect(out.stderr).toMatch(/^bench: --out .*r\.json: cannot write there \(the directory .* does not exist\)\n$/);
    const none = cli(['bench', '--quick', '--filter', 'no-such-case']);
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/^bench: --filter no-such-case matches no run\. .*cases one-big, .*many-params\/10k/);
  });

  it('without bench/run.mjs in the package: a clear error, exit 1', () => {
    const dir = packageCopy('without-bench', false);
    const r = cli(['bench'], { script: join(dir, 'bin', 'fused-optim.js') });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /fused-optim bench: error: the benchmark suite is not in this copy of fused-optim \(no .*bench\/run\.mjs\)/,
    );
  });
});

describe('option parser (src/cli/args.ts)', () => {
  const specs = {
    steps: { type: 'int', min: 1, default: 5, help: '' },
    lr: { type: 'number', min: 0, minExclusive: true, help: '' },
    'eta-min': { type: 'number', min: -10, help: '' },
    out: { type: 'string', alias: 'o', help: '' },
    mode: { type: 'choice', choices: ['a', 'b'], help: '' },
    log: { type: 'flag', help: '' },
  } as const;

  it('reads --name value, --name=value, -o value, flags and positionals, and fills defaults', () => {
    const { options, positional } = parseOptions(
      ['x', '--lr=0.5', '-o', 'f.svg', '--log', '--eta-min', '-2', 'y', '--mode', 'b'],
      specs,
    );
    expect(options).toEqual({ lr: 0.5, out: 'f.svg', log: true, 'eta-min': -2, mode: 'b', steps: 5 });
    expect(positional).toEqual(['x', 'y']);
    expect(parseOptions(['--', '--log'], specs).positional).toEqual(['--log']);
  });

  it('rejects bad values with UsageError', () => {
    for (const argv of [
      ['--steps', '0'],
      ['--steps', '2.5'],
      ['--lr', ''],
      ['--lr', 'NaN'],
      ['--mode', 'c'],
      ['--log=1'],
      ['--out', '--log'],
      ['-x'],
    ]) {
      expect(() => parseOptions(argv, specs), argv.join(' ')).toThrow(UsageError);
    }
  });
});

describe('SVG plot (src/cli/svg_plot.ts)', () => {
  it('picks round ticks and short labels', () => {
    expect(niceTicks(0, 20000)).toEqual([0, 5000, 10000, 15000, 20000]);
    expect(niceTicks(0, 0.01, 5)).toEqual([0, 0.002, 0.004, 0.006, 0.008, 0.01]);
    expect(logTicks(0.001, 10)).toEqual([0.001, 0.01, 0.1, 1, 10]);
    expect(logTicks(0.02, 0.9)).toEqual([0.02, 0.05, 0.1, 0.2, 0.5]);
    expect([0, 0.5, 0.001, 2.5e-4, 20000, 1.5e6].map(formatTick)).toEqual([
      '0',
      '0.5',
      '0.001',
      '2.5e-4',
      '20k',
      '1.5e6',
    ]);
  });

  it('labels one axis in one notation', () => {
    expect(formatTicks([0, 2e-4, 4e-4, 6e-4, 8e-4, 0.001])).toEqual(['0', '2e-4', '4e-4', '6e-4', '8e-4', '1e-3']);
    expect(formatTicks([0, 0.2, 0.4, 0.6])).toEqual(['0', '0.2', '0.4', '0.6']);
    expect(formatTicks([0, 5000, 10000, 15000, 20000])).toEqual(['0', '5k', '10k', '15k', '20k']);
    expect(formatTicks([0, 2, 4, 6, 8])).toEqual(['0', '2', '4', '6', '8']);
  });

  it('downsamples long series but keeps each bucket’s extremes', () => {
    const x = Array.from({ length: 100_000 }, (_, i) => i);
    const y = x.map((i) => (i === 54_321 ? 100 : Math.sin(i / 1000)));
    const pts = downsample(x, y, 500);
    expect(pts.length).toBeLessThanOrEqual(1001);
    expect(pts).toContainEqual([54_321, 100]);
    expect(pts[pts.length - 1][0]).toBe(99_999);
  });

  it('renders two axes, a legend, markers, and escapes text', () => {
    const svg = renderSvg({
      title: 'loss <&> "lr"',
      left: { label: 'loss', log: true },
      right: { label: 'lr' },
      series: [
        { label: 'loss', x: [1, 2, 3, 4], y: [1, 0.5, 0, 0.1] }, // 0 is a gap on a log axis
        { label: 'lr', x: [1, 2, 3, 4], y: [0, 1e-3, 2e-3, 1e-3], axis: 'right' },
      ],
      markers: [{ x: 2.5, label: 'resume' }],
    });
    expectWellFormedSvg(svg);
    expect(svg).toContain('loss &lt;&amp;&gt; &quot;lr&quot;');
    expect(svg).toContain('loss (left axis)');
    expect(svg).toContain('lr (right axis)');
    expect(svg).toContain('>resume</text>');
    const lossPath = svg.match(/<path d="([^"]+)" stroke="#1f77b4"/)?.[1] ?? '';
    expect(lossPath.match(/M/g)).toHaveLength(2); // broken at the 0
  });
});

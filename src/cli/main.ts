// The `fused-optim` command (bin/fused-optim.js runs main()).
//
// Exit codes: 0 done, 1 a runtime error (the addon cannot load, no usable GPU for
// --device cuda, a file cannot be written, ...), 2 a usage error (unknown command or
// option, a bad option value). Options are checked before anything heavy is loaded.
import { UsageError } from './args';
import { BENCH_USAGE, runBench } from './bench';
import { packageRoot } from './package_root';

interface Command {
  summary: string;
  usage(): string;
  run(argv: readonly string[]): number | Promise<number>;
}

// Each command's module is loaded only when it runs, so `fused-optim help` and usage
// errors work even where the native addon cannot load.
const COMMANDS: Record<string, Command> = {
  info: {
    summary: 'the backend in use, the GPU (name, compute capability) and what the binary was built with',
    usage: () => (require('./info') as typeof import('./info')).INFO_USAGE,
    run: (argv) => (require('./info') as typeof import('./info')).runInfo(argv),
  },
  demo: {
    summary:
      'train a small MLP end to end (AdamW/AdamWDL/Lion/SGD, warmup schedule, checkpoint and resume) and plot it',
    usage: () => (require('./demo') as typeof import('./demo')).DEMO_USAGE,
    run: (argv) => (require('./demo') as typeof import('./demo')).runDemo(argv),
  },
  bench: {
    summary: 'run the benchmark suite (bench/run.mjs), passing the arguments on',
    usage: () => BENCH_USAGE,
    run: (argv) => runBench(argv),
  },
  'plot-lr': {
    summary: 'an SVG of a built-in learning-rate schedule (transformer, linear-warmup, cosine-warmup, ...)',
    usage: () => (require('./plot_lr') as typeof import('./plot_lr')).PLOT_LR_USAGE,
    run: (argv) => (require('./plot_lr') as typeof import('./plot_lr')).runPlotLr(argv),
  },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 2;
  return `usage: fused-optim <command> [options]

Fused AdamW, AdamWDL, Lion and SGD optimizers for Node.js (CUDA kernels on NVIDIA GPUs, SIMD
loops on the CPU).

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`)
  .join('\n')}
  ${'help'.padEnd(width)}this text, or \`fused-optim help <command>\` for a command's options

Run \`fused-optim <command> --help\` for a command's options. Exit codes: 0 done,
1 runtime error, 2 usage error.`;
}

function suggest(word: string): string {
  const names = [...Object.keys(COMMANDS), 'help'];
  const close = names.find((n) => n.startsWith(word.slice(0, 3)) || word.startsWith(n));
  return close ? ` (did you mean ${close}?)` : '';
}

/** Runs the command line `argv` (without node and the script) and returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(`${usage()}\n`);
    return 2;
  }
  if (name === 'help' || name === '--help' || name === '-h') {
    if (rest.length === 0) {
      process.stdout.write(`${usage()}\n`);
      return 0;
    }
    const cmd = COMMANDS[rest[0]];
    if (!cmd) {
      process.stderr.write(
        `fused-optim: unknown command ${JSON.stringify(rest[0])}${suggest(rest[0])}\n\n${usage()}\n`,
      );
      return 2;
    }
    process.stdout.write(`${cmd.usage()}\n`);
    return 0;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`${packageRoot().manifest.version}\n`);
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(
      `fused-optim: unknown command ${JSON.stringify(name)}${suggest(name)}\nRun \`fused-optim help\` for the commands.\n`,
    );
    return 2;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      const first = cmd.usage().split('\n')[0];
      process.stderr.write(
        `fused-optim ${name}: ${e.message}\n${first}\nRun \`fused-optim ${name} --help\` for the options.\n`,
      );
      return 2;
    }
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`fused-optim ${name}: error: ${message}\n`);
    if (process.env.FUSED_OPTIM_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

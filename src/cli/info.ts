// `fused-optim info`: the backend this process would use, the GPU, and what the loaded
// binary was built with.
import { relative } from 'node:path';
import nodeGypBuild from 'node-gyp-build';
import { backendInfo } from '../backend';
import { native } from '../native';
import { type OptionSpecs, UsageError, describeOptions, parseOptions } from './args';
import { packageRoot } from './package_root';

export const INFO_OPTIONS: OptionSpecs = {
  json: { type: 'flag', help: 'print one JSON object instead of text' },
  help: { type: 'flag', alias: 'h', help: 'show this help' },
};

export const INFO_USAGE = `usage: fused-optim info [--json]

Shows the backend fused-optim uses in this process (the GPU when one is usable, the CPU
otherwise; FUSED_OPTIM_DEVICE=cpu|cuda forces one), the GPU's name and compute capability,
and what the loaded binary was built with.

options:
${describeOptions(INFO_OPTIONS)}`;

/** 12080 -> "12.8" (CUDA's version encoding: 1000 * major + 10 * minor). */
export function cudaVersion(v: number | undefined): string | undefined {
  if (!v) return undefined;
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

export function runInfo(argv: readonly string[]): number {
  const { options, positional } = parseOptions(argv, INFO_OPTIONS);
  if (options.help) {
    process.stdout.write(`${INFO_USAGE}\n`);
    return 0;
  }
  if (positional.length) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`);

  const { root, manifest } = packageRoot();
  const info = backendInfo();
  const n = native().nativeInfo();
  const binaryPath = (nodeGypBuild as unknown as { path(dir: string): string }).path(root);
  const binaryKind = /[\\/]prebuilds[\\/]/.test(binaryPath) ? 'prebuilt' : 'local build';
  const report = {
    version: manifest.version,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    ...info,
    cudaUsable: n.cudaUsable,
    cudaDeviceCount: n.cudaDeviceCount,
    binary: binaryPath,
    binaryKind,
  };
  if (options.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }

  const rows: Array<[string, string]> = [
    ['fused-optim', `${manifest.version} (node ${process.version}, ${report.platform})`],
    ['backend', info.backend],
    ['device', info.device],
  ];
  if (n.cudaEmulated && n.cudaUsable) {
    rows.push([
      'GPU',
      'none: a test build whose CUDA backend is the CUDA host emulator (tools/cuda-emu), which runs ' +
        'the CUDA sources on the CPU; never use it for training',
    ]);
    if (info.backend !== 'cuda') rows.push(['', `not used: ${info.cudaError}`]);
  } else if (n.cudaUsable) {
    rows.push([
      'GPU',
      `${n.cudaDeviceName}, compute capability ${n.cudaComputeCapability}` +
        `${n.cudaDeviceCount > 1 ? ` (device 0 of ${n.cudaDeviceCount})` : ''}, driver supports CUDA ${cudaVersion(n.cudaDriverVersion) ?? '?'}`,
    ]);
    if (info.backend !== 'cuda') rows.push(['', `not used: ${info.cudaError}`]);
  } else {
    rows.push([
      'GPU',
      info.cudaCompiled ? `none usable: ${n.cudaError}` : 'not supported by this binary (built without CUDA)',
    ]);
  }
  rows.push([
    'binary',
    `${relative(process.cwd(), binaryPath).startsWith('..') ? binaryPath : relative(process.cwd(), binaryPath)} (${binaryKind})`,
  ]);
  rows.push([
    'built with',
    n.cudaEmulated
      ? 'the CUDA sources compiled as host C++ against the CUDA host emulator (FUSED_OPTIM_CUDA=EMULATE); CPU backend'
      : info.cudaCompiled
        ? `CUDA ${cudaVersion(info.cudaRuntimeVersion) ?? '?'} runtime (linked statically: needs only the NVIDIA driver), GPU code ${info.cudaArchs}; CPU backend`
        : 'CPU backend only (no CUDA compiler at build time)',
  ]);
  rows.push([
    'CPU threads',
    `${n.threads}${process.env.FUSED_OPTIM_THREADS ? ' (FUSED_OPTIM_THREADS)' : ' (set FUSED_OPTIM_THREADS to change)'}`,
  ]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  for (const [k, v] of rows) process.stdout.write(`${(k ? `${k}:` : '').padEnd(width)}${v}\n`);
  return 0;
}

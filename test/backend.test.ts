// Backend selection: backendInfo() and FUSED_OPTIM_DEVICE.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { backendInfo } from '../src/index';
import { native } from '../src/native';
import { runNode } from './support/node_child';

const dist = JSON.stringify(join(__dirname, '..', 'dist', 'cjs', 'index.js'));

describe('backendInfo', () => {
  it('reports the backend, device, thread count and what was compiled', () => {
    const info = backendInfo();
    expect(['cpu', 'cuda']).toContain(info.backend);
    expect(typeof info.device).toBe('string');
    expect(info.device.length).toBeGreaterThan(0);
    expect(typeof info.cudaCompiled).toBe('boolean');
    expect(Number.isInteger(info.threads) && info.threads >= 1).toBe(true);
    if (info.backend === 'cpu') expect(info.cudaError).toMatch(/\S/);
    const emulatedBuild = native().nativeInfo().cudaEmulated;
    if (info.cudaCompiled) expect(info.cudaArchs).toContain(emulatedBuild ? 'emulated' : 'sm_90');
    expect(info.emulated).toBe(info.backend === 'cuda' && emulatedBuild);
    if (info.emulated) expect(info.device).toMatch(/host emulator/);
  });

  it('FUSED_OPTIM_DEVICE=cpu forces the CPU backend', () => {
    const r = runNode(`console.log(JSON.stringify(require(${dist}).backendInfo()))`, {
      env: { FUSED_OPTIM_DEVICE: 'cpu' },
    });
    expect(r.stderr).toBe('');
    const info = JSON.parse(r.stdout);
    expect(info.backend).toBe('cpu');
    expect(info.device).toMatch(/^cpu/);
  });

  it('FUSED_OPTIM_DEVICE=cuda without a usable GPU throws and names the reason', () => {
    const info = backendInfo();
    if (info.backend === 'cuda') return; // a GPU is usable here: the forced choice is valid
    const r = runNode(`require(${dist}).backendInfo()`, { env: { FUSED_OPTIM_DEVICE: 'cuda' } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/FUSED_OPTIM_DEVICE=cuda but CUDA is not usable: /);
    // The reason is the probe's: no driver, no device, architecture not compiled, or not built with CUDA.
    expect(r.stderr).toMatch(/driver|no CUDA device|not compiled|without CUDA/i);
  });

  it('an unknown FUSED_OPTIM_DEVICE is rejected', () => {
    const r = runNode(`require(${dist}).backendInfo()`, { env: { FUSED_OPTIM_DEVICE: 'tpu' } });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/FUSED_OPTIM_DEVICE must be 'cpu' or 'cuda', got "tpu"/);
  });
});

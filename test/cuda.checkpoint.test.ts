// Checkpoints of CUDA tensors against the CPU backend: the device tensors stream through the
// page-locked staging buffers (device-to-host copies of one chunk overlapping the CRC and write
// of the other, host-to-device copies of one overlapping the read of the next), so with a 1 MiB
// budget every large tensor spans several chunks and small ones share them. The backends are
// bit-exact, so a CUDA model's checkpoint is byte for byte the CPU model's, and loading it on
// either device gives the same state. On the emulator (docs/cuda-emulator.md) copies run only
// at synchronization points, so a copy waited for too late shows as wrong bytes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AdamW, type DType, Lion, Parameter, Tensor, loadCheckpoint, saveCheckpoint } from '../src/index';
import { native } from '../src/native';
import { tempDir } from './support/checkpoint_files';
import { randn, rng } from './support/random';

const probe = native().nativeInfo();
const reason = probe.cudaUsable ? '' : ` (skipped: ${probe.cudaError})`;
if (!probe.cudaUsable) console.warn(`CUDA checkpoint tests skipped: no usable GPU: ${probe.cudaError}`);

const { dir, cleanup } = tempDir('fused-optim-cuda-ckpt-');
afterAll(cleanup);
const MiB = 2 ** 20;
// Unaligned sizes: 300007 fp32 elements span three 512 KiB chunks; the rest share one.
const SIZES = [300007, 1, 3, 4099, 65537];

function model(kind: 'AdamW' | 'Lion', dtype: DType, device: 'cpu' | 'cuda', seed: number) {
  const next = rng(seed);
  const params = SIZES.map(
    (n, i) => new Parameter(Tensor.from(randn(n, next), { dtype, device }), { name: `layer${i}.weight` }),
  );
  const opt = kind === 'AdamW' ? new AdamW(params, { lr: 1e-2, amsgrad: true }) : new Lion(params, { lr: 1e-3 });
  const grads = SIZES.map((n) => randn(n, rng(1000 + n)));
  const train = (steps: number) => {
    for (let s = 0; s < steps; s++) {
      params.forEach(
        (p, i) =>
          (p.grad = Tensor.from(
            grads[i].map((g) => g * (s + 1)),
            { dtype, device },
          )),
      );
      opt.step();
    }
  };
  const bytes = () => {
    const sd = opt.stateDict();
    const arrays = [
      ...params.map((p) => (dtype === 'float32' ? p.data.toFloat32Array() : p.data.toBits())),
      ...Object.values(sd.state).flatMap((st) => Object.values(st as object).filter((v) => ArrayBuffer.isView(v))),
    ] as ArrayBufferView[];
    return Buffer.concat(arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
  };
  return { params, opt, train, bytes };
}

describe.skipIf(!probe.cudaUsable)(`CUDA checkpoints equal CPU checkpoints byte for byte${reason}`, () => {
  for (const [kind, dtype] of [
    ['AdamW', 'float32'],
    ['AdamW', 'bfloat16'],
    ['Lion', 'float16'],
  ] as const) {
    it(`${kind}, ${dtype}: save, load into fresh and into stepped optimizers, resume; 1 MiB of staging`, async () => {
      const cpu = model(kind, dtype, 'cpu', 1);
      const gpu = model(kind, dtype, 'cuda', 1);
      cpu.train(3);
      gpu.train(3);
      const io = { stagingBytes: MiB };
      const cpuFile = join(dir, `${kind}-${dtype}-cpu.safetensors`);
      const gpuFile = join(dir, `${kind}-${dtype}-cuda.safetensors`);
      await saveCheckpoint(cpuFile, { params: cpu.params, optimizer: cpu.opt });
      await saveCheckpoint(gpuFile, { params: gpu.params, optimizer: gpu.opt }, io);
      expect(readFileSync(gpuFile).equals(readFileSync(cpuFile))).toBe(true);
      // Params only, right after a step: nothing synchronizes the optimizer's stream, so the
      // staging copies must follow its queued work by themselves.
      cpu.train(1);
      gpu.train(1);
      const cpuParams = join(dir, `${kind}-${dtype}-cpu-params.safetensors`);
      const gpuParams = join(dir, `${kind}-${dtype}-cuda-params.safetensors`);
      await saveCheckpoint(cpuParams, { params: cpu.params });
      await saveCheckpoint(gpuParams, { params: gpu.params }, io);
      expect(readFileSync(gpuParams).equals(readFileSync(cpuParams))).toBe(true);
      await saveCheckpoint(cpuFile, { params: cpu.params, optimizer: cpu.opt });

      // Into fresh buffers (filled while the file is checked) and into existing ones (after
      // the checks), on the device.
      const fresh = model(kind, dtype, 'cuda', 2);
      await loadCheckpoint(cpuFile, { params: fresh.params, optimizer: fresh.opt }, io);
      const stepped = model(kind, dtype, 'cuda', 3);
      stepped.train(1);
      await loadCheckpoint(cpuFile, { params: stepped.params, optimizer: stepped.opt }, io);
      expect(fresh.bytes().equals(cpu.bytes())).toBe(true);
      expect(stepped.bytes().equals(cpu.bytes())).toBe(true);

      // A background save: a copy of the device tensors, written while training goes on.
      const bgFile = join(dir, `${kind}-${dtype}-bg.safetensors`);
      const { written } = await saveCheckpoint(
        bgFile,
        { params: gpu.params, optimizer: gpu.opt },
        { ...io, background: true },
      );
      gpu.train(1);
      await written;
      expect(readFileSync(bgFile).equals(readFileSync(cpuFile))).toBe(true);

      cpu.train(2);
      fresh.train(2);
      stepped.train(2);
      expect(fresh.bytes().equals(cpu.bytes())).toBe(true);
      expect(stepped.bytes().equals(cpu.bytes())).toBe(true);
    });
  }
});

// The CUDA backend's host boundary: device-pointer views checked against their allocation,
// steps that fail change nothing (or say the optimizer must be reloaded), new grads and many
// hyperparameter slots cost no host wait, memory released while a step is queued, and
// overlapping params or grads refused. Failures are injected through the CUDA host emulator
// (native().cudaEmulator), so those tests run on the emulated build only.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdamW, AdamWDL, type DType, Lion, Parameter, Tensor } from '../src/index';
import type { FusedOptimizer } from '../src/fused_optimizer';
import type { ParamGroup } from '../src/optimizer';
import { native } from '../src/native';
import { bitsOf, expectSameBits } from './support/compare';
import { randn, rng } from './support/random';

type AnyOptimizer = FusedOptimizer<ParamGroup, object, object>;
type Device = 'cpu' | 'cuda';

const probe = native().nativeInfo();
const emulator = native().cudaEmulator;
const reason = probe.cudaUsable ? '' : ` (skipped: ${probe.cudaError})`;
if (!probe.cudaUsable) console.warn(`CUDA host-boundary tests skipped: no usable CUDA device: ${probe.cudaError}`);
if (probe.cudaUsable && !emulator) console.warn('failure-injection tests skipped: they need the CUDA host emulator');

const CHUNK = 65536;
const SIZES = [1, 3, 1000, CHUNK + 3];

function bitsOfParam(p: Parameter): Uint32Array | Uint16Array {
  return p.data.dtype === 'float32' ? bitsOf(p.data.toFloat32Array()) : p.data.toBits();
}

/** Params, state and step counts as one comparable string. */
function snapshot(params: Parameter[], opt: AnyOptimizer): string {
  const sd = opt.stateDict() as { state: Record<number, Record<string, Float32Array | number>> };
  const parts = params.map((p) => Buffer.from(bitsOfParam(p).buffer).toString('base64'));
  for (const [i, s] of Object.entries(sd.state))
    for (const [k, v] of Object.entries(s))
      parts.push(`${i}.${k}=${typeof v === 'number' ? v : Buffer.from(v.buffer).toString('base64')}`);
  return parts.join('|');
}

interface Setup {
  params: Parameter[];
  opt: AnyOptimizer;
  grads: (step: number) => void;
}

/** The same AdamW setup on either device; half of the params bfloat16, so a step is two launches. */
function setup(device: Device, seed = 1): Setup {
  const next = rng(seed);
  const dtypes: DType[] = ['float32', 'bfloat16', 'float32', 'bfloat16'];
  const params = SIZES.map(
    (n, i) => new Parameter(Tensor.from(randn(n, next, 0.5), { dtype: dtypes[i], device }), { name: `w${i}` }),
  );
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 }) as unknown as AnyOptimizer;
  const grads = (step: number) => {
    const g = rng(1000 + step);
    for (const p of params) p.grad = Tensor.from(randn(p.data.numel, g, 0.05), { device });
  };
  return { params, opt, grads };
}

describe.skipIf(!probe.cudaUsable)(`CUDA host boundary${reason}`, () => {
  it('fromDevicePointer refuses a shape larger than the allocation behind the pointer', () => {
    // 112 float32 elements: 448 bytes, a whole number of the 64-byte units tensors allocate.
    const owner = Tensor.zeros([112], { device: 'cuda' });
    const ptr = owner.devicePointer;
    // Far past the allocation whatever a GPU's allocator rounds it to; exactly one element
    // past it on the emulator, whose allocations are the size asked for.
    expect(() => Tensor.fromDevicePointer(ptr + 4n, { shape: [10000] })).toThrow(
      /10000 float32 elements need 40000 bytes from ptr, but its allocation \(\d+ bytes at 0x[0-9a-f]+\) holds only \d+ from there/,
    );
    if (emulator)
      expect(() => Tensor.fromDevicePointer(ptr + 4n, { shape: [112] })).toThrow(/holds only 444 from there/);
    expect(() => Tensor.fromDevicePointer(ptr, { shape: [8, 15] })).toThrow(RangeError);
    expect(Tensor.fromDevicePointer(ptr + 4n, { shape: [111] }).numel).toBe(111);
    expect(Tensor.fromDevicePointer(ptr + 444n, { shape: [1] }).numel).toBe(1);
    expect(Tensor.fromDevicePointer(ptr, { shape: [224], dtype: 'bfloat16' }).numel).toBe(224);
  });

  it('a new grad tensor every step neither rebuilds the launch plan nor waits for the device', () => {
    const s = setup('cuda');
    s.grads(0);
    s.opt.step();
    const uploads = s.opt.planUploads;
    let syncs = 0;
    for (let step = 1; step <= 5; step++) {
      s.grads(step); // creating tensors copies to the device; only the step itself is counted
      const before = emulator?.counters().hostSyncs ?? 0;
      s.opt.step();
      syncs += (emulator?.counters().hostSyncs ?? 0) - before;
    }
    expect(s.opt.planUploads, 'plan uploads after the first step').toBe(uploads);
    expect(syncs, 'host waits inside step()').toBe(0);
    s.opt.synchronize();
  });

  it('AdamWDL with 40 layers (more slots than travel inline) steps without a host wait', () => {
    const layers = 40;
    const names = Array.from({ length: layers }, (_, l) => [
      `encoder.layers.${l}.w`,
      `encoder.layers.${l}.bias`,
    ]).flat();
    const params = names.map((n, i) => new Parameter(Tensor.zeros([1 + i], { device: 'cuda' }), { name: n }));
    const opt = new AdamWDL(params, { lr: 1e-2, layerwiseDecay: 0.9, nLayers: layers });
    const g = params.map((p) => Tensor.from(randn(p.data.numel, rng(3), 0.1), { device: 'cuda' }));
    params.forEach((p, i) => (p.grad = g[i]));
    opt.step();
    const before = emulator?.counters().hostSyncs ?? 0;
    for (let k = 0; k < 4; k++) {
      opt.paramGroups[0].lr = 1e-2 / (k + 2); // new slots every step
      opt.step();
    }
    expect((emulator?.counters().hostSyncs ?? 0) - before, 'host waits inside step()').toBe(0);
    opt.synchronize();
  });

  it('memory released while a step is queued stays valid until the step ran (dispose, collected grads)', () => {
    const gpu = setup('cuda', 5);
    const cpu = setup('cpu', 5);
    for (let step = 0; step < 3; step++) {
      gpu.grads(step);
      cpu.grads(step);
      const grads = gpu.params.map((p) => p.grad!);
      gpu.opt.step();
      cpu.opt.step();
      for (const g of grads) g.dispose(); // while the step may still be queued
    }
    gpu.opt.synchronize();
    gpu.params.forEach((p, i) => expectSameBits(bitsOfParam(p), bitsOfParam(cpu.params[i]), `param ${i}`));
  });

  it('overlapping device-pointer views cannot be two params, or two grads', () => {
    const backing = Tensor.zeros([200], { device: 'cuda' });
    const a = Tensor.fromDevicePointer(backing.devicePointer, { shape: [100] });
    const b = Tensor.fromDevicePointer(backing.devicePointer + 396n, { shape: [50] }); // shares element 99
    const c = Tensor.fromDevicePointer(backing.devicePointer + 400n, { shape: [50] }); // right after a
    expect(() => new AdamW([new Parameter(a, { name: 'a' }), new Parameter(b, { name: 'b' })])).toThrow(
      /param 'b' overlaps the memory of param 'a'/,
    );
    const pa = new Parameter(Tensor.zeros([100], { device: 'cuda' }), { name: 'pa' });
    const pb = new Parameter(Tensor.zeros([50], { device: 'cuda' }), { name: 'pb' });
    const opt = new AdamW([pa, pb, new Parameter(c, { name: 'c' })]);
    pa.grad = a;
    pb.grad = b;
    expect(() => opt.step()).toThrow(/param 'pb': its grad overlaps the grad of param 'pa'/);
    pb.grad = Tensor.fromDevicePointer(backing.devicePointer + 400n, { shape: [50] });
    expect(() => opt.step()).toThrow(/param 'pb': its grad overlaps the memory of param 'c'/);
    pb.grad = Tensor.zeros([50], { device: 'cuda' });
    opt.step();
    opt.synchronize();
  });
});

describe.skipIf(!emulator)('a driver older than the CUDA runtime the build needs', () => {
  it('fused-optim info says which CUDA the driver supports and which driver is needed', () => {
    const r = spawnSync(process.execPath, [join(__dirname, '..', 'bin', 'fused-optim.js'), 'info'], {
      encoding: 'utf8',
      env: { ...process.env, FO_CUDA_EMU: 'driver=12040' },
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(
      /NVIDIA driver too old: the driver supports CUDA 12\.4; this build needs CUDA 13\.0 \(driver R580 or newer\)/,
    );
    expect(r.stdout).toMatch(/backend:\s+cpu/);
  });
});

describe.skipIf(!emulator)("ordering with the caller's CUDA work", () => {
  it("waitFor(event) orders the next steps after an event; cudaStream is the steps' stream", () => {
    const s = setup('cuda', 13);
    s.grads(0);
    const event = emulator!.recordEvent();
    s.opt.waitFor(event);
    s.opt.step();
    s.opt.synchronize();
    emulator!.destroyEvent(event);
    expect(typeof s.opt.cudaStream).toBe('bigint');
    expect(() => s.opt.waitFor(0n)).toThrow(/the event is null/);
    expect(() => s.opt.waitFor(1 as unknown as bigint)).toThrow(/event must be a bigint/);
    const cpu = setup('cpu', 13);
    expect(cpu.opt.cudaStream).toBe(null);
    expect(() => cpu.opt.waitFor(event)).toThrow(/runs on the CPU/);
  });
});

describe('params sharing grads are refused on every device', () => {
  for (const device of ['cpu', ...(probe.cudaUsable ? ['cuda'] : [])] as Device[]) {
    it(`${device}: one grad for two params, or a param's data as a grad`, () => {
      const p = new Parameter(Tensor.zeros([10], { device }), { name: 'p' });
      const q = new Parameter(Tensor.zeros([10], { device }), { name: 'q' });
      const opt = new Lion([p, q], { lr: 1e-3 });
      const g = Tensor.zeros([10], { device });
      p.grad = g;
      q.grad = g;
      expect(() => opt.step()).toThrow(/param 'q': its grad is also the grad of param 'p'/);
      q.grad = Tensor.zeros([10], { device });
      opt.step();
      expect(() => (p.grad = p.data)).toThrow(/own data tensor/); // refused at assignment
      q.grad = p.data; // the native check catches what assignment cannot see
      expect(() => opt.step()).toThrow(/param 'q': its grad overlaps the memory of param 'p'/);
    });
  }
});

describe.skipIf(!emulator)('a step that fails on the GPU (failures injected by the emulator)', () => {
  it('a launch that fails changes nothing: the next steps equal a run that never failed', () => {
    const gpu = setup('cuda', 7);
    const cpu = setup('cpu', 7);
    gpu.grads(0);
    cpu.grads(0);
    gpu.opt.step();
    cpu.opt.step();
    gpu.grads(1);
    const before = snapshot(gpu.params, gpu.opt);
    emulator!.failAfter('launch', 0);
    expect(() => gpu.opt.step()).toThrow(/cudaErrorLaunchOutOfResources/);
    expect(snapshot(gpu.params, gpu.opt), 'nothing changed').toBe(before);
    for (let step = 1; step < 3; step++) {
      if (step > 1) gpu.grads(step);
      cpu.grads(step);
      gpu.opt.step();
      cpu.opt.step();
    }
    expect(snapshot(gpu.params, gpu.opt)).toBe(snapshot(cpu.params, cpu.opt));
  });

  it('an allocation that fails while creating the state changes nothing', () => {
    const s = setup('cuda', 8);
    s.grads(0);
    emulator!.failAfter('malloc', 2, 2); // twice: an allocation that fails is retried once
    expect(() => s.opt.step()).toThrow(/cudaErrorMemoryAllocation/);
    expect(Object.keys((s.opt.stateDict() as { state: object }).state)).toEqual([]);
    s.opt.step();
    expect((s.opt.stateDict() as { state: Record<number, { step: number }> }).state[0].step).toBe(1);
  });

  it('a copy that fails while uploading the slots changes nothing', () => {
    const s = setup('cuda', 9);
    s.grads(0);
    s.opt.step();
    s.grads(1);
    const before = snapshot(s.params, s.opt);
    emulator!.failAfter('memcpy', 0);
    expect(() => s.opt.step()).toThrow(/cudaErrorInvalidValue/);
    expect(snapshot(s.params, s.opt)).toBe(before);
    s.opt.step();
  });

  it('a step that failed part way refuses to continue until a state dict is loaded', () => {
    const s = setup('cuda', 10);
    s.grads(0);
    s.opt.step();
    const saved = s.opt.stateDict();
    const values = s.params.map((p) => p.data.toFloat32Array());
    s.grads(1);
    emulator!.failAfter('launch', 1); // the float32 launch runs, the bfloat16 one fails
    expect(() => s.opt.step()).toThrow(/1 of 2 launches of the step were queued/);
    expect(() => s.opt.step()).toThrow(/state is inconsistent.*Load a state dict or checkpoint/);
    expect(() => s.opt.stateDict()).toThrow(/state is inconsistent/);
    s.params.forEach((p, i) => p.data.copyFrom(values[i]));
    s.opt.loadStateDict(saved);
    s.opt.step();
    s.opt.synchronize();
  });

  it('stepAsync: a failed launch rejects, changes nothing, and the optimizer steps again', async () => {
    const s = setup('cuda', 11);
    s.grads(0);
    await s.opt.stepAsync();
    s.grads(1);
    const before = snapshot(s.params, s.opt);
    emulator!.failAfter('launch', 0);
    await expect(s.opt.stepAsync()).rejects.toThrow(/cudaErrorLaunchOutOfResources/);
    expect(snapshot(s.params, s.opt)).toBe(before);
    await s.opt.stepAsync();
    expect((s.opt.stateDict() as { state: Record<number, { step: number }> }).state[0].step).toBe(2);
  });

  it('stepAsync: a device failure after the launch was queued leaves the optimizer refusing to continue', async () => {
    const s = setup('cuda', 12);
    s.grads(0);
    s.opt.step(); // the state exists: the failure hits the step's own synchronization
    s.grads(1);
    emulator!.failAfter('sync', 0);
    await expect(s.opt.stepAsync()).rejects.toThrow(/state is inconsistent/);
    expect(() => s.opt.step()).toThrow(/state is inconsistent/);
  });
});

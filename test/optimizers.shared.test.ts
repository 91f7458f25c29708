// The checks every fused optimizer shares, run over the registry (test/support/optimizers.ts):
// bad hyperparameters and unknown keys rejected with clear errors before anything changes,
// state dicts holding exactly the optimizer's buffers and round-tripping bit for bit,
// checkpoints resuming bit for bit, and (with a CUDA device or the emulator) CUDA equal to
// the CPU bit for bit, metrics included.
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type DType, type DeviceName, Parameter, Tensor, loadCheckpoint, saveCheckpoint } from '../src/index';
import { native } from '../src/native';
import { tempDir } from './support/checkpoint_files';
import { expectThrows, groupsOf } from './support/expect_throws';
import { stateBits, tensorBits } from './support/optimizer_setups';
import { type AnyFused, OPTIMIZERS } from './support/optimizers';
import { randn, rng } from './support/random';

const { dir, cleanup } = tempDir('fused-optim-shared-');
afterAll(cleanup);
// Lion warns about a large decay; nothing here depends on it.
let warnSpy: ReturnType<typeof vi.spyOn>;
beforeEach(() => {
  warnSpy = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
});
afterEach(() => warnSpy.mockRestore());

// Odd sizes, one over a chunk (65536); a half param with its master.
const SIZES = [1, 3, 1031, 65537];
const DTYPES: DType[] = ['float32', 'bfloat16', 'float16', 'float32'];

function paramsOn(device: DeviceName, seed = 1): Parameter[] {
  const next = rng(seed);
  return SIZES.map(
    (n, i) => new Parameter(Tensor.from(randn(n, next, 0.5), { dtype: DTYPES[i], device }), { name: `p${i}` }),
  );
}

/** Steps with seeded grads (param 3 has none at step 1; lr changes at step 2). */
function train(opt: AnyFused, params: Parameter[], from: number, to: number, device: DeviceName = 'cpu'): void {
  for (let s = from; s < to; s++) {
    if (s === 2) opt.paramGroups[0].lr = (opt.paramGroups[0].lr as number) / 2;
    const next = rng(100 + s);
    params.forEach((p, i) => {
      const g = randn(p.data.numel, next, 0.1);
      p.grad = i === 3 && s === 1 ? null : Tensor.from(g, { dtype: i === 2 ? 'float16' : 'float32', device });
    });
    opt.step();
  }
}

const split = (ps: Parameter[]) => [ps.slice(0, 2), ps.slice(2)];

for (const row of OPTIMIZERS) {
  describe(`${row.name}: shared checks`, () => {
    for (const [key, value, cls, message] of row.badHyperparameters) {
      it(`${key} = ${String(value)}: rejected in the options, and on paramGroups before step() with nothing changed`, () => {
        expectThrows(() => row.make([paramsOn('cpu')], { [key]: value }), cls, [
          new RegExp(`${row.name} options`),
          message,
        ]);
        const params = paramsOn('cpu');
        const opt = row.make(split(params));
        train(opt, params, 0, 1);
        const before = { groups: groupsOf(opt), state: stateBits(opt), params: params.map((p) => tensorBits(p.data)) };
        const saved = (opt.paramGroups[1] as Record<string, unknown>)[key];
        (opt.paramGroups[1] as Record<string, unknown>)[key] = value;
        expectThrows(() => opt.step(), cls, [/paramGroups\[1\]/, message], 'step');
        (opt.paramGroups[1] as Record<string, unknown>)[key] = saved;
        expect({ groups: groupsOf(opt), state: stateBits(opt), params: params.map((p) => tensorBits(p.data)) }).toEqual(
          before,
        );
      });
    }

    for (const [options, cls, message] of row.badCombinations ?? []) {
      it(`${JSON.stringify(options)}: rejected`, () => {
        expectThrows(() => row.make([paramsOn('cpu')], options), cls, [message]);
      });
    }

    it('unknown option, group and state keys are refused, naming the key', () => {
      expectThrows(() => row.make([paramsOn('cpu')], { nosuchOption: 1 }), TypeError, [
        /unknown option 'nosuchOption'/,
      ]);
      const params = paramsOn('cpu');
      const opt = row.make([params.slice(0, 3)]);
      expectThrows(() => opt.addParamGroup({ params: [params[3]], nosuchKey: 2 } as never), TypeError, [/nosuchKey/]);
      train(opt, params.slice(0, 3), 0, 1);
      const sd = opt.stateDict() as { state: Record<number, Record<string, unknown>> };
      sd.state[0] = { ...sd.state[0], nosuchBuffer: new Float32Array(1) };
      expectThrows(() => opt.loadStateDict(sd as never), TypeError, [/nosuchBuffer/]);
    });

    it('a state dict holds exactly its buffers (a master for half params), round-trips bit for bit, and names its optimizer', () => {
      const params = paramsOn('cpu');
      const opt = row.make(split(params));
      train(opt, params, 0, 3);
      const sd = opt.stateDict() as { state: Record<number, Record<string, unknown>>; optimizer?: string };
      expect(sd.optimizer).toBe(row.name);
      params.forEach((p, i) => {
        const keys = [...row.stateBuffers, ...(p.data.dtype === 'float32' ? [] : ['master'])];
        if (row.hasStepCount) keys.push('step');
        expect(Object.keys(sd.state[i]).sort(), `param ${i}`).toEqual(keys.sort());
      });
      const copies = paramsOn('cpu');
      copies.forEach((p, i) =>
        p.data.copyFrom(params[i].data.dtype === 'float32' ? params[i].data.toFloat32Array() : params[i].data.toBits()),
      );
      const fresh = row.make(split(copies));
      fresh.loadStateDict(sd as never);
      expect(stateBits(fresh)).toEqual(stateBits(opt));
      train(opt, params, 3, 5);
      train(fresh, copies, 3, 5);
      expect(copies.map((p) => tensorBits(p.data))).toEqual(params.map((p) => tensorBits(p.data)));
      const other = OPTIMIZERS.find((r) => r.name !== row.name)!;
      expectThrows(() => other.make(split(paramsOn('cpu'))).loadStateDict(sd as never), TypeError, [
        new RegExp(`written by "${row.name}"`),
      ]);
    });

    it('a checkpoint resumes bit for bit', async () => {
      const params = paramsOn('cpu');
      const opt = row.make(split(params));
      train(opt, params, 0, 3);
      const file = join(dir, `${row.name}.safetensors`);
      await saveCheckpoint(file, { params, optimizer: opt });
      const resumed = paramsOn('cpu', 9);
      const fresh = row.make(split(resumed));
      await loadCheckpoint(file, { params: resumed, optimizer: fresh });
      expect(stateBits(fresh)).toEqual(stateBits(opt));
      train(opt, params, 3, 5);
      train(fresh, resumed, 3, 5);
      expect(resumed.map((p) => tensorBits(p.data))).toEqual(params.map((p) => tensorBits(p.data)));
    });
  });
}

const probe = native().nativeInfo();
describe.skipIf(!probe.cudaUsable)(
  `shared checks on CUDA${probe.cudaUsable ? '' : ` (skipped: ${probe.cudaError})`}`,
  () => {
    for (const row of OPTIMIZERS) {
      it(`${row.name}: CUDA equals the CPU bit for bit (params, state, metrics)`, () => {
        const [cpu, gpu] = (['cpu', 'cuda'] as const).map((device) => {
          const params = paramsOn(device);
          const opt = row.make(split(params));
          train(opt, params, 0, 4, device);
          return { params, opt };
        });
        gpu.opt.synchronize();
        expect(stateBits(gpu.opt)).toEqual(stateBits(cpu.opt));
        expect(gpu.params.map((p) => tensorBits(p.data))).toEqual(cpu.params.map((p) => tensorBits(p.data)));
        expect(gpu.opt.metrics()).toEqual(cpu.opt.metrics());
      });
    }
  },
);

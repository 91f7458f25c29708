// The CUDA backend against the CPU backend, element for element: both run the update rule
// of native/common/adamw_rule.h without FMA contraction, so the bits must agree.
import { describe, expect, it } from 'vitest';
import { AdamW, type DType, Parameter, Tensor, backendInfo } from '../src/index';
import { native } from '../src/native';
import { bitsOf, expectSameBits } from './support/compare';
import { randn, rng } from './support/random';

const probe = native().nativeInfo();
const reason = probe.cudaUsable ? '' : ` (skipped: ${probe.cudaError})`;
// Say why in the run's output, not only in the test names.
if (!probe.cudaUsable) console.warn(`CUDA-vs-CPU tests skipped: no usable GPU: ${probe.cudaError}`);

describe.skipIf(!probe.cudaUsable)(`CUDA backend equals the CPU backend bit for bit${reason}`, () => {
  const combos: Array<[DType, DType]> = [
    ['float32', 'float32'],
    ['float16', 'float16'],
    ['float16', 'float32'],
    ['bfloat16', 'bfloat16'],
    ['bfloat16', 'float32'],
  ];
  // Odd and unaligned sizes, a chunk plus one, several chunks.
  const sizes = [1, 3, 1000, 4099, 65537, 300007];

  for (const [dtype, gradDtype] of combos) {
    it(`${dtype} params, ${gradDtype} grads`, () => {
      const next = rng(7);
      const inits = sizes.map((n) => randn(n, next));
      const build = (device: 'cpu' | 'cuda') => {
        const params = inits.map((v, i) => new Parameter(Tensor.from(v, { dtype, device }), { name: `w${i}` }));
        const opt = new AdamW(
          [
            { params: params.slice(0, 3), lr: 1e-2, weightDecay: 0.1, amsgrad: true },
            { params: params.slice(3), lr: 3e-3, weightDecay: 0, maximize: true },
          ],
          { betas: [0.9, 0.99] },
        );
        return { params, opt };
      };
      const cpu = build('cpu');
      const gpu = build('cuda');
      for (let s = 0; s < 5; s++) {
        if (s === 3) for (const o of [cpu.opt, gpu.opt]) o.paramGroups[1].lr = 1e-3;
        inits.forEach((v, i) => {
          const g = i === 2 && s === 1 ? null : randn(v.length, next, 0.05);
          cpu.params[i].grad = g ? Tensor.from(g, { dtype: gradDtype, device: 'cpu' }) : null;
          gpu.params[i].grad = g ? Tensor.from(g, { dtype: gradDtype, device: 'cuda' }) : null;
        });
        cpu.opt.step();
        gpu.opt.step();
      }
      gpu.opt.synchronize();
      const a = cpu.opt.stateDict();
      const b = gpu.opt.stateDict();
      sizes.forEach((n, i) => {
        const where = `${dtype}/${gradDtype} param ${i} (${n})`;
        if (dtype === 'float32') {
          expectSameBits(
            bitsOf(gpu.params[i].data.toFloat32Array()),
            bitsOf(cpu.params[i].data.toFloat32Array()),
            `${where} param`,
          );
        } else {
          expectSameBits(gpu.params[i].data.toBits(), cpu.params[i].data.toBits(), `${where} param bits`);
          expectSameBits(bitsOf(b.state[i].master!), bitsOf(a.state[i].master!), `${where} master`);
        }
        expect(b.state[i].step).toBe(a.state[i].step);
        expectSameBits(bitsOf(b.state[i].exp_avg), bitsOf(a.state[i].exp_avg), `${where} exp_avg`);
        expectSameBits(bitsOf(b.state[i].exp_avg_sq), bitsOf(a.state[i].exp_avg_sq), `${where} exp_avg_sq`);
        if (a.state[i].max_exp_avg_sq) {
          expectSameBits(
            bitsOf(b.state[i].max_exp_avg_sq!),
            bitsOf(a.state[i].max_exp_avg_sq!),
            `${where} max_exp_avg_sq`,
          );
        }
      });
    });
  }

  it('stepAsync on CUDA resolves after the kernels finished', async () => {
    const p = new Parameter(Tensor.from(randn(100003, rng(3)), { device: 'cuda' }), { name: 'w' });
    p.grad = Tensor.from(randn(100003, rng(4)), { device: 'cuda' });
    const opt = new AdamW([p]);
    const before = p.data.toFloat32Array();
    await opt.stepAsync();
    const after = p.data.toFloat32Array();
    expect(after.some((x, i) => x !== before[i])).toBe(true);
  });

  it('Tensor.fromDevicePointer wraps memory it does not own', () => {
    const owner = Tensor.from(new Float32Array([1, 2, 3, 4]), { device: 'cuda' });
    const view = Tensor.fromDevicePointer(owner.devicePointer, { dtype: 'float32', shape: [4] });
    expect(Array.from(view.toFloat32Array())).toEqual([1, 2, 3, 4]);
    view.dispose(); // must not free the owner's memory
    expect(Array.from(owner.toFloat32Array())).toEqual([1, 2, 3, 4]);
    expect(backendInfo().backend).toBe('cuda');
  });
});

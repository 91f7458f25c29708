// fp32 master weights for half params: on by default, off with masterWeights: false.
import { describe, expect, it } from 'vitest';
import { AdamW, Parameter, Tensor } from '../src/index';
import { expectClose } from './support/compare';
import { roundTo } from './support/half_reference';

// bfloat16 values in [1, 2) are 2^-7 apart. An Adam step of lr = 1e-3 is far below half
// of that, so only a master accumulates it.
function run(masterWeights: boolean) {
  const init = Float32Array.from({ length: 1000 }, (_, i) => 1 + (i % 100) / 128);
  const p = new Parameter(Tensor.from(init, { dtype: 'bfloat16', device: 'cpu' }), { name: 'w' });
  const opt = new AdamW([p], { lr: 1e-3, weightDecay: 0, masterWeights });
  for (let s = 0; s < 8; s++) {
    p.grad = Tensor.from(new Float32Array(1000).fill(1), { device: 'cpu' });
    opt.step();
  }
  return { init, p, sd: opt.stateDict() };
}

describe('master weights', () => {
  it('are kept by default, so small updates accumulate and the param follows the master', () => {
    const { init, p, sd } = run(true);
    const master = sd.state[0].master!;
    expect(master).toBeDefined();
    // 8 Adam steps of ~lr each against a constant grad.
    expectClose(
      master,
      Array.from(init, (x) => x - 8e-3),
      'master',
      { rtol: 0, atol: 1e-5 },
    );
    expectClose(
      p.data.toFloat32Array(),
      Array.from(master, (x) => roundTo('bfloat16', x)),
      'param',
      { rtol: 0, atol: 0 },
    );
    expect(p.data.toFloat32Array().some((x, i) => x !== init[i])).toBe(true);
  });

  it('masterWeights: false updates the half value directly, losing sub-ulp steps', () => {
    const { init, p, sd } = run(false);
    expect(sd.state[0].master).toBeUndefined();
    expect(sd.state[0].step).toBe(8);
    expectClose(p.data.toFloat32Array(), init, 'param', { rtol: 0, atol: 0 });
  });

  it('loadStateDict with a master rewrites the half param from it', () => {
    const { p, sd } = run(true);
    const q = new Parameter(Tensor.zeros([1000], { dtype: 'bfloat16', device: 'cpu' }), { name: 'w' });
    const opt = new AdamW([q], { lr: 1e-3, weightDecay: 0 });
    opt.loadStateDict(sd);
    expectClose(q.data.toFloat32Array(), p.data.toFloat32Array(), 'param restored from master', { rtol: 0, atol: 0 });
  });

  it('rejects a master for an optimizer without master weights', () => {
    const { sd } = run(true);
    const q = new Parameter(Tensor.zeros([1000], { dtype: 'bfloat16', device: 'cpu' }), { name: 'w' });
    const opt = new AdamW([q], { masterWeights: false });
    expect(() => opt.loadStateDict(sd)).toThrow(/keeps no master weights/);
    expect(opt.stateDict().state[0]).toBeUndefined();
  });
});

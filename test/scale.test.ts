// Many params (issue 13 item 4): building an optimizer, adding groups and the first step are
// O(n) in the number of params (the duplicate check was a scan of every param already held:
// 100k params took 47 s). Not a timing test: 200k params must simply be built, stepped and
// checked for duplicates within the test timeout, which the quadratic scan (about 3 minutes
// for 200k) cannot. The figures are in docs/benchmarks.md (`npm run bench -- --filter many-params`).
import { describe, expect, it } from 'vitest';
import { AdamW, Parameter, Tensor } from '../src/index';

describe('an optimizer of 200,000 tiny params', () => {
  it('is built, stepped and extended by addParamGroup, and still refuses a duplicate', () => {
    const n = 200_000;
    // A grad each: one tensor as the grad of many params is refused (a GPU would read it
    // while another block unscales or clips it).
    const params = Array.from({ length: n }, (_, i) => {
      const p = new Parameter(Tensor.from([i / n, 1], { device: 'cpu' }), { name: `p${i}` });
      p.grad = Tensor.from([0.5, -0.5], { device: 'cpu' });
      return p;
    });
    const half = n / 2;
    const opt = new AdamW(params.slice(0, half), { lr: 0.1 });
    opt.addParamGroup({ params: params.slice(half) });
    opt.step();
    expect(params[n - 1].data.toFloat32Array()[0]).toBeLessThan((n - 1) / n);
    expect(() => opt.addParamGroup({ params: [params[7]] })).toThrow(/appears in more than one param group/);
    opt.dispose();
  });
});

// How params bind to optimizers (issue 13 items 7, 8, 10):
// - p.data is read-only (an assignment throws, in sloppy-mode code too), so an optimizer can
//   never keep updating a tensor the param no longer holds;
// - a half param held by two optimizers with master weights gets every update: each step
//   starts from the param's current value, as after copyFrom (docs/behaviour.md, "One param in
//   two optimizers");
// - misuse that used to give a confusing message gets one that names the value's type.
import { describe, expect, it } from 'vitest';
import { AdamW, Lion, Parameter, Tensor } from '../src/index';
import { bitsOf } from './support/compare';

const cpu = { device: 'cpu' } as const;

describe('Parameter.data is read-only', () => {
  it('an assignment throws a TypeError (strict and sloppy code) and the optimizer keeps the one tensor', () => {
    const p = new Parameter(Tensor.from([1, 2, 3], cpu), { name: 'w' });
    p.grad = Tensor.from([1, 1, 1], cpu);
    const opt = new AdamW([p], { lr: 0.1 });
    const other = Tensor.from([5, 5, 5], cpu);
    expect(() => {
      (p as { data: Tensor }).data = other;
    }).toThrow(
      new TypeError(
        "Parameter.data is read-only (param 'w'): copy new values in with p.data.copyFrom(values), or make a new Parameter",
      ),
    );
    // Functions made by new Function are sloppy-mode code, where a getter alone would be silently ignored.
    const sloppyAssign = new Function('p', 't', 'p.data = t;') as (p: Parameter, t: Tensor) => void;
    expect(() => sloppyAssign(p, other)).toThrow(TypeError);
    opt.step();
    expect(p.data.toFloat32Array().every((v, i) => v < i + 1)).toBe(true);
    expect(Array.from(other.toFloat32Array())).toEqual([5, 5, 5]);
  });
});

describe('a half param in two optimizers with master weights', () => {
  // Lion's update is lr * sign(...): with lr 2^-6 and values in [1, 2), where bfloat16 is
  // 2^-7 apart, every step moves the param by exactly two bfloat16 steps.
  const run = (interleave: (a: () => void, b: () => void) => void) => {
    const p = new Parameter(Tensor.from(new Float32Array(5).fill(1.9921875), { dtype: 'bfloat16', ...cpu }), {
      name: 'shared',
    });
    p.grad = Tensor.from(new Float32Array(5).fill(1), cpu);
    const a = new Lion([p], { lr: 2 ** -6 });
    const b = new Lion([p], { lr: 2 ** -6 });
    const seen: number[] = [];
    interleave(
      () => (a.step(), seen.push(p.data.toFloat32Array()[0])),
      () => (b.step(), seen.push(p.data.toFloat32Array()[0])),
    );
    return { p, seen, a, b };
  };

  it('loses no update: a, b, a, b each move the param down by the step', () => {
    const { seen } = run((a, b) => {
      a();
      b();
      a();
      b();
    });
    // Before: b restored its stale master and the param went back up (0.9883 -> 0.9766 -> 0.9805).
    expect(seen).toEqual([
      1.9921875 - 2 ** -6,
      1.9921875 - 2 * 2 ** -6,
      1.9921875 - 3 * 2 ** -6,
      1.9921875 - 4 * 2 ** -6,
    ]);
  });

  it('each step starts from the value the other optimizer wrote, exactly as after copyFrom', () => {
    const shared = run((a, b) => {
      a();
      b();
      a();
      b();
    });
    // The same two optimizers on separate params, where the value of the other's step is
    // copied in by hand before each step: copyFrom re-seeds the master (documented).
    const single = (n: number) => {
      const p = new Parameter(Tensor.from(new Float32Array(5).fill(1.9921875), { dtype: 'bfloat16', ...cpu }));
      p.grad = Tensor.from(new Float32Array(5).fill(1), cpu);
      return { p, opt: new Lion([p], { lr: 2 ** -6 }), n };
    };
    const [x, y] = [single(0), single(1)];
    let current = x.p.data.toBits();
    for (const s of [x, y, x, y]) {
      s.p.data.copyFrom(current);
      s.opt.step();
      current = s.p.data.toBits();
    }
    expect(Array.from(shared.p.data.toBits())).toEqual(Array.from(current));
  });
});

describe('clear errors that show the bad value', () => {
  it('a tensor as its own grad', () => {
    const p = new Parameter(Tensor.from([1, 2], cpu), { name: 'w' });
    expect(() => (p.grad = p.data)).toThrow(TypeError);
    expect(() => (p.grad = p.data)).toThrow(/grad of param 'w' is the param's own data tensor/);
    expect(() => (p.sparseGrad = { rows: Int32Array.from([0]), values: p.data })).toThrow(/own data tensor/);
    expect(p.grad).toBeNull();
  });

  it('a name that is not a string', () => {
    const t = Tensor.from([1], cpu);
    expect(() => new Parameter(t, { name: 3 as never })).toThrow(
      new TypeError('Parameter: options.name must be a string, got 3'),
    );
    const p = new Parameter(t, { name: 'w' });
    expect(() => (p.name = {} as never)).toThrow(/Parameter.name \(param 'w'\) must be a string, got an object/);
    expect(p.name).toBe('w');
  });

  it("Tensor.zeros(['3']), lr: '0.1', new Tensor()", () => {
    expect(() => Tensor.zeros(['3'] as never)).toThrow(
      new TypeError('Tensor.zeros: shape[0] must be an integer, got "3"'),
    );
    expect(() => Tensor.from([1, '2'] as never)).toThrow(
      new TypeError('Tensor.from: values[1] must be a number, got "2"'),
    );
    const p = new Parameter(Tensor.from([1], cpu));
    expect(() => new AdamW([p], { lr: '0.1' as never })).toThrow(
      new TypeError('AdamW options: lr must be a number, got "0.1"'),
    );
    const TensorClass = Tensor as unknown as new () => Tensor;
    expect(() => new TensorClass()).toThrow(
      new TypeError('Tensor cannot be constructed with new; use Tensor.zeros, Tensor.from or Tensor.fromDevicePointer'),
    );
  });

  it('the addon names what it was given in place of a Tensor', () => {
    const p = new Parameter(Tensor.from([1], cpu));
    const opt = new AdamW([p]);
    const handle = (opt as unknown as { handle(what: string): { setGrad(i: number, g: unknown): void } }).handle('x');
    expect(() => handle.setGrad(0, { fake: true })).toThrow(new TypeError('grad must be a Tensor, got an object'));
    expect(() => handle.setGrad(0, '7')).toThrow(new TypeError('grad must be a Tensor, got a string'));
    expect(() => handle.setGrad(1.5, null)).toThrow(
      new RangeError('param index must be an integer from 0 to 2147483647, got 1.5'),
    );
    expect(bitsOf(p.data.toFloat32Array())[0]).toBe(bitsOf(Float32Array.of(1))[0]);
  });
});

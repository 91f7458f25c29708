// TfjsOptimizer's bad input: each error names the argument and the problem, and is raised
// before anything changes (variables, fused state and step count are compared after).
import type * as tfTypes from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, Lion, Parameter, Tensor } from '../src/index';
import { TfjsOptimizer } from '../src/tfjs/index';
import { mlp, snapshot, useBackend } from './support/tfjs_setup';

let tf: typeof tfTypes;
beforeAll(async () => {
  tf = await useBackend('cpu');
});
afterAll(() => tf.disposeVariables());

const adamw = (ps: Parameter[]) => new AdamW(ps, { lr: 1e-2 });

describe('construction', () => {
  it('a model with no trainable weights, or an empty list', () => {
    const empty = tf.sequential();
    expect(() => new TfjsOptimizer(empty, adamw)).toThrow(/has no trainable weights \(a model must be built first/);
    const frozen = mlp({ inputs: 2, hidden: [], outputs: 1, prefix: 'frozen' }, 1);
    frozen.layers.forEach((l) => (l.trainable = false));
    expect(() => new TfjsOptimizer(frozen, adamw)).toThrow(/has no trainable weights/);
    expect(() => new TfjsOptimizer([], adamw)).toThrow(/empty array of variables/);
    expect(() => new TfjsOptimizer({} as never, adamw)).toThrow(
      /must be a tfjs model \(with trainableWeights\) or an array/,
    );
  });

  it('duplicate variables or names, and variables that are not float32 tf.Variables', () => {
    const a = tf.variable(tf.zeros([3]), true, 'dup_a');
    const b = tf.variable(tf.zeros([2]), true, 'dup_b');
    expect(() => new TfjsOptimizer([a, b, a], adamw)).toThrow(/variable 'dup_a' is listed twice \(at 0 and 2\)/);
    expect(() => new TfjsOptimizer([a, b], adamw, { paramName: () => 'same' })).toThrow(
      /two variables get the param name 'same' \('dup_a' and 'dup_b'\)/,
    );
    expect(() => new TfjsOptimizer([a, b], adamw, { paramName: { dup_b: 'dup_a' } })).toThrow(/param name 'dup_a'/);
    expect(() => new TfjsOptimizer([a], adamw, { paramName: () => '' })).toThrow(/non-empty strings/);
    const ints = tf.variable(tf.zeros([2], 'int32'), true, 'ints');
    expect(() => new TfjsOptimizer([a, ints], adamw)).toThrow(/'ints'\) has dtype int32; only float32/);
    expect(() => new TfjsOptimizer([a, tf.zeros([2]) as never], adamw)).toThrow(/\[1\] must be a tf.Variable/);
    const gone = tf.variable(tf.zeros([2]), true, 'gone');
    gone.dispose();
    expect(() => new TfjsOptimizer([gone], adamw)).toThrow(/'gone'\) has been disposed/);
  });

  it('a builder that returns something else, or an optimizer over other params, or leaves params out', () => {
    const v = [tf.variable(tf.zeros([3]), true, 'bld_a'), tf.variable(tf.zeros([2]), true, 'bld_b')];
    expect(() => new TfjsOptimizer(v, (() => ({ step() {} })) as never)).toThrow(
      /the builder must return a fused-optim optimizer \(AdamW, AdamWDL or Lion\), got an object/,
    );
    expect(() => new TfjsOptimizer(v, 'adamw' as never)).toThrow(/builder must be a function/);
    const stranger = new Parameter(Tensor.zeros([3]), { name: 'stranger' });
    expect(() => new TfjsOptimizer(v, (ps) => new AdamW([...ps, stranger]))).toThrow(
      /holds param 'stranger', which is not one of the params it was given/,
    );
    expect(() => new TfjsOptimizer(v, (ps) => new Lion([ps[0]]))).toThrow(
      /leaves out 1 of the 2 params \('bld_b' \[2\]\); to train some variables only, pass only those/,
    );
    expect(
      () =>
        new TfjsOptimizer(v, () => {
          throw new Error('builder failed');
        }),
    ).toThrow('builder failed');
  });

  it('unknown options and bad option values', () => {
    const v = [tf.variable(tf.zeros([3]), true, 'opt_a')];
    expect(() => new TfjsOptimizer(v, adamw, { lr: 1 } as object)).toThrow(
      /unknown option 'lr'; the options are 'paramName', 'device'/,
    );
    expect(() => new TfjsOptimizer(v, adamw, { device: 'gpu' as 'cpu' })).toThrow(
      /device must be 'cpu' or 'cuda', got "gpu"/,
    );
    expect(() => new TfjsOptimizer(v, adamw, { paramName: 3 as never })).toThrow(
      /paramName must be a function or an object/,
    );
    expect(() => new TfjsOptimizer(v, adamw, null as never)).toThrow(/options must be an options object/);
  });
});

describe('applyGradients', () => {
  function setup(prefix: string) {
    const model = mlp({ inputs: 3, hidden: [4], outputs: 2, prefix }, 1);
    const opt = new TfjsOptimizer(model, (ps) => new AdamW(ps, { lr: 1e-2 }));
    const vars = opt.variables as tfTypes.Variable[];
    const grads = () => Object.fromEntries(vars.map((v) => [v.name, tf.onesLike(v)]));
    opt.applyGradients(grads()); // some state to protect
    return { model, opt, vars, grads };
  }

  // Runs `bad`, which must throw `message`, and checks that nothing changed.
  function expectRefused(s: ReturnType<typeof setup>, bad: () => void, message: RegExp) {
    const before = { values: snapshot(s.vars), state: s.opt.fused.stateDict(), step: s.opt.step };
    const tensors = tf.memory().numTensors;
    expect(bad).toThrow(message);
    expect(snapshot(s.vars)).toEqual(before.values);
    expect(s.opt.fused.stateDict()).toEqual(before.state);
    expect(s.opt.step).toBe(before.step);
    expect(tf.memory().numTensors).toBe(tensors);
  }

  it('a grad of the wrong shape, dtype or kind, disposed, for an unknown variable, or twice', () => {
    const s = setup('apply');
    const [k, b] = s.vars;
    const good = s.grads();
    const bad = (name: string, tensor: unknown) => () =>
      s.opt.applyGradients({ ...good, [name]: tensor as tfTypes.Tensor });
    const wrongShape = tf.zeros([4, 3]);
    expectRefused(
      s,
      bad(k.name, wrongShape),
      /the grad of variable 'apply_dense0\/kernel' has shape \[4, 3\] but the variable had shape \[3, 4\]/,
    );
    const ints = tf.zeros([4], 'int32');
    expectRefused(s, bad(b.name, ints), /grad of variable 'apply_dense0\/bias' has dtype int32; it must be float32/);
    expectRefused(s, bad(b.name, new Float32Array(4)), /must be a tf.Tensor, got a Float32Array of 4 elements/);
    const disposed = tf.zeros([4]);
    disposed.dispose();
    expectRefused(s, bad(b.name, disposed), /'apply_dense0\/bias' has been disposed/);
    expectRefused(
      s,
      bad('nowhere/kernel', tf.zeros([1])),
      /a grad for variable 'nowhere\/kernel', which is not among the optimizer's 4 variables/,
    );
    expectRefused(
      s,
      () =>
        s.opt.applyGradients([
          ...Object.entries(good).map(([name, tensor]) => ({ name, tensor })),
          { name: k.name, tensor: good[k.name] },
        ]),
      /two grads for variable 'apply_dense0\/kernel'/,
    );
    expectRefused(s, () => s.opt.applyGradients(null as never), /variableGradients must be an object/);
    expectRefused(
      s,
      () => s.opt.applyGradients([{ tensor: good[k.name] }] as never),
      /variableGradients\[0\] must be \{ name, tensor \}/,
    );
    tf.dispose([wrongShape, ints, ...Object.values(good)]);
  });

  it('a variable whose shape changed: disposed and made again under its name with another shape', () => {
    const v = tf.variable(tf.zeros([3]), true, 'reshaped');
    const w = tf.variable(tf.zeros([2]), true, 'kept');
    const opt = new TfjsOptimizer([v, w], (ps) => new AdamW(ps, { lr: 1e-2 }));
    opt.applyGradients({ reshaped: tf.onesLike(v), kept: tf.onesLike(w) });
    v.dispose();
    const again = tf.variable(tf.zeros([5]), true, 'reshaped');
    const before = { kept: Array.from(w.dataSync()), state: opt.fused.stateDict() };
    expect(() => opt.applyGradients({ reshaped: tf.onesLike(again), kept: tf.onesLike(w) })).toThrow(
      /the grad of variable 'reshaped' has shape \[5\] but the variable had shape \[3\] when the optimizer was created/,
    );
    // Same shape but a new variable: the optimizer's own is gone.
    again.dispose();
    const same = tf.variable(tf.zeros([3]), true, 'reshaped');
    expect(() => opt.applyGradients({ reshaped: tf.onesLike(same), kept: tf.onesLike(w) })).toThrow(
      /variable 'reshaped' has been disposed \(a model rebuilt under the same names needs a new optimizer\)/,
    );
    expect(Array.from(w.dataSync())).toEqual(before.kept);
    expect(opt.fused.stateDict()).toEqual(before.state);
    opt.dispose();
    same.dispose();
    w.dispose();
  });

  it('a step the fused optimizer refuses (a negative lr set by hand) leaves the variables as they were', () => {
    const s = setup('refused');
    s.opt.fused.paramGroups[0].lr = -1;
    const g = s.grads();
    expectRefused(s, () => s.opt.applyGradients(g), /lr must be >= 0, got -1/);
    tf.dispose(Object.values(g));
  });

  it('a disposed optimizer', () => {
    const s = setup('disposed');
    s.opt.dispose();
    s.opt.dispose(); // twice is fine
    const g = s.grads();
    expect(() => s.opt.applyGradients(g)).toThrow(/the optimizer has been disposed/);
    expect(() => s.opt.fused).toThrow(/has been disposed/);
    expect(() => s.opt.bind(s.model)).toThrow(/has been disposed/);
    tf.dispose(Object.values(g));
  });
});

describe('binding an optimizer restored by fromConfig', () => {
  function restoredFrom(prefix: string) {
    const model = mlp({ inputs: 3, hidden: [4], outputs: 2, prefix }, 1);
    const opt = new TfjsOptimizer(model, (ps) => new AdamW(ps, { lr: 1e-2 }));
    const restored = TfjsOptimizer.fromConfig(
      TfjsOptimizer,
      JSON.parse(JSON.stringify(opt.getConfig())),
    ) as TfjsOptimizer;
    return { model, opt, restored };
  }

  it('binds to a model of the same shapes, and refuses other shapes or counts, or a second bind', () => {
    const { model, restored } = restoredFrom('bind');
    const other = mlp({ inputs: 3, hidden: [5], outputs: 2, prefix: 'bindOther' }, 1);
    expect(() => restored.bind(other)).toThrow(
      /variable 0 has shape \[3, 5\] but the saved optimizer's param 'bind_dense0\/kernel' has \[3, 4\]/,
    );
    expect(() => restored.bind(other.trainableWeights.slice(0, 1).map((w) => w.read() as tfTypes.Variable))).toThrow(
      /the saved optimizer has 4 params but 1 variables were given/,
    );
    restored.bind(model);
    expect(restored.params.map((p) => p.name)).toEqual(model.trainableWeights.map((w) => w.originalName));
    expect(() => restored.bind(model)).toThrow(/already bound/);
  });

  it('a config that is not a recipe', () => {
    expect(() => TfjsOptimizer.fromConfig(TfjsOptimizer, {})).toThrow(/the config has no recipe string/);
    expect(() =>
      TfjsOptimizer.fromConfig(TfjsOptimizer, { recipe: Buffer.from('{"format":"x"}').toString('base64') }),
    ).toThrow(/not a fused-optim\/tfjs-optimizer recipe/);
  });
});

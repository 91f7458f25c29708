// Unknown option keys are errors everywhere an options object is taken (issue 13 item 6): a
// PyTorch user's `weight_decay` must not silently train with the default decay. Each is a
// TypeError naming the key and, for a snake_case or near-miss spelling, the key meant; a
// rejected call changes nothing.
import { describe, expect, it } from 'vitest';
import {
  AdamW,
  AdamWDL,
  CosineAnnealingLR,
  GradScaler,
  loadCheckpoint,
  saveCheckpoint,
  LambdaLR,
  LinearLR,
  Lion,
  Parameter,
  SequentialLR,
  Tensor,
  TransformerLR,
  clipGradNorm,
  constantWithWarmup,
  copyBandwidth,
  cosineWithWarmup,
  inverseSqrtWithWarmup,
  layerwiseParamGroups,
  linearWarmup,
  noDecayParamGroups,
} from '../src/index';
import { checkOptions, suggestKey } from '../src/checks';

const param = (name = 'w', n = 3) => {
  const p = new Parameter(
    Tensor.from(
      Float32Array.from({ length: n }, (_, i) => 0.1 * (i + 1)),
      { device: 'cpu' },
    ),
    {
      name,
    },
  );
  p.grad = Tensor.from(new Float32Array(n).fill(0.5), { device: 'cpu' });
  return p;
};

function expectUnknown(fn: () => unknown, key: string, meant?: string): void {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error, `'${key}' was accepted`).toBeInstanceOf(TypeError);
  const message = (error as Error).message;
  expect(message).toContain(`unknown option '${key}'`);
  if (meant) expect(message).toContain(`did you mean '${meant}'?`);
  else expect(message).not.toContain('did you mean');
}

describe('suggestions', () => {
  it.each([
    ['weight_decay', 'weightDecay'],
    ['master_weights', 'masterWeights'],
    ['learningRate', 'lr'],
    ['learning_rate', 'lr'],
    ['weigthDecay', 'weightDecay'],
    ['WeightDecay', 'weightDecay'],
    ['bogusOption', undefined],
  ])('%s -> %s', (key, meant) => {
    expect(suggestKey(key, ['lr', 'betas', 'eps', 'weightDecay', 'masterWeights'])).toBe(meant);
  });

  it('checkOptions: undefined is empty, a non-object is a TypeError showing what it was', () => {
    expect(checkOptions(undefined, 'f: options', ['a'])).toEqual({});
    expect(() => checkOptions(3, 'f: options', ['a'])).toThrow(
      new TypeError('f: options must be an options object, got 3'),
    );
    expect(() => checkOptions([], 'f: options', ['a'])).toThrow(TypeError);
  });
});

describe('optimizer constructors', () => {
  const makers: Array<[string, (ps: Parameter[], o: object) => unknown]> = [
    ['AdamW', (ps, o) => new AdamW(ps, o)],
    ['AdamWDL', (ps, o) => new AdamWDL(ps, o)],
    ['Lion', (ps, o) => new Lion(ps, o)],
  ];
  for (const [name, make] of makers) {
    it(`${name}: snake_case, near-miss and unknown keys in the options`, () => {
      expectUnknown(() => make([param()], { weight_decay: 0 }), 'weight_decay', 'weightDecay');
      expectUnknown(() => make([param()], { learningRate: 0.1 }), 'learningRate', 'lr');
      expectUnknown(() => make([param()], { master_weights: false }), 'master_weights', 'masterWeights');
      expectUnknown(() => make([param()], { bogusOption: 1 }), 'bogusOption');
      expect(() => make([param()], { lr: '0.1' })).toThrow(TypeError);
      expect(() => make([param()], { lr: '0.1' })).toThrow(/lr must be a number, got "0.1"/);
    });

    it(`${name}: in a param group, in addParamGroup and set on paramGroups before step()`, async () => {
      const p = param('a');
      expectUnknown(() => make([{ params: [p], weight_decay: 0 } as never], {}), 'weight_decay', 'weightDecay');
      const opt = make([param('b')], {}) as AdamW;
      expectUnknown(() => opt.addParamGroup({ params: [p], weight_decay: 0 } as never), 'weight_decay', 'weightDecay');
      expect(opt.paramGroups).toHaveLength(1);
      opt.addParamGroup({ params: [p] }); // p was not taken by the rejected group
      const before = p.data.toFloat32Array();
      (opt.paramGroups[1] as Record<string, unknown>).weight_decay = 0;
      expectUnknown(() => opt.step(), 'weight_decay', 'weightDecay');
      await expect(opt.stepAsync()).rejects.toThrow(/unknown option 'weight_decay'/);
      expect(p.data.toFloat32Array()).toEqual(before);
      delete (opt.paramGroups[1] as Record<string, unknown>).weight_decay;
      opt.step();
      expect(p.data.toFloat32Array()).not.toEqual(before);
    });
  }

  it('AdamWDL rejects an AdamWDL key misspelt, and gradClip rejects keys of another clip type', () => {
    expectUnknown(() => new AdamWDL([param()], { layerwise_decay: 0.9 } as never), 'layerwise_decay', 'layerwiseDecay');
    expectUnknown(
      () => new AdamW([param()], { gradClip: { type: 'globalNorm', maxNorm: 1, max: 2 } as never }),
      'max',
      'maxNorm',
    );
    expectUnknown(
      () => new AdamW([param()], { gradClip: { type: 'value', max: 1, max_norm: 2 } as never }),
      'max_norm',
      'max',
    );
  });
});

describe('everything else that takes options', () => {
  const adamw = () => new AdamW([param()], { lr: 0.1 });
  it('schedulers', () => {
    expectUnknown(
      () => new TransformerLR(adamw(), { dModel: 8, warmup_steps: 4 } as never),
      'warmup_steps',
      'warmupSteps',
    );
    expectUnknown(() => new LinearLR(adamw(), { total_iters: 3 } as never), 'total_iters', 'totalIters');
    expectUnknown(() => new CosineAnnealingLR(adamw(), { tMax: 3, eta_min: 0 } as never), 'eta_min', 'etaMin');
    expectUnknown(() => new LambdaLR(adamw(), () => 1, { last_epoch: -1 } as never), 'last_epoch', 'lastEpoch');
    expectUnknown(
      () => linearWarmup(adamw(), { warmupSteps: 1, totalSteps: 5, num_training_steps: 9 } as never),
      'num_training_steps',
      'totalSteps',
    );
    expectUnknown(
      () => cosineWithWarmup(adamw(), { warmupSteps: 1, totalSteps: 5, num_cycles: 1 } as never),
      'num_cycles',
      'numCycles',
    );
    expectUnknown(
      () => constantWithWarmup(adamw(), { num_warmup_steps: 1 } as never),
      'num_warmup_steps',
      'warmupSteps',
    );
    expectUnknown(
      () => inverseSqrtWithWarmup(adamw(), { warmupSteps: 1, time_scale: 3 } as never),
      'time_scale',
      'timescale',
    );
    const opt = adamw();
    const a = new LinearLR(opt, { totalIters: 2 });
    expectUnknown(() => new SequentialLR(opt, { schedulers: [a], milestones: [], verbose: true } as never), 'verbose');
    // A rejected scheduler leaves the optimizer's lr and groups as they were.
    const fresh = adamw();
    expect(() => new LinearLR(fresh, { start_factor: 0.5 } as never)).toThrow(TypeError);
    expect(fresh.paramGroups[0].lr).toBe(0.1);
    expect(fresh.paramGroups[0].initialLr).toBeUndefined();
  });

  it('GradScaler, clipGradNorm, copyBandwidth, zeroGrad', () => {
    expectUnknown(() => new GradScaler({ init_scale: 1024 } as never), 'init_scale', 'initScale');
    expectUnknown(() => clipGradNorm([param()], 1, { norm_type: 2 } as never), 'norm_type', 'normType');
    expectUnknown(() => copyBandwidth({ byte: 4096 } as never), 'byte', 'bytes');
    expectUnknown(() => adamw().zeroGrad({ set_to_none: false } as never), 'set_to_none', 'setToNone');
  });

  it('Tensor and Parameter factories, param-group helpers', () => {
    expectUnknown(() => Tensor.zeros([2], { device: 'cpu', requires_grad: true } as never), 'requires_grad');
    expectUnknown(() => Tensor.from([1, 2], { dtpye: 'float16' } as never), 'dtpye', 'dtype');
    expectUnknown(() => new Parameter(Tensor.zeros([1], { device: 'cpu' }), { nmae: 'w' } as never), 'nmae', 'name');
    expectUnknown(() => noDecayParamGroups([param()], { weight_decay: 0.1 } as never), 'weight_decay', 'weightDecay');
    expectUnknown(
      () => layerwiseParamGroups([param()], { lr: 1, decay: 0.9, nLayers: 2, n_layers: 2 } as never),
      'n_layers',
      'nLayers',
    );
  });
});

describe('checkpoint options', () => {
  it('saveCheckpoint and loadCheckpoint reject unknown keys before touching the file', async () => {
    const params = [param('w')];
    await expect(saveCheckpoint('/nonexistent-dir/x.ckpt', { params, sheduler: undefined } as never)).rejects.toThrow(
      /saveCheckpoint: state: unknown option 'sheduler' \(did you mean 'scheduler'\?\)/,
    );
    await expect(loadCheckpoint('/nonexistent-dir/x.ckpt', { params, strict_: false } as never)).rejects.toThrow(
      /loadCheckpoint: targets: unknown option 'strict_' \(did you mean 'strict'\?\)/,
    );
  });
});

// noDecayParamGroups and layerwiseParamGroups: ordinary param groups built from names
// (the seed's no-decay rule for biases and norms; BEiT/timm layer-wise lr decay), and that
// AdamW steps with them exactly as with the same groups written by hand.
import { describe, expect, it } from 'vitest';
import { AdamW, type DType, Parameter, Tensor, layerwiseParamGroups, noDecayParamGroups } from '../src/index';
import { bitsOf, expectSameBits } from './support/compare';
import { randn, rng } from './support/random';

function param(name: string, shape: number[] = [2, 3], dtype: DType = 'float32', seed = 1): Parameter {
  const n = shape.reduce((a, b) => a * b, 1);
  return new Parameter(Tensor.from(randn(n, rng(seed), 0.5), { dtype, shape, device: 'cpu' }), { name });
}

type Group = { params: Parameter[]; [k: string]: unknown };
const names = (groups: Group[]) => groups.map((g) => g.params.map((p) => p.name));
const hyper = (groups: Group[]) => groups.map(({ params: _params, ...rest }) => rest);

// A BERT-like model: embeddings, two encoder layers, a pooler.
function bert(): Parameter[] {
  return [
    param('embeddings.word_embeddings.weight', [10, 4]),
    param('embeddings.LayerNorm.weight', [4]),
    param('embeddings.LayerNorm.bias', [4]),
    param('encoder.layers.0.attention.q.weight', [4, 4]),
    param('encoder.layers.0.attention.q.bias', [4]),
    param('encoder.layers.0.output.layer_norm.weight', [4]),
    param('encoder.layers.1.attention.q.weight', [4, 4]),
    param('encoder.layers.1.attention.q.bias', [4]),
    param('encoder.layers.1.scale', [4]), // 1-D but no no-decay fragment in its name
    param('pooler.dense.weight', [4, 4]),
    param('pooler.dense.bias', [4]),
  ];
}

describe('noDecayParamGroups', () => {
  it('default fragments (bias, LayerNorm.weight, norm): two groups, decay first, the no-decay group with weightDecay 0', () => {
    const groups = noDecayParamGroups(bert(), { weightDecay: 0.01 });
    expect(hyper(groups)).toEqual([{ weightDecay: 0.01 }, { weightDecay: 0 }]);
    expect(names(groups)).toEqual([
      [
        'embeddings.word_embeddings.weight',
        'encoder.layers.0.attention.q.weight',
        'encoder.layers.1.attention.q.weight',
        'encoder.layers.1.scale',
        'pooler.dense.weight',
      ],
      [
        'embeddings.LayerNorm.weight',
        'embeddings.LayerNorm.bias',
        'encoder.layers.0.attention.q.bias',
        'encoder.layers.0.output.layer_norm.weight',
        'encoder.layers.1.attention.q.bias',
        'pooler.dense.bias',
      ],
    ]);
    // The Parameter objects themselves, in input order.
    const ps = bert();
    const g = noDecayParamGroups(ps, { weightDecay: 0.1 });
    expect(g[0].params[0]).toBe(ps[0]);
    expect(g.flatMap((x) => x.params).length).toBe(ps.length);
  });

  it('a custom fragment list replaces the default', () => {
    const groups = noDecayParamGroups(bert(), { weightDecay: 0.05, noDecay: ['scale', 'embeddings'] });
    expect(names(groups)[1]).toEqual([
      'embeddings.word_embeddings.weight',
      'embeddings.LayerNorm.weight',
      'embeddings.LayerNorm.bias',
      'encoder.layers.1.scale',
    ]);
    expect(names(groups)[0]).toContain('pooler.dense.bias'); // 'bias' is no longer in the list
    expect(noDecayParamGroups(bert(), { weightDecay: 0.05, noDecay: [] })).toHaveLength(1); // nothing exempt
  });

  it('oneDimNoDecay: every param with at most one dimension is exempt too', () => {
    const groups = noDecayParamGroups(bert(), { weightDecay: 0.01, oneDimNoDecay: true });
    expect(names(groups)[0]).toEqual([
      'embeddings.word_embeddings.weight',
      'encoder.layers.0.attention.q.weight',
      'encoder.layers.1.attention.q.weight',
      'pooler.dense.weight',
    ]);
    expect(names(groups)[1]).toContain('encoder.layers.1.scale');
    // A 0-D param (shape []) counts as at most one dimension.
    const scalar = new Parameter(Tensor.zeros([], { device: 'cpu' }), { name: 'temperature' });
    expect(names(noDecayParamGroups([param('w', [2, 2]), scalar], { weightDecay: 0.1, oneDimNoDecay: true }))).toEqual([
      ['w'],
      ['temperature'],
    ]);
    // And with an empty fragment list, only the dimension rule applies.
    expect(
      names(
        noDecayParamGroups([param('a.bias', [3, 3]), param('b', [3])], {
          weightDecay: 0.1,
          noDecay: [],
          oneDimNoDecay: true,
        }),
      ),
    ).toEqual([['a.bias'], ['b']]);
  });

  it('empty groups are left out', () => {
    const onlyDecay = noDecayParamGroups([param('a.weight'), param('b.weight')], { weightDecay: 0.1 });
    expect(hyper(onlyDecay)).toEqual([{ weightDecay: 0.1 }]);
    const onlyNoDecay = noDecayParamGroups([param('a.bias', [3]), param('ln.norm', [3])], { weightDecay: 0.1 });
    expect(hyper(onlyNoDecay)).toEqual([{ weightDecay: 0 }]);
    expect(names(onlyNoDecay)).toEqual([['a.bias', 'ln.norm']]);
  });

  it('weightDecay 0 is allowed; any iterable of params works', () => {
    const ps = bert();
    const groups = noDecayParamGroups(new Set(ps), { weightDecay: 0 });
    expect(hyper(groups)).toEqual([{ weightDecay: 0 }, { weightDecay: 0 }]);
  });

  describe('bad input', () => {
    const cases: Array<[string, () => unknown, typeof Error, RegExp]> = [
      [
        'an empty param list',
        () => noDecayParamGroups([], { weightDecay: 0.1 }),
        RangeError,
        /noDecayParamGroups: params is empty/,
      ],
      [
        'a non-Parameter',
        () => noDecayParamGroups([param('a'), { name: 'b' } as unknown as Parameter], { weightDecay: 0.1 }),
        TypeError,
        /params\[1\] must be a Parameter/,
      ],
      [
        'a Tensor where a Parameter belongs',
        () => noDecayParamGroups([param('a').data as unknown as Parameter], { weightDecay: 0.1 }),
        TypeError,
        /params\[0\] must be a Parameter/,
      ],
      [
        'a missing weightDecay',
        () => noDecayParamGroups([param('a')], {} as { weightDecay: number }),
        TypeError,
        /weightDecay must be a number, got undefined/,
      ],
      [
        'no options at all',
        () => noDecayParamGroups([param('a')], undefined as unknown as { weightDecay: number }),
        TypeError,
        /weightDecay/,
      ],
      [
        'a negative weightDecay',
        () => noDecayParamGroups([param('a')], { weightDecay: -0.1 }),
        RangeError,
        /weightDecay must be >= 0/,
      ],
      [
        'a NaN weightDecay',
        () => noDecayParamGroups([param('a')], { weightDecay: NaN }),
        RangeError,
        /weightDecay must be a finite number, got NaN/,
      ],
      [
        'params that are not iterable',
        () => noDecayParamGroups(42 as unknown as Parameter[], { weightDecay: 0.1 }),
        TypeError,
        /./,
      ],
      [
        'noDecay that is a string, not an array',
        () => noDecayParamGroups([param('a')], { weightDecay: 0.1, noDecay: 'bias' as unknown as string[] }),
        TypeError,
        /noDecay/,
      ],
      [
        'noDecay holding a non-string',
        () => noDecayParamGroups([param('a')], { weightDecay: 0.1, noDecay: [3 as unknown as string] }),
        TypeError,
        /noDecay/,
      ],
    ];
    for (const [label, fn, cls, message] of cases) {
      it(label, () => {
        expect(fn).toThrow(cls);
        expect(fn).toThrow(message);
      });
    }
  });
});

describe('layerwiseParamGroups', () => {
  const opts = { lr: 1e-3, decay: 0.75, nLayers: 2, weightDecay: 0.05 };

  it('default layers: embeddings 0, encoder.layers.N -> N + 1, others nLayers + 1; lr * decay^(nLayers + 1 - layer); split by decay / no decay', () => {
    const groups = layerwiseParamGroups(bert(), opts);
    const summary = groups.map((g) => ({ lr: g.lr, weightDecay: g.weightDecay, names: g.params.map((p) => p.name) }));
    expect(summary).toEqual([
      { lr: 1e-3 * 0.75 ** 3, weightDecay: 0.05, names: ['embeddings.word_embeddings.weight'] },
      { lr: 1e-3 * 0.75 ** 3, weightDecay: 0, names: ['embeddings.LayerNorm.weight', 'embeddings.LayerNorm.bias'] },
      { lr: 1e-3 * 0.75 ** 2, weightDecay: 0.05, names: ['encoder.layers.0.attention.q.weight'] },
      {
        lr: 1e-3 * 0.75 ** 2,
        weightDecay: 0,
        names: ['encoder.layers.0.attention.q.bias', 'encoder.layers.0.output.layer_norm.weight'],
      },
      { lr: 1e-3 * 0.75, weightDecay: 0.05, names: ['encoder.layers.1.attention.q.weight', 'encoder.layers.1.scale'] },
      { lr: 1e-3 * 0.75, weightDecay: 0, names: ['encoder.layers.1.attention.q.bias'] },
      { lr: 1e-3, weightDecay: 0.05, names: ['pooler.dense.weight'] },
      { lr: 1e-3, weightDecay: 0, names: ['pooler.dense.bias'] },
    ]);
    // Every param exactly once.
    expect(groups.flatMap((g) => g.params).length).toBe(11);
  });

  it('groups come in layer order whatever the input order, and empty (layer, decay) pairs are left out', () => {
    const ps = bert().reverse();
    const groups = layerwiseParamGroups(ps, { ...opts, weightDecay: 0 });
    const lrs = groups.map((g) => g.lr as number);
    expect([...lrs].sort((a, b) => a - b)).toEqual(lrs);
    expect(groups.every((g) => g.params.length > 0)).toBe(true);
    // weightDecay defaults to 0 for both kinds.
    const noWd = layerwiseParamGroups(bert(), { lr: 1, decay: 0.5, nLayers: 2 });
    expect(noWd.every((g) => g.weightDecay === 0)).toBe(true);
  });

  it('a custom noDecay list', () => {
    const groups = layerwiseParamGroups([param('encoder.layers.0.q.bias', [4]), param('encoder.layers.0.gamma', [4])], {
      ...opts,
      noDecay: ['gamma'],
    });
    expect(groups.map((g) => [g.weightDecay, g.params.map((p) => p.name)])).toEqual([
      [0.05, ['encoder.layers.0.q.bias']],
      [0, ['encoder.layers.0.gamma']],
    ]);
  });

  it('a custom layerOf decides the layer', () => {
    const ps = [param('blocks.0.w'), param('blocks.1.w'), param('stem.w'), param('head.w')];
    const layerOf = (p: Parameter) => {
      const m = /^blocks\.(\d+)\./.exec(p.name);
      return m ? Number(m[1]) + 1 : p.name.startsWith('stem') ? 0 : 3;
    };
    const groups = layerwiseParamGroups(ps, { lr: 0.1, decay: 0.5, nLayers: 2, layerOf });
    expect(groups.map((g) => [g.lr, g.params.map((p) => p.name)])).toEqual([
      [0.1 * 0.5 ** 3, ['stem.w']],
      [0.1 * 0.5 ** 2, ['blocks.0.w']],
      [0.1 * 0.5, ['blocks.1.w']],
      [0.1, ['head.w']],
    ]);
  });

  describe('out-of-range layers and bad options', () => {
    const cases: Array<[string, () => unknown, typeof Error, RegExp[]]> = [
      [
        'encoder.layers.N with N >= nLayers (layer above nLayers + 1 is impossible: N + 1 <= nLayers)',
        () => layerwiseParamGroups([param('encoder.layers.5.w')], opts),
        RangeError,
        [/'encoder\.layers\.5\.w'/, /layer 6/],
      ],
      [
        'layerOf returning nLayers + 2',
        () => layerwiseParamGroups([param('x')], { ...opts, layerOf: () => 4 }),
        RangeError,
        [/'x'/, /layer 4/],
      ],
      [
        'layerOf returning -1',
        () => layerwiseParamGroups([param('x')], { ...opts, layerOf: () => -1 }),
        RangeError,
        [/'x'/, /-1/],
      ],
      [
        'layerOf returning 1.5',
        () => layerwiseParamGroups([param('x')], { ...opts, layerOf: () => 1.5 }),
        RangeError,
        [/'x'/, /1\.5/],
      ],
      [
        'layerOf returning NaN',
        () => layerwiseParamGroups([param('x')], { ...opts, layerOf: () => NaN }),
        RangeError,
        [/'x'/, /NaN/],
      ],
      [
        'an unparsable encoder layer index',
        () => layerwiseParamGroups([param('encoder.layers.x.w')], opts),
        RangeError,
        [/encoder\.layers\.x\.w/],
      ],
      [
        'an empty param list',
        () => layerwiseParamGroups([], opts),
        RangeError,
        [/layerwiseParamGroups: params is empty/],
      ],
      [
        'a non-Parameter',
        () => layerwiseParamGroups([param('a'), 'b' as unknown as Parameter], opts),
        TypeError,
        [/params\[1\] must be a Parameter/],
      ],
      ['a negative lr', () => layerwiseParamGroups([param('a')], { ...opts, lr: -1 }), RangeError, [/lr must be >= 0/]],
      [
        'a NaN decay',
        () => layerwiseParamGroups([param('a')], { ...opts, decay: NaN }),
        RangeError,
        [/decay must be a finite number/],
      ],
      [
        'a negative decay',
        () => layerwiseParamGroups([param('a')], { ...opts, decay: -0.5 }),
        RangeError,
        [/decay must be >= 0/],
      ],
      [
        'a fractional nLayers',
        () => layerwiseParamGroups([param('a')], { ...opts, nLayers: 2.5 }),
        RangeError,
        [/nLayers must be an integer, got/],
      ],
      [
        'a negative nLayers',
        () => layerwiseParamGroups([param('a')], { ...opts, nLayers: -1 }),
        RangeError,
        [/nLayers/],
      ],
      [
        'a negative weightDecay',
        () => layerwiseParamGroups([param('a')], { ...opts, weightDecay: -0.1 }),
        RangeError,
        [/weightDecay must be >= 0/],
      ],
      ['no options', () => layerwiseParamGroups([param('a')], undefined as unknown as typeof opts), TypeError, [/lr/]],
    ];
    for (const [label, fn, cls, messages] of cases) {
      it(label, () => {
        expect(fn).toThrow(cls);
        for (const m of messages) expect(fn).toThrow(m);
      });
    }
  });

  it('nLayers 0: embeddings at layer 0, everything else at layer 1', () => {
    const groups = layerwiseParamGroups([param('embeddings.w'), param('head.w')], { lr: 1, decay: 0.5, nLayers: 0 });
    expect(groups.map((g) => g.lr)).toEqual([0.5, 1]);
  });
});

describe('the groups drive AdamW', () => {
  for (const dtype of ['float32', 'bfloat16'] as DType[]) {
    it(`${dtype}: new AdamW(layerwiseParamGroups(...)) steps each param exactly as a hand-written single-param AdamW with its lr and weightDecay`, () => {
      const ps = bert().map((p, i) => param(p.name, [...p.data.shape], dtype, i + 1));
      const twins = bert().map((p, i) => param(p.name, [...p.data.shape], dtype, i + 1));
      const groups = layerwiseParamGroups(ps, { lr: 1e-2, decay: 0.6, nLayers: 2, weightDecay: 0.1 });
      const opt = new AdamW(groups, { betas: [0.9, 0.99] });
      expect(opt.paramGroups.length).toBe(groups.length);
      // One optimizer per twin, with the lr / weightDecay its group got.
      const singles = twins.map((t, i) => {
        const g = groups.find((x) => x.params.includes(ps[i]))!;
        return new AdamW([t], { lr: g.lr as number, weightDecay: g.weightDecay as number, betas: [0.9, 0.99] });
      });
      for (let s = 0; s < 3; s++) {
        [ps, twins].forEach((list) =>
          list.forEach(
            (p, i) =>
              (p.grad = Tensor.from(randn(p.data.numel, rng(100 * s + i), 0.1), {
                shape: p.data.shape,
                device: 'cpu',
              })),
          ),
        );
        opt.step();
        singles.forEach((o) => o.step());
      }
      ps.forEach((p, i) => {
        if (dtype === 'float32')
          expectSameBits(bitsOf(p.data.toFloat32Array()), bitsOf(twins[i].data.toFloat32Array()), p.name);
        else expectSameBits(p.data.toBits(), twins[i].data.toBits(), p.name);
      });
      // The decay really differs between groups: a no-decay param moved differently from a decayed one with the same lr.
      expect(opt.stateDict().param_groups.map((g) => g.weight_decay)).toContain(0);
    });
  }

  it('new AdamW(noDecayParamGroups(...)): the no-decay group keeps weightDecay 0 while the defaults give the other its value', () => {
    const ps = bert();
    const opt = new AdamW(noDecayParamGroups(ps, { weightDecay: 0.2 }), { lr: 0.01, weightDecay: 0.7 });
    expect(opt.paramGroups.map((g) => [g.weightDecay, g.lr])).toEqual([
      [0.2, 0.01],
      [0, 0.01],
    ]);
    // A bias with a zero grad: only the decay could move it, and there is none.
    const bias = ps.find((p) => p.name === 'pooler.dense.bias')!;
    const weight = ps.find((p) => p.name === 'pooler.dense.weight')!;
    const before = [bias.data.toFloat32Array(), weight.data.toFloat32Array()];
    for (const p of ps) p.grad = Tensor.zeros(p.data.shape, { device: 'cpu' });
    opt.step();
    expect(Array.from(bias.data.toFloat32Array())).toEqual(Array.from(before[0]));
    expect(Array.from(weight.data.toFloat32Array())).toEqual(
      Array.from(before[1], (x) => Math.fround(x * Math.fround(1 - 0.01 * 0.2))),
    );
  });
});

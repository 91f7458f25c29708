// A state dict says which optimizer wrote it, and only that kind loads it (issue 13 item 9):
// Lion no longer takes AdamW's betas and weight decay, nor AdamWDL AdamW's. A dict without
// the field (written by torch) loads where its keys fit: torch's runtime keys (foreach,
// fused, ...) are accepted, anything else is a TypeError naming the key.
import { describe, expect, it } from 'vitest';
import { AdamW, AdamWDL, Lion, Parameter, Tensor } from '../src/index';

type AnyDict = Record<string, unknown> & {
  state: Record<number, Record<string, unknown>>;
  param_groups: Array<Record<string, unknown>>;
};

const makers = {
  AdamW: (ps: Parameter[]) => new AdamW(ps, { lr: 0.01, betas: [0.8, 0.9], weightDecay: 0.1 }),
  AdamWDL: (ps: Parameter[]) => new AdamWDL(ps, { lr: 0.01, layerwiseDecay: 0.9, nLayers: 2 }),
  Lion: (ps: Parameter[]) => new Lion(ps, { lr: 0.01, betas: [0.95, 0.98] }),
};
type Kind = keyof typeof makers;
const KINDS = Object.keys(makers) as Kind[];

function trained(kind: Kind) {
  const ps = [3, 5].map((n, i) => {
    const p = new Parameter(
      Tensor.from(
        Float32Array.from({ length: n }, (_, j) => j / 4 - 0.5),
        { device: 'cpu' },
      ),
      {
        name: `encoder.layers.${i}.w`,
      },
    );
    p.grad = Tensor.from(new Float32Array(n).fill(0.5), { device: 'cpu' });
    return p;
  });
  const opt = makers[kind](ps);
  opt.step();
  return { opt, ps, sd: opt.stateDict() as unknown as AnyDict };
}

// Another optimizer of the kind, stepped once, so it has state a bad load could overwrite.
function fresh(kind: Kind) {
  return trained(kind);
}

describe('the writer is recorded', () => {
  it.each(KINDS)('%s.stateDict() names it', (kind) => {
    expect(trained(kind).sd.optimizer).toBe(kind);
  });
});

describe('a dict written by another kind of optimizer is rejected, and changes nothing', () => {
  for (const writer of KINDS) {
    for (const reader of KINDS) {
      if (writer === reader) continue;
      it(`${writer}'s dict into ${reader}`, () => {
        const { sd } = trained(writer);
        const { opt } = fresh(reader);
        const before = JSON.stringify(opt.stateDict(), (_, v) => (v instanceof Float32Array ? Array.from(v) : v));
        expect(() => opt.loadStateDict(sd as never)).toThrow(TypeError);
        expect(() => opt.loadStateDict(sd as never)).toThrow(
          new RegExp(`the dict was written by "${writer}" but this optimizer is ${reader}`),
        );
        expect(JSON.stringify(opt.stateDict(), (_, v) => (v instanceof Float32Array ? Array.from(v) : v))).toBe(before);
      });
    }
  }
});

describe("a dict without the field (torch's) loads where its keys fit", () => {
  it("AdamW takes torch's AdamW dict with torch's runtime keys, and resumes exactly", () => {
    const { sd, opt: source } = trained('AdamW');
    delete sd.optimizer;
    for (const g of sd.param_groups)
      Object.assign(g, {
        foreach: null,
        capturable: false,
        differentiable: false,
        fused: null,
        decoupled_weight_decay: true,
      });
    const { opt } = fresh('AdamW');
    opt.loadStateDict(sd as never);
    expect(opt.paramGroups[0].betas).toEqual([0.8, 0.9]);
    source.step();
    opt.step();
    const [a, b] = [source.stateDict() as unknown as AnyDict, opt.stateDict() as unknown as AnyDict];
    expect(b.state[1].step).toBe(2);
    expect(Array.from(b.state[1].exp_avg as Float32Array)).toEqual(Array.from(a.state[1].exp_avg as Float32Array));
  });

  it("AdamWDL takes a torch AdamW dict (same keys), Lion does not: AdamW's eps is not Lion's", () => {
    const { sd } = trained('AdamW');
    delete sd.optimizer;
    fresh('AdamWDL').opt.loadStateDict(sd as never);
    expect(() => fresh('Lion').opt.loadStateDict(sd as never)).toThrow(/param_groups\[0\]: unknown option 'eps'/);
  });

  it('AdamW refuses Adam with coupled L2 decay (torch >= 2.7 writes decoupled_weight_decay: false)', () => {
    const { sd } = trained('AdamW');
    delete sd.optimizer;
    sd.param_groups[0].decoupled_weight_decay = false;
    expect(() => fresh('AdamW').opt.loadStateDict(sd as never)).toThrow(/decoupled_weight_decay: false/);
  });

  it('Lion refuses state buffers it does not have, and any dict refuses unknown top-level keys', () => {
    const { sd } = trained('Lion');
    delete sd.optimizer;
    const withSq = structuredClone(sd);
    withSq.state[0].exp_avg_sq = new Float32Array(3);
    expect(() => fresh('Lion').opt.loadStateDict(withSq as never)).toThrow(
      /state 0 \(param '.*'\): unknown option 'exp_avg_sq'/,
    );
    const extra = structuredClone(sd);
    extra.optimiser = 'Lion';
    expect(() => fresh('Lion').opt.loadStateDict(extra as never)).toThrow(
      /unknown option 'optimiser' \(did you mean 'optimizer'\?\)/,
    );
    fresh('Lion').opt.loadStateDict(sd as never);
  });
});

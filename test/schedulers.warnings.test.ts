// The one-time process warnings. In a file of their own: "once per process" means once per
// module instance, and vitest gives each test file fresh modules.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AdamW, CosineAnnealingLR, LambdaLR, LinearLR, Parameter, Tensor, TransformerLR } from '../src/index';

function adamw(): AdamW {
  return new AdamW(
    [0, 1].map((i) => ({ params: [new Parameter(Tensor.from([1, 2, 3]), { name: `w${i}` })], lr: 0.5 })),
  );
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('the scheduler.step() before optimizer.step() warning', () => {
  const codes = (spy: { mock: { calls: unknown[][] } }) =>
    spy.mock.calls.map((c) => (c[1] as { code?: string } | undefined)?.code);

  it('is silent when optimizer.step() or stepAsync() comes first', async () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const opt = adamw();
    const sched = new TransformerLR(opt, { dModel: 16 });
    opt.step();
    sched.step();
    const opt2 = adamw();
    const sched2 = new CosineAnnealingLR(opt2, { tMax: 10 });
    await opt2.stepAsync();
    sched2.step();
    expect(codes(spy)).not.toContain('FUSED_OPTIM_SCHEDULER_BEFORE_OPTIMIZER');
  });

  it('is emitted once per process when scheduler.step() comes first', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const opt = adamw();
    const sched = new TransformerLR(opt, { dModel: 16 });
    sched.step();
    expect(codes(spy)).toEqual(['FUSED_OPTIM_SCHEDULER_BEFORE_OPTIMIZER']);
    expect(String(spy.mock.calls[0][0])).toMatch(/scheduler\.step\(\) before optimizer\.step\(\)/);
    const again = new LinearLR(adamw(), {});
    again.step();
    expect(spy).toHaveBeenCalledTimes(1);
  });

  it('wraps optimizer.step once however many schedulers there are, and notices a replaced step', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const opt = adamw();
    new LambdaLR(opt, () => 1);
    const wrapped = opt.step;
    expect(Object.hasOwn(opt, 'step')).toBe(true);
    const sched = new LambdaLR(opt, () => 1);
    expect(opt.step).toBe(wrapped);
    opt.step = () => {};
    sched.step();
    expect(codes(spy)).toEqual(['FUSED_OPTIM_STEP_REPLACED']);
  });
});

describe('getLr() outside step()', () => {
  it('warns once, pointing at getLastLr()', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const sched = new LambdaLR(adamw(), (s) => 1 / (s + 1));
    expect(sched.getLr()).toEqual([0.5, 0.5]);
    sched.getLr();
    expect(spy).toHaveBeenCalledTimes(1);
    expect(String(spy.mock.calls[0][0])).toMatch(/use scheduler\.getLastLr\(\)/);
    expect((spy.mock.calls[0][1] as { code: string }).code).toBe('FUSED_OPTIM_GET_LR');
  });
});

// TfjsOptimizer's schedules and state, on both tfjs backends: the scheduler callback inside
// model.fit, checkpoints with an exact resume of fit, getWeights/setWeights, and tfjs's own
// model saving with includeOptimizer (getConfig, fromConfig, class registration) round trip.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as tfTypes from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdamW, Lion, TransformerLR, noDecayParamGroups } from '../src/index';
import { TfjsOptimizer, loadCheckpoint, saveCheckpoint } from '../src/tfjs/index';
import { BACKENDS, mlp, regressionData, snapshot, useBackend } from './support/tfjs_setup';

const dir = mkdtempSync(join(tmpdir(), 'fused-optim-tfjs-state-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The seed course's TransformerLR factor, written out. */
function transformerFactor(step: number, dModel: number, warmup: number): number {
  const s = Math.max(step, 1);
  return dModel ** -0.5 * Math.min(s ** -0.5, s * warmup ** -1.5);
}

function bitsOf(arrays: Float32Array[]): number[][] {
  return arrays.map((a) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length)));
}

for (const backend of BACKENDS) {
  describe(`TfjsOptimizer state on the tfjs ${backend} backend`, () => {
    let tf: typeof tfTypes;
    beforeAll(async () => {
      tf = await useBackend(backend);
    });
    afterAll(() => tf.disposeVariables());

    const spec = { inputs: 6, hidden: [12], outputs: 2 };
    const fitOptions = { batchSize: 8, shuffle: false, verbose: 0 as const };

    describe('schedulerCallback in model.fit', () => {
      it('steps the scheduler after every batch: the lr of each step is the schedule at that step', async () => {
        const model = mlp({ ...spec, prefix: `${backend}_sched` }, 1);
        const { x, y } = regressionData(32, spec.inputs, spec.outputs, 2);
        const opt = new TfjsOptimizer(
          model,
          (ps) => new AdamW(noDecayParamGroups(ps, { weightDecay: 0.01 }), { lr: 0.5 }),
        );
        const sched = new TransformerLR(opt.fused, { dModel: 16, warmupSteps: 5 });
        model.compile({ optimizer: opt, loss: 'meanSquaredError' });
        const seen: number[][] = [];
        const record = { onBatchBegin: async () => void seen.push(opt.fused.paramGroups.map((g) => g.lr)) };
        await model.fit(x, y, { ...fitOptions, epochs: 3, callbacks: [record, opt.schedulerCallback(sched)] });
        expect(opt.step).toBe(12); // 3 epochs of 4 batches
        const expected = seen.map((_, k) => 0.5 * transformerFactor(k, 16, 5));
        seen.forEach((lrs, k) => {
          expect(lrs[0], `batch ${k}`).toBeCloseTo(expected[k], 15);
          expect(lrs[1], `batch ${k}`).toBeCloseTo(expected[k], 15);
        });
        expect(sched.getLastLr()[0]).toBeCloseTo(0.5 * transformerFactor(12, 16, 5), 15);
        tf.dispose([x, y]);
        opt.dispose();
        model.dispose();
      });

      it("every: 'epoch' steps it once per epoch; a scheduler of another optimizer is refused", async () => {
        const model = mlp({ ...spec, prefix: `${backend}_schedEpoch` }, 1);
        const { x, y } = regressionData(16, spec.inputs, spec.outputs, 2);
        const opt = new TfjsOptimizer(model, (ps) => new Lion(ps, { lr: 1e-3 }));
        const sched = new TransformerLR(opt.fused, { dModel: 4, warmupSteps: 2 });
        model.compile({ optimizer: opt, loss: 'meanSquaredError' });
        const seen: number[] = [];
        const record = { onBatchBegin: async () => void seen.push(opt.fused.paramGroups[0].lr) };
        await model.fit(x, y, {
          ...fitOptions,
          epochs: 3,
          callbacks: [record, opt.schedulerCallback(sched, { every: 'epoch' })],
        });
        const lr = (e: number) => 1e-3 * transformerFactor(e, 4, 2);
        expect(seen).toEqual([lr(0), lr(0), lr(1), lr(1), lr(2), lr(2)]);

        const other = mlp({ ...spec, prefix: `${backend}_schedOther` }, 1);
        const otherOpt = new TfjsOptimizer(other, (ps) => new Lion(ps, { lr: 1e-3 }));
        expect(() => otherOpt.schedulerCallback(sched)).toThrow(/drives another optimizer/);
        expect(() => opt.schedulerCallback(sched, { every: 'step' as 'batch' })).toThrow(/'batch' or 'epoch'/);
        expect(() => opt.schedulerCallback(sched, { each: 'batch' } as object)).toThrow(/unknown option 'each'/);
        expect(() => opt.schedulerCallback({} as { step(): void })).toThrow(/step\(\) method/);
        tf.dispose([x, y]);
        for (const o of [opt, otherOpt]) o.dispose();
        for (const m of [model, other]) m.dispose();
      });
    });

    describe('checkpoints', () => {
      // Two models under the same layer names: the second one's tfjs variables get other
      // names ('..._1'), its weights the same originalNames, which checkpoints use.
      function setup(prefix: string) {
        const model = mlp({ ...spec, prefix, batchNorm: true }, 3);
        const opt = new TfjsOptimizer(
          model,
          (ps) => new AdamW(noDecayParamGroups(ps, { weightDecay: 0.05 }), { lr: 0.02 }),
        );
        const sched = new TransformerLR(opt.fused, { dModel: 8, warmupSteps: 6 });
        model.compile({ optimizer: opt, loss: 'meanSquaredError' });
        return { model, opt, sched };
      }

      it('a fit resumed from a checkpoint (model weights, BatchNorm statistics, optimizer, scheduler) continues bit for bit', async () => {
        const { x, y } = regressionData(40, spec.inputs, spec.outputs, 4);
        const file = join(dir, `${backend}-resume.safetensors`);
        const a = setup(`${backend}_resume`);
        const callbacks = () => [a.opt.schedulerCallback(a.sched)];
        await a.model.fit(x, y, { ...fitOptions, epochs: 2, callbacks: callbacks() });
        await saveCheckpoint(file, { optimizer: a.opt, model: a.model, scheduler: a.sched, extra: { epoch: 2 } });
        const continued = await a.model.fit(x, y, {
          ...fitOptions,
          epochs: 4,
          initialEpoch: 2,
          callbacks: callbacks(),
        });

        const b = setup(`${backend}_resume`);
        expect((b.model.weights[0].read() as tfTypes.Variable).name).not.toBe(
          (a.model.weights[0].read() as tfTypes.Variable).name,
        );
        const extra = await loadCheckpoint(file, { optimizer: b.opt, model: b.model, scheduler: b.sched });
        expect(extra).toEqual({ epoch: 2 });
        expect(b.opt.step).toBe(10); // 2 epochs of 5 batches
        const resumed = await b.model.fit(x, y, {
          ...fitOptions,
          epochs: 4,
          initialEpoch: 2,
          callbacks: [b.opt.schedulerCallback(b.sched)],
        });
        expect(resumed.history.loss).toEqual(continued.history.loss);
        expect(bitsOf(snapshot(b.model))).toEqual(bitsOf(snapshot(a.model)));
        expect(b.opt.step).toBe(a.opt.step);
        expect(b.sched.getLastLr()).toEqual(a.sched.getLastLr());
        // BatchNorm's moving statistics are in the file: they moved during the first fit.
        expect(a.model.weights.map((w) => w.originalName)).toContain(`${backend}_resume_bn0/moving_mean`);
        tf.dispose([x, y]);
        for (const s of [a, b]) {
          s.opt.dispose();
          s.model.dispose();
        }
      });

      it('a checkpoint of another model is refused before anything changes', async () => {
        const file = join(dir, `${backend}-other.safetensors`);
        const a = setup(`${backend}_ckptA`);
        await saveCheckpoint(file, { optimizer: a.opt, model: a.model });
        const b = setup(`${backend}_ckptB`);
        const before = snapshot(b.model);
        await expect(loadCheckpoint(file, { optimizer: b.opt, model: b.model })).rejects.toThrow(/ckpt[AB]/);
        expect(bitsOf(snapshot(b.model))).toEqual(bitsOf(before));
        await expect(
          saveCheckpoint(file, { optimizer: a.opt, model: a.model, epoch: 1 } as object as never),
        ).rejects.toThrow(/unknown option 'epoch'/);
        for (const s of [a, b]) {
          s.opt.dispose();
          s.model.dispose();
        }
      });
    });

    describe('getWeights / setWeights', () => {
      async function trained(prefix: string, steps: number) {
        const model = mlp({ ...spec, prefix }, 5);
        const { x, y } = regressionData(8 * steps, spec.inputs, spec.outputs, 6);
        const opt = new TfjsOptimizer(
          model,
          (ps) => new AdamW(noDecayParamGroups(ps, { weightDecay: 0.05 }), { lr: 0.02 }),
        );
        model.compile({ optimizer: opt, loss: 'meanSquaredError' });
        await model.fit(x, y, { ...fitOptions, epochs: 1 });
        tf.dispose([x, y]);
        return { model, opt };
      }

      it('round trip: a second optimizer given the first one’s weights steps the same bits', async () => {
        const a = await trained(`${backend}_wA`, 3);
        const b = await trained(`${backend}_wB`, 1);
        b.model.setWeights(a.model.getWeights());
        a.opt.fused.paramGroups[0].lr = 0.03; // hyperparameters travel with the state
        const weights = await a.opt.getWeights();
        expect(weights[0].name).toBe('iter');
        expect(weights.map((w) => w.name)).toContain(`${backend}_wA_dense0/kernel/exp_avg_sq`);
        // Named by param name: rename b's to a's to load them.
        const c = new TfjsOptimizer(
          b.model,
          (ps) => new AdamW(noDecayParamGroups(ps, { weightDecay: 0.05 }), { lr: 0.02 }),
          { paramName: (name) => name.replace(`${backend}_wB`, `${backend}_wA`) },
        );
        await c.setWeights(weights);
        expect(c.step).toBe(3);
        expect(c.fused.paramGroups[0].lr).toBe(0.03);
        const { x, y } = regressionData(16, spec.inputs, spec.outputs, 7);
        b.model.compile({ optimizer: c, loss: 'meanSquaredError' });
        await a.model.fit(x, y, { ...fitOptions, epochs: 1 });
        await b.model.fit(x, y, { ...fitOptions, epochs: 1 });
        expect(bitsOf(snapshot(b.model))).toEqual(bitsOf(snapshot(a.model)));
        // The weights tensors belong to the optimizer: the next call frees them, none pile up.
        const count = tf.memory().numTensors;
        for (let i = 0; i < 5; i++) await a.opt.getWeights();
        expect(tf.memory().numTensors).toBe(count);
        tf.dispose([x, y]);
        for (const o of [a.opt, b.opt, c]) o.dispose();
        for (const m of [a.model, b.model]) m.dispose();
      });

      it("tfjs Adam's weights, or another model's, are refused and change nothing", async () => {
        const a = await trained(`${backend}_wBad`, 1);
        const adam = tf.train.adam(0.01);
        const v = a.model.trainableWeights[0].read() as tfTypes.Variable;
        adam.applyGradients([{ name: v.name, tensor: tf.onesLike(v) }]);
        const before = a.opt.fused.stateDict();
        await expect(a.opt.setWeights(await adam.getWeights())).rejects.toThrow(/not the weights of a TfjsOptimizer/);
        const other = await trained(`${backend}_wOther`, 1);
        await expect(a.opt.setWeights(await other.opt.getWeights())).rejects.toThrow(/param group 0 holds/);
        expect(a.opt.fused.stateDict()).toEqual(before);
        adam.dispose();
        for (const o of [a.opt, other.opt]) o.dispose();
        for (const m of [a.model, other.model]) m.dispose();
      });
    });

    it('model.save with includeOptimizer + tf.loadLayersModel: the loaded model trains on with the same bits', async () => {
      const model = mlp({ ...spec, prefix: `${backend}_save` }, 8);
      const { x, y } = regressionData(24, spec.inputs, spec.outputs, 9);
      const opt = new TfjsOptimizer(
        model,
        (ps) => new AdamW(noDecayParamGroups(ps, { weightDecay: 0.05 }), { lr: 0.02 }),
      );
      const sched = new TransformerLR(opt.fused, { dModel: 8, warmupSteps: 4 });
      model.compile({ optimizer: opt, loss: 'meanSquaredError' });
      await model.fit(x, y, { ...fitOptions, epochs: 2, callbacks: [opt.schedulerCallback(sched)] });
      let artifacts: tfTypes.io.ModelArtifacts | undefined;
      await model.save(
        tf.io.withSaveHandler(async (a) => {
          artifacts = a;
          return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
        }),
        { includeOptimizer: true },
      );
      const config = (artifacts!.trainingConfig as unknown as { optimizer_config: { class_name: string } })
        .optimizer_config;
      expect(config.class_name).toBe('FusedOptimTfjsOptimizer');

      const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts!));
      const restored = loaded.optimizer as unknown as TfjsOptimizer;
      expect(restored).toBeInstanceOf(TfjsOptimizer);
      expect(restored.isBound).toBe(false);
      expect(() => restored.fused).toThrow(/call opt.bind\(model\) first/);
      await model.fit(x, y, { ...fitOptions, epochs: 1 });
      await loaded.fit(x, y, { ...fitOptions, epochs: 1 });
      expect(restored.isBound).toBe(true);
      expect(restored.params.map((p) => p.name)).toEqual(opt.params.map((p) => p.name));
      expect(restored.fused.paramGroups.map((g) => [g.lr, g.weightDecay])).toEqual(
        opt.fused.paramGroups.map((g) => [g.lr, g.weightDecay]),
      );
      expect(bitsOf(snapshot(loaded))).toEqual(bitsOf(snapshot(model)));
      expect(restored.step).toBe(opt.step);
      tf.dispose([x, y]);
      for (const o of [opt, restored]) o.dispose();
      for (const m of [model, loaded]) m.dispose();
    });
  });
}

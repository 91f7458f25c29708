// mpirun -np N node test/distributed/faults.cjs <mode>: one rank fails while the others
// wait in an all-reduce; test/distributed.mpi.test.ts checks that the job ends, non-zero,
// within the time the mode allows, and what the ranks print.
//   kill:  the last rank SIGKILLs itself (the launcher notices and ends the others)
//   throw: the last rank throws (its exit aborts the job: MPI_Abort)
//   hang:  the last rank never joins (the others' 2-second timeout aborts the job)
'use strict';
const { join } = require('node:path');
const distributed = require(join(__dirname, '..', '..', 'dist', 'cjs', 'distributed', 'index.js'));

const mode = process.argv[2];

(async () => {
  const group = await distributed.init({ timeoutSeconds: mode === 'hang' ? 2 : 60 });
  const x = new Float32Array(1024).fill(1);
  await group.allReduceAsync(x, 'sum'); // everyone is up
  if (group.rank === group.worldSize - 1) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (mode === 'kill') process.kill(process.pid, 'SIGKILL');
    if (mode === 'throw') throw new Error(`rank ${group.rank} fails on purpose`);
    if (mode === 'hang') await new Promise(() => setInterval(() => {}, 1000));
  }
  await group.allReduceAsync(x, 'sum', { label: 'the step the failed rank never reaches' });
  console.log('not reached');
})();

// mpirun -np N node test/distributed/suite.cjs <results.json>: the collective, data-parallel
// and ZeRO cases (run by test/distributed.mpi.test.ts).
'use strict';
const { main } = require('./harness.cjs');
require('./collectives.cjs');
require('./training.cjs');

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

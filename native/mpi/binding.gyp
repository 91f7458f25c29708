# The MPI module of fused-optim/distributed (native/mpi/build/Release/fused_optim_mpi.node), a
# gyp project of its own so that it builds, or is skipped, without touching the main addon:
# scripts/build-mpi.mjs runs node-gyp here when ../../scripts/find-mpi.js finds an MPI
# compiler wrapper (at install time, and with `npm run build:mpi`). It compiles against the
# MPI it finds (MPI's ABI differs between implementations), so it is never prebuilt.
{
  'targets': [
    {
      'target_name': 'fused_optim_mpi',
      'sources': ['collectives.cpp', 'comm_runtime.cpp', 'host_block.cpp', 'module.cpp'],
      'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")"],
      'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS', 'OMPI_SKIP_MPICXX', 'MPICH_SKIP_MPICXX'],
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions', '-fno-rtti', '-std=gnu++17', '-std=gnu++20'],
      # The rank-order sums must be IEEE sums in order: no FMA contraction, no fast math.
      'cflags_cc': ['-std=c++17', '-O3', '-fexceptions', '-ffp-contract=off', '-fvisibility=hidden',
                    '<!@(node ../../scripts/find-mpi.js cflags)'],
      'libraries': ['<!@(node ../../scripts/find-mpi.js libs)', '-lpthread'],
    },
  ],
}

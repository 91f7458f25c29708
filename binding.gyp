# node-gyp build of the same sources as CMakeLists.txt: used by node-gyp-build at install
# time (when no prebuilt binary fits) and by prebuildify. CUDA is compiled when
# scripts/find-cuda.js finds nvcc on PATH; otherwise the CPU-only stub is linked.
# FUSED_OPTIM_CUDA=EMULATE builds the CUDA sources against the CUDA host emulator
# (tools/cuda-emu, tests only) and FUSED_OPTIM_SANITIZE adds -fsanitize=, as in CMake.
{
  'variables': {
    'nvcc%': '<!(node scripts/find-cuda.js nvcc)',
    'cuda_lib%': '<!(node scripts/find-cuda.js lib)',
    'cuda_mode%': '<!(node scripts/find-cuda.js mode)',
    'sanitize%': '<!(node scripts/find-cuda.js sanitize)',
    'cuda_archs%': '<!(node scripts/find-cuda.js archs)',
  },
  'targets': [
    {
      'target_name': 'fused_optim',
      'sources': [
        'native/addon/checkpoint_wrap.cpp',
        'native/addon/emulator_wrap.cpp',
        'native/addon/grad_ops_wrap.cpp',
        'native/addon/module.cpp',
        'native/addon/tensor_wrap.cpp',
        'native/checkpoint/crc32.cpp',
        'native/checkpoint/file_io.cpp',
        'native/checkpoint/header_parser.cpp',
        'native/checkpoint/transfer.cpp',
        'native/core/grad_ops.cpp',
        'native/core/storage.cpp',
        'native/core/tensor.cpp',
        'native/cpu/copy_bandwidth.cpp',
        'native/cpu/cpu_adamw_loops.cpp',
        'native/cpu/cpu_lion_loops.cpp',
        'native/cpu/cpu_sgd_loops.cpp',
        'native/cpu/grad_ops.cpp',
        'native/cpu/half_blocks.cpp',
        'native/cpu/state_codecs.cpp',
        'native/cpu/thread_pool.cpp',
      ],
      'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")"],
      # NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: an error raised while a worker thread is being
      # terminated cannot be thrown into its JavaScript; without this, node-addon-api throws
      # a C++ exception out of the callback and the whole process aborts (docs/workers.md).
      'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS', 'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS',
                  'FO_CUDA_ARCHS="<(cuda_archs)"'],
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions', '-fno-rtti', '-std=gnu++17', '-std=gnu++20'],
      # Same float rules as CMake: no FMA contraction, no fast math (bit-exact backends).
      'cflags_cc': ['-std=c++17', '-O3', '-fexceptions', '-ffp-contract=off', '-fno-math-errno', '-fvisibility=hidden'],
      'libraries': ['-lpthread'],
      'conditions': [
        ['cuda_mode=="off"', {
          'sources': ['native/cuda/cuda_stub.cpp', 'native/cuda/cuda_bandwidth_stub.cpp'],
          'defines': ['FO_CUDA_STUB=1'],  # native/cuda/launcher_stub.h
        }],
        ['cuda_mode=="emulate"', {
          'sources': [
            'tools/cuda-emu/units/cuda_adamw.cpp', 'tools/cuda-emu/units/cuda_bandwidth.cpp',
            'tools/cuda-emu/units/cuda_device.cpp', 'tools/cuda-emu/units/cuda_grad_ops.cpp',
            'tools/cuda-emu/units/cuda_lion.cpp', 'tools/cuda-emu/units/cuda_memory.cpp',
            'tools/cuda-emu/units/cuda_sgd.cpp',
            'tools/cuda-emu/src/config.cpp', 'tools/cuda-emu/src/executor.cpp', 'tools/cuda-emu/src/faults.cpp',
            'tools/cuda-emu/src/memory.cpp', 'tools/cuda-emu/src/runtime_api.cpp', 'tools/cuda-emu/src/streams.cpp',
          ],
          'include_dirs': ['tools/cuda-emu/include'],
          'defines!': ['FO_CUDA_ARCHS="<(cuda_archs)"'],
          'defines': ['FO_CUDA_EMULATED=1', 'FO_CUDA_ARCHS="emulated"', 'FO_NO_SIMD_CLONES'],
          'cflags_cc': ['-fno-strict-aliasing', '-Wno-unknown-pragmas', '-Wno-subobject-linkage'],
        }],
        ['sanitize!=""', {
          'defines': ['FO_NO_SIMD_CLONES'],
          'cflags_cc': ['-O1', '-fsanitize=<(sanitize)', '-fno-omit-frame-pointer', '-fno-sanitize-recover=all'],
          'ldflags': ['-fsanitize=<(sanitize)'],
        }],
        ['cuda_mode=="nvcc"', {
          'sources': ['native/cuda/cuda_device.cu', 'native/cuda/cuda_adamw.cu', 'native/cuda/cuda_lion.cu',
                      'native/cuda/cuda_sgd.cu', 'native/cuda/cuda_grad_ops.cu', 'native/cuda/cuda_bandwidth.cu', 'native/cuda/cuda_memory.cu'],
          'rules': [
            {
              'rule_name': 'nvcc',
              'extension': 'cu',
              'inputs': ['native/common/adamw_rule.h', 'native/common/lion_rule.h', 'native/common/metrics.h',
                         'native/common/adamw_plan.h', 'native/common/lion_plan.h', 'native/common/half_convert.h',
                         'native/cuda/cuda_backend.h', 'native/cuda/cuda_check.h', 'native/cuda/element_access.cuh',
                         'native/cuda/multi_tensor.cuh', 'native/common/grad_transform.h',
                         'native/common/stochastic_rounding.h', 'native/common/fo_macros.h', 'native/common/dtype.h',
                         'native/common/backend.h', 'native/common/errors.h', 'native/common/bandwidth.h',
                         'native/common/sgd_rule.h', 'native/common/sgd_plan.h'],
              'outputs': ['<(INTERMEDIATE_DIR)/<(RULE_INPUT_ROOT).cu.o'],
              'action': [
                '<(nvcc)', '-std=c++17', '-O3', '-fmad=false', '--expt-relaxed-constexpr',
                '-Xcompiler', '-fPIC', '-Xcompiler', '-fvisibility=hidden',
                '-DFO_CUDA_ARCHS="<(cuda_archs)"',
                '<!@(node scripts/find-cuda.js gencode)',
                '-c', '<(RULE_INPUT_PATH)', '-o', '<@(_outputs)',
              ],
              'message': 'nvcc <(RULE_INPUT_PATH)',
              'process_outputs_as_sources': 1,
            },
          ],
          # Static CUDA runtime: the binary needs only the NVIDIA driver, found at run time.
          'libraries': ['-L<(cuda_lib)', '-lcudart_static', '-ldl', '-lrt'],
        }],
      ],
    },
  ],
}

/*
 * gpu.c — the GPUs, through the CUDA runtime, when Strata is built with CUDA
 * (CMake defines STRATA_HAVE_CUDA and links cudart when it finds the
 * toolkit). A machine with the toolkit but no GPU or no driver is normal: the
 * runtime's error is logged at debug level, cleared, and n_gpus stays 0.
 * Without CUDA only cuda_built = false is recorded.
 *
 * The first runtime call initialises CUDA in this process (tens to hundreds
 * of milliseconds with a GPU); nothing is allocated on the device.
 */
#include "hw_impl.h"

#include <string.h>

#ifdef STRATA_HAVE_CUDA
#include <cuda_runtime_api.h>

void st__hw_gpu_fill(st_hw_info *info) {
    info->cuda_built = true;
    info->n_gpus = 0;
    int driver = 0, runtime = 0;
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        st_log_msg(ST_LOG_DEBUG, "hw: no CUDA device: %s (%s)", cudaGetErrorName(err),
                   cudaGetErrorString(err));
        (void)cudaGetLastError(); /* clear the sticky-free error state */
        return;
    }
    for (int i = 0; i < count && info->n_gpus < ST_HW_MAX_GPUS; i++) {
        struct cudaDeviceProp prop;
        memset(&prop, 0, sizeof prop);
        err = cudaGetDeviceProperties(&prop, i);
        if (err != cudaSuccess) {
            st_log_msg(ST_LOG_WARN, "hw: CUDA device %d: %s", i, cudaGetErrorString(err));
            (void)cudaGetLastError();
            continue;
        }
        st_hw_gpu *g = &info->gpus[info->n_gpus++];
        prop.name[sizeof prop.name - 1] = '\0';
        st__hw_copy_field(g->name, sizeof g->name, prop.name);
        g->mem_total_bytes = (uint64_t)prop.totalGlobalMem;
        g->cc_major = prop.major;
        g->cc_minor = prop.minor;
        g->driver_version = driver;
        g->runtime_version = runtime;
    }
}
#else
void st__hw_gpu_fill(st_hw_info *info) {
    info->cuda_built = false;
    info->n_gpus = 0;
}
#endif

/*
 * hw_impl.h — private to layer 1 (src/hw/): the helpers st_hw_query() stitches
 * together, one per source of facts. Each fills its part of st_hw_info and
 * never fails: a source that cannot be read leaves its fields zero/empty (or
 * a documented fallback) so that one missing file never costs the report.
 */
#ifndef STRATA_HW_IMPL_H
#define STRATA_HW_IMPL_H

#include "strata/hw.h"

#include <stdio.h>

/* cpu.c: arch, vendor, brand string, SIMD bits (CPU and OS support). */
void st__hw_cpu_fill(st_hw_info *info);
/* cpu.c: only the SIMD bits (cheap; used when st_hw_simd_best gets NULL). */
uint32_t st__hw_cpu_simd(void);
/* cpu.c: cache sizes from cpuid (x86 only); fields already non-zero stay. */
void st__hw_cpu_caches(st_hw_info *info);

/* sysinfo.c: sockets/cores/threads, caches (sysfs), memory, NUMA nodes. */
void st__hw_sys_fill(st_hw_info *info);

/* blas.c: the BLAS library's name, version, core, config and threads. */
void st__hw_blas_fill(st_hw_info *info);

/* gpu.c: cuda_built and the GPUs (only with STRATA_HAVE_CUDA). */
void st__hw_gpu_fill(st_hw_info *info);

/* sysinfo.c: reads a whole small text file (sysfs, /proc) into buf,
 * NUL-terminated, trailing newline stripped. False when it cannot be read. */
bool st__hw_read_text(const char *path, char *buf, size_t cap);

/* Copies src into a fixed field, truncating, trimming surrounding blanks. */
void st__hw_copy_field(char *dst, size_t cap, const char *src);

#endif /* STRATA_HW_IMPL_H */

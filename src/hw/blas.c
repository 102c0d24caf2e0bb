/*
 * blas.c — which BLAS the library is linked with and how many threads it
 * runs. Strata links OpenBLAS (pkg-config openblas); its extension functions
 * openblas_get_config() ("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ...
 * Haswell MAX_THREADS=64"), openblas_get_corename() (the kernel set it chose
 * at load time for this CPU) and openblas_{get,set}_num_threads() are
 * declared in Debian's <cblas.h>. Name and version are the first two words
 * of the config string.
 *
 * The thread count is process-wide state of OpenBLAS; the thread pool owner
 * (layer 2) and the measure probe are the only callers that change it.
 */
#include "hw_impl.h"

#include <cblas.h>
#include <ctype.h>
#include <string.h>

void st__hw_blas_fill(st_hw_info *info) {
    const char *config = openblas_get_config();
    const char *core = openblas_get_corename();
    st__hw_copy_field(info->blas_name, sizeof info->blas_name, "OpenBLAS");
    if (config) {
        st__hw_copy_field(info->blas_config, sizeof info->blas_config, config);
        /* First word: the name; second, when it starts with a digit: the version. */
        const char *s = config;
        while (isspace((unsigned char)*s)) s++;
        size_t n = strcspn(s, " \t");
        if (n > 0 && n < sizeof info->blas_name) {
            memcpy(info->blas_name, s, n);
            info->blas_name[n] = '\0';
        }
        s += n;
        while (isspace((unsigned char)*s)) s++;
        n = strcspn(s, " \t");
        if (isdigit((unsigned char)*s) && n < sizeof info->blas_version) {
            memcpy(info->blas_version, s, n);
            info->blas_version[n] = '\0';
        }
    }
    if (core) st__hw_copy_field(info->blas_core, sizeof info->blas_core, core);
    info->blas_threads = openblas_get_num_threads();
}

/* n <= 0: all processors OpenBLAS sees. OpenBLAS itself caps n at the
 * MAX_THREADS it was built with. */
void st_hw_blas_set_threads(int n) {
    if (n <= 0) n = openblas_get_num_procs();
    if (n <= 0) n = 1;
    openblas_set_num_threads(n);
}

int st_hw_blas_get_threads(void) { return openblas_get_num_threads(); }

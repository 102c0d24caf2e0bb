/*
 * sysinfo.c — the machine as Linux describes it: topology, caches, memory and
 * NUMA nodes, read from sysfs and /proc.
 *
 *   threads   sysconf(_SC_NPROCESSORS_ONLN)
 *   sockets   distinct topology/physical_package_id over the online CPUs
 *   cores     distinct (physical_package_id, core_id) pairs over them
 *             (fallback when topology is missing: 1 socket, cores = threads)
 *   caches    /sys/devices/system/cpu/cpu0/cache/index*: level, type, size
 *             ("48K"), coherency_line_size; L3 is summed over the distinct
 *             L3 instances (shared_cpu_list) of cpu0's package. Fallbacks,
 *             in order: cpuid (cpu.c), then glibc's sysconf(_SC_LEVEL*_...).
 *   memory    /proc/meminfo MemTotal / MemAvailable (kB), fallback sysconf
 *   NUMA      the /sys/devices/system/node/node<N> folders (fallback 1)
 *
 * Temporary arrays (one key per online CPU) come from st_malloc and are freed
 * before return; an allocation failure only drops the detail it was for.
 * No state; safe from any thread.
 */
#include "hw_impl.h"

#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CPU_SYSFS "/sys/devices/system/cpu"

bool st__hw_read_text(const char *path, char *buf, size_t cap) {
    if (cap == 0) return false;
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, cap - 1, f);
    int err = ferror(f);
    fclose(f);
    if (err) {
        buf[0] = '\0';
        return false;
    }
    buf[n] = '\0';
    while (n > 0 && isspace((unsigned char)buf[n - 1])) buf[--n] = '\0';
    return true;
}

static bool read_long(const char *path, long *out) {
    char buf[64];
    if (!st__hw_read_text(path, buf, sizeof buf) || !buf[0]) return false;
    char *end;
    long v = strtol(buf, &end, 10);
    if (end == buf || *end) return false;
    *out = v;
    return true;
}

/* "48K", "1024K", "32M", "512" -> bytes; 0 when malformed. */
static uint64_t parse_size(const char *s) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return 0;
    switch (toupper((unsigned char)*end)) {
    case '\0': return v;
    case 'K': return v << 10;
    case 'M': return v << 20;
    case 'G': return v << 30;
    default: return 0;
    }
}

/* Parses a CPU list ("0-3,8,10-11") into ids[] (at most cap); returns the
 * count, or -1 when malformed. */
static int parse_cpu_list(const char *s, int *ids, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        long lo = strtol(s, &end, 10);
        if (end == s || lo < 0) return -1;
        long hi = lo;
        s = end;
        if (*s == '-') {
            s++;
            hi = strtol(s, &end, 10);
            if (end == s || hi < lo) return -1;
            s = end;
        }
        for (long c = lo; c <= hi && n < cap; c++) ids[n++] = (int)c;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int count_distinct(uint64_t *keys, int n) {
    if (n == 0) return 0;
    qsort(keys, (size_t)n, sizeof *keys, cmp_u64);
    int d = 1;
    for (int i = 1; i < n; i++) d += keys[i] != keys[i - 1];
    return d;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The online CPU ids into a fresh st_malloc'd array (caller frees); *n their
 * count. Falls back to 0..threads-1. NULL only when allocation fails. */
static int *online_cpus(int threads, int *n) {
    char buf[4096];
    int cap = threads > 0 ? threads : 1;
    int *ids = st_malloc((size_t)cap * sizeof *ids);
    if (!ids) return NULL;
    int got = -1;
    if (st__hw_read_text(CPU_SYSFS "/online", buf, sizeof buf) && buf[0])
        got = parse_cpu_list(buf, ids, cap);
    if (got <= 0) {
        for (int i = 0; i < cap; i++) ids[i] = i;
        got = cap;
    }
    *n = got;
    return ids;
}

static void fill_topology(st_hw_info *info, const int *cpus, int n_cpu) {
    info->sockets = 1;
    info->cores = info->threads;
    if (!cpus) return;
    uint64_t *pkg = st_malloc((size_t)n_cpu * sizeof *pkg);
    uint64_t *core = st_malloc((size_t)n_cpu * sizeof *core);
    if (pkg && core) {
        int ok = 0;
        char path[128];
        for (int i = 0; i < n_cpu; i++) {
            long p, c;
            snprintf(path, sizeof path, CPU_SYSFS "/cpu%d/topology/physical_package_id", cpus[i]);
            if (!read_long(path, &p)) break;
            snprintf(path, sizeof path, CPU_SYSFS "/cpu%d/topology/core_id", cpus[i]);
            if (!read_long(path, &c)) break;
            pkg[ok] = (uint64_t)(uint32_t)p;
            core[ok] = ((uint64_t)(uint32_t)p << 32) | (uint32_t)c;
            ok++;
        }
        if (ok == n_cpu && ok > 0) {
            info->sockets = count_distinct(pkg, ok);
            info->cores = count_distinct(core, ok);
        }
    }
    st_free(pkg);
    st_free(core);
    if (info->cores > info->threads) info->cores = info->threads;
}

/* The number of distinct instances of cache index `idx` among the online
 * CPUs of cpu0's package (1 when that cannot be told). */
static int l3_instances(int idx, const int *cpus, int n_cpu) {
    if (!cpus) return 1;
    long pkg0;
    if (!read_long(CPU_SYSFS "/cpu0/topology/physical_package_id", &pkg0)) pkg0 = -1;
    uint64_t *keys = st_malloc((size_t)n_cpu * sizeof *keys);
    if (!keys) return 1;
    int n = 0;
    char path[160], buf[1024];
    for (int i = 0; i < n_cpu; i++) {
        long p;
        snprintf(path, sizeof path, CPU_SYSFS "/cpu%d/topology/physical_package_id", cpus[i]);
        if (read_long(path, &p) && p != pkg0) continue;
        snprintf(path, sizeof path, CPU_SYSFS "/cpu%d/cache/index%d/shared_cpu_list", cpus[i], idx);
        if (st__hw_read_text(path, buf, sizeof buf) && buf[0]) keys[n++] = fnv1a(buf);
    }
    int d = count_distinct(keys, n);
    st_free(keys);
    return d > 0 ? d : 1;
}

static void fill_caches_sysfs(st_hw_info *info, const int *cpus, int n_cpu) {
    char path[128], buf[64];
    for (int idx = 0; idx < 16; idx++) {
        long level, line;
        char type[32];
        snprintf(path, sizeof path, CPU_SYSFS "/cpu0/cache/index%d/level", idx);
        if (!read_long(path, &level)) break;
        snprintf(path, sizeof path, CPU_SYSFS "/cpu0/cache/index%d/type", idx);
        if (!st__hw_read_text(path, type, sizeof type)) continue;
        snprintf(path, sizeof path, CPU_SYSFS "/cpu0/cache/index%d/size", idx);
        if (!st__hw_read_text(path, buf, sizeof buf)) continue;
        uint64_t size = parse_size(buf);
        const bool data = strcmp(type, "Data") == 0, unified = strcmp(type, "Unified") == 0;
        if (level == 1 && data && !info->l1d_bytes) {
            info->l1d_bytes = size;
            snprintf(path, sizeof path, CPU_SYSFS "/cpu0/cache/index%d/coherency_line_size", idx);
            if (read_long(path, &line) && line > 0 && line < 4096) info->cacheline_bytes = (int)line;
        } else if (level == 2 && (data || unified) && !info->l2_bytes) {
            info->l2_bytes = size;
        } else if (level == 3 && (data || unified) && !info->l3_bytes) {
            info->l3_bytes = size * (uint64_t)l3_instances(idx, cpus, n_cpu);
        }
    }
}

static void fill_caches_sysconf(st_hw_info *info) {
#ifdef _SC_LEVEL1_DCACHE_SIZE
    long v;
    if (!info->l1d_bytes && (v = sysconf(_SC_LEVEL1_DCACHE_SIZE)) > 0) info->l1d_bytes = (uint64_t)v;
    if (!info->l2_bytes && (v = sysconf(_SC_LEVEL2_CACHE_SIZE)) > 0) info->l2_bytes = (uint64_t)v;
    if (!info->l3_bytes && (v = sysconf(_SC_LEVEL3_CACHE_SIZE)) > 0) info->l3_bytes = (uint64_t)v;
    if (!info->cacheline_bytes && (v = sysconf(_SC_LEVEL1_DCACHE_LINESIZE)) > 0 && v < 4096)
        info->cacheline_bytes = (int)v;
#else
    (void)info;
#endif
}

static void fill_memory(st_hw_info *info) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            unsigned long long kb;
            if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) info->mem_total_bytes = kb * 1024;
            else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
                info->mem_available_bytes = kb * 1024;
        }
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    long n;
    if (!info->mem_total_bytes && (n = sysconf(_SC_PHYS_PAGES)) > 0)
        info->mem_total_bytes = (uint64_t)n * (uint64_t)page;
    if (!info->mem_available_bytes && (n = sysconf(_SC_AVPHYS_PAGES)) > 0)
        info->mem_available_bytes = (uint64_t)n * (uint64_t)page;
}

static void fill_numa(st_hw_info *info) {
    int n = 0;
    DIR *d = opendir("/sys/devices/system/node");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            const char *s = e->d_name;
            if (strncmp(s, "node", 4) != 0 || !s[4]) continue;
            s += 4;
            while (isdigit((unsigned char)*s)) s++;
            if (!*s) n++;
        }
        closedir(d);
    }
    info->numa_nodes = n > 0 ? n : 1;
}

void st__hw_sys_fill(st_hw_info *info) {
    long t = sysconf(_SC_NPROCESSORS_ONLN);
    info->threads = t > 0 ? (int)t : 1;
    int n_cpu = 0;
    int *cpus = online_cpus(info->threads, &n_cpu);
    fill_topology(info, cpus, n_cpu);
    fill_caches_sysfs(info, cpus, n_cpu);
    st_free(cpus);
    st__hw_cpu_caches(info);
    fill_caches_sysconf(info);
    fill_memory(info);
    fill_numa(info);
}

/*
 * cpu.c — what the processor is and which vector instructions it may run.
 *
 * x86: cpuid gives the vendor (leaf 0), the brand string (0x80000002..4) and
 * the feature bits (leaves 1, 7.0 and 7.1). A bit only counts when the OS
 * also saves the register state it needs, read from XCR0 with xgetbv: bits
 * 1-2 (XMM, YMM) for AVX and everything built on it, bits 5-7 (opmask,
 * ZMM_Hi256, Hi16_ZMM) for AVX-512, bits 17-18 (XTILECFG, XTILEDATA) for AMX.
 * Linux additionally wants arch_prctl(ARCH_REQ_XCOMP_PERM) before a process
 * touches AMX tiles; that is the kernel's business (layer 2), here we report
 * what the CPU and XCR0 allow. Cache sizes come from cpuid as a fallback for
 * sysfs (leaf 4 on Intel, 0x80000005/6 on AMD).
 * aarch64: the kernel's HWCAP/HWCAP2 auxiliary vector (getauxval) gives NEON,
 * SVE, SVE2, BF16 and dot product; vendor and model come from /proc/cpuinfo.
 * Elsewhere (and as a fallback) /proc/cpuinfo's vendor_id / model name.
 *
 * No state, no allocation; every function is safe to call from any thread.
 */
#include "hw_impl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#if defined(__x86_64__) || defined(__i386__)
#define ST_HW_X86 1
#include <cpuid.h>
#endif

#if defined(__aarch64__) && defined(__linux__)
#define ST_HW_ARM64 1
#include <sys/auxv.h>
#endif

void st__hw_copy_field(char *dst, size_t cap, const char *src) {
    if (cap == 0) return;
    dst[0] = '\0';
    if (!src) return;
    while (*src && isspace((unsigned char)*src)) src++;
    size_t n = strlen(src);
    while (n > 0 && isspace((unsigned char)src[n - 1])) n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- /proc/cpuinfo ---------------------------------------------------------
 * Reads the first processor block only: the fields we want are the same for
 * every CPU of a (homogeneous) machine, and the file is long on big ones. */
typedef struct {
    char vendor_id[64], model_name[160], implementer[16], part[16];
} cpuinfo_fields;

static void cpuinfo_read(cpuinfo_fields *f) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (!fp) return;
    char line[512];
    int seen_any = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '\n') {
            if (seen_any) break; /* end of the first processor block */
            continue;
        }
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = '\0';
        char key[64];
        st__hw_copy_field(key, sizeof key, line);
        const char *val = colon + 1;
        seen_any = 1;
        if (strcmp(key, "vendor_id") == 0)
            st__hw_copy_field(f->vendor_id, sizeof f->vendor_id, val);
        else if (strcmp(key, "model name") == 0)
            st__hw_copy_field(f->model_name, sizeof f->model_name, val);
        else if (strcmp(key, "CPU implementer") == 0)
            st__hw_copy_field(f->implementer, sizeof f->implementer, val);
        else if (strcmp(key, "CPU part") == 0)
            st__hw_copy_field(f->part, sizeof f->part, val);
    }
    fclose(fp);
}

/* Arm's MIDR implementer codes (the ones a server or laptop is likely to have). */
static const char *arm_implementer_name(long code) {
    switch (code) {
    case 0x41: return "ARM";
    case 0x42: return "Broadcom";
    case 0x43: return "Cavium";
    case 0x46: return "Fujitsu";
    case 0x48: return "HiSilicon";
    case 0x4e: return "NVIDIA";
    case 0x51: return "Qualcomm";
    case 0x61: return "Apple";
    case 0xc0: return "Ampere";
    default: return NULL;
    }
}

/* Arm Ltd. core part numbers (implementer 0x41) seen in servers. */
static const char *arm_part_name(long part) {
    switch (part) {
    case 0xd08: return "Cortex-A72";
    case 0xd0b: return "Cortex-A76";
    case 0xd0c: return "Neoverse-N1";
    case 0xd40: return "Neoverse-V1";
    case 0xd49: return "Neoverse-N2";
    case 0xd4f: return "Neoverse-V2";
    case 0xd84: return "Neoverse-V3";
    case 0xd8e: return "Neoverse-N3";
    default: return NULL;
    }
}

static void fill_from_cpuinfo(st_hw_info *info) {
    cpuinfo_fields f;
    cpuinfo_read(&f);
    if (!info->cpu_vendor[0]) {
        if (f.vendor_id[0]) {
            st__hw_copy_field(info->cpu_vendor, sizeof info->cpu_vendor, f.vendor_id);
        } else if (f.implementer[0]) {
            long code = strtol(f.implementer, NULL, 0);
            const char *name = arm_implementer_name(code);
            if (name)
                st__hw_copy_field(info->cpu_vendor, sizeof info->cpu_vendor, name);
            else
                snprintf(info->cpu_vendor, sizeof info->cpu_vendor, "implementer 0x%lx", code);
        }
    }
    if (!info->cpu_model[0]) {
        if (f.model_name[0]) {
            st__hw_copy_field(info->cpu_model, sizeof info->cpu_model, f.model_name);
        } else if (f.part[0]) {
            long part = strtol(f.part, NULL, 0);
            long impl = f.implementer[0] ? strtol(f.implementer, NULL, 0) : 0;
            const char *name = impl == 0x41 ? arm_part_name(part) : NULL;
            if (name)
                st__hw_copy_field(info->cpu_model, sizeof info->cpu_model, name);
            else
                snprintf(info->cpu_model, sizeof info->cpu_model, "part 0x%lx", part);
        }
    }
}

/* ---- x86 ------------------------------------------------------------------ */
#ifdef ST_HW_X86
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    /* The instruction's bytes, so no -mxsave is needed; only run after the
     * OSXSAVE bit said it exists. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t x86_simd(void) {
    unsigned a, b, c, d;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 1) return 0;
    __cpuid(1, a, b, c, d);
    unsigned ecx1 = c;
    uint32_t bits = 0;
    if (ecx1 & (1u << 20)) bits |= ST_HW_SSE42;

    uint64_t xcr0 = 0;
    if (ecx1 & (1u << 27)) xcr0 = xgetbv0(); /* OSXSAVE */
    const int os_avx = (xcr0 & 0x6) == 0x6;
    const int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
    const int os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);

    if (os_avx) {
        if (ecx1 & (1u << 28)) bits |= ST_HW_AVX;
        if (ecx1 & (1u << 12)) bits |= ST_HW_FMA;
        if (ecx1 & (1u << 29)) bits |= ST_HW_F16C;
    }
    if (max_leaf < 7) return bits;

    __cpuid_count(7, 0, a, b, c, d);
    unsigned max_sub7 = a, ebx7 = b, ecx7 = c, edx7 = d;
    if (os_avx && (ebx7 & (1u << 5))) bits |= ST_HW_AVX2;
    if (os_avx512) {
        if (ebx7 & (1u << 16)) bits |= ST_HW_AVX512F;
        if (ebx7 & (1u << 17)) bits |= ST_HW_AVX512DQ;
        if (ebx7 & (1u << 30)) bits |= ST_HW_AVX512BW;
        if (ebx7 & (1u << 31)) bits |= ST_HW_AVX512VL;
        if (ecx7 & (1u << 11)) bits |= ST_HW_AVX512_VNNI;
    }
    if (os_amx) {
        if (edx7 & (1u << 24)) bits |= ST_HW_AMX_TILE;
        if (edx7 & (1u << 22)) bits |= ST_HW_AMX_BF16;
        if (edx7 & (1u << 25)) bits |= ST_HW_AMX_INT8;
    }
    if (max_sub7 >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        if (os_avx && (a & (1u << 4))) bits |= ST_HW_AVX_VNNI;
        if (os_avx512 && (a & (1u << 5))) bits |= ST_HW_AVX512_BF16;
    }
    /* AVX-512 extensions are meaningless without the foundation. */
    if (!(bits & ST_HW_AVX512F))
        bits &= ~(uint32_t)(ST_HW_AVX512BW | ST_HW_AVX512VL | ST_HW_AVX512DQ |
                            ST_HW_AVX512_BF16 | ST_HW_AVX512_VNNI);
    return bits;
}

static void x86_ident(st_hw_info *info) {
    unsigned a, b, c, d;
    __cpuid(0, a, b, c, d); /* leaf 0 exists on every x86-64 */
    char v[13];
    memcpy(v + 0, &b, 4);
    memcpy(v + 4, &d, 4);
    memcpy(v + 8, &c, 4);
    v[12] = '\0';
    st__hw_copy_field(info->cpu_vendor, sizeof info->cpu_vendor, v);
    if ((unsigned)__get_cpuid_max(0x80000000, NULL) >= 0x80000004u) {
        char brand[49];
        for (unsigned i = 0; i < 3; i++) {
            __cpuid(0x80000002 + i, a, b, c, d);
            memcpy(brand + 16 * i + 0, &a, 4);
            memcpy(brand + 16 * i + 4, &b, 4);
            memcpy(brand + 16 * i + 8, &c, 4);
            memcpy(brand + 16 * i + 12, &d, 4);
        }
        brand[48] = '\0';
        st__hw_copy_field(info->cpu_model, sizeof info->cpu_model, brand);
    }
}

/* Deterministic cache parameters (Intel leaf 4, same layout as AMD's
 * 0x8000001D): one sub-leaf per cache until type 0. */
static void x86_caches_leaf4(st_hw_info *info, unsigned leaf) {
    for (unsigned i = 0; i < 16; i++) {
        unsigned a, b, c, d;
        __cpuid_count(leaf, i, a, b, c, d);
        unsigned type = a & 31, level = (a >> 5) & 7;
        if (type == 0) break;
        uint64_t ways = ((b >> 22) & 0x3ff) + 1, parts = ((b >> 12) & 0x3ff) + 1;
        uint64_t line = (b & 0xfff) + 1, sets = (uint64_t)c + 1;
        uint64_t size = ways * parts * line * sets;
        if (level == 1 && type == 1 && !info->l1d_bytes) info->l1d_bytes = size;
        if (level == 2 && type != 2 && !info->l2_bytes) info->l2_bytes = size;
        if (level == 3 && type != 2 && !info->l3_bytes) info->l3_bytes = size;
        if (level == 1 && type == 1 && !info->cacheline_bytes) info->cacheline_bytes = (int)line;
    }
}

static void x86_caches(st_hw_info *info) {
    unsigned a, b, c, d;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    unsigned max_ext = __get_cpuid_max(0x80000000, NULL);
    __cpuid(0, a, b, c, d);
    const int intel = b == 0x756e6547; /* "Genu" */
    if (intel && max_leaf >= 4) x86_caches_leaf4(info, 4);
    if (!intel && max_ext >= 0x80000006) {
        /* AMD (and Hygon): L1d in KiB in 0x80000005 ECX[31:24]; L2 in KiB in
         * 0x80000006 ECX[31:16]; L3 in 512 KiB units in EDX[31:18], the
         * whole chip's. */
        __cpuid(0x80000005, a, b, c, d);
        if (!info->l1d_bytes) info->l1d_bytes = (uint64_t)(c >> 24) * 1024;
        if (!info->cacheline_bytes && (c & 0xff)) info->cacheline_bytes = (int)(c & 0xff);
        __cpuid(0x80000006, a, b, c, d);
        if (!info->l2_bytes) info->l2_bytes = (uint64_t)(c >> 16) * 1024;
        if (!info->l3_bytes) info->l3_bytes = (uint64_t)(d >> 18) * 512 * 1024;
    }
    if (!info->cacheline_bytes && max_leaf >= 1) {
        __cpuid(1, a, b, c, d);
        info->cacheline_bytes = (int)(((b >> 8) & 0xff) * 8); /* CLFLUSH size */
    }
}
#endif /* ST_HW_X86 */

/* ---- aarch64 ---------------------------------------------------------------- */
#ifdef ST_HW_ARM64
/* Values from the kernel's arch/arm64/include/uapi/asm/hwcap.h, spelled out
 * so that old headers still compile. */
#define K_HWCAP_ASIMD (1ul << 1)
#define K_HWCAP_ASIMDDP (1ul << 20)
#define K_HWCAP_SVE (1ul << 22)
#define K_HWCAP2_SVE2 (1ul << 1)
#define K_HWCAP2_BF16 (1ul << 14)

static uint32_t arm64_simd(void) {
    unsigned long hw = getauxval(AT_HWCAP);
    unsigned long hw2 = 0;
#ifdef AT_HWCAP2
    hw2 = getauxval(AT_HWCAP2);
#endif
    uint32_t bits = 0;
    if (hw & K_HWCAP_ASIMD) bits |= ST_HW_NEON;
    if (hw & K_HWCAP_ASIMDDP) bits |= ST_HW_ARM_DOTPROD;
    if (hw & K_HWCAP_SVE) bits |= ST_HW_SVE;
    if (hw2 & K_HWCAP2_SVE2) bits |= ST_HW_SVE2;
    if (hw2 & K_HWCAP2_BF16) bits |= ST_HW_ARM_BF16;
    return bits;
}
#endif

uint32_t st__hw_cpu_simd(void) {
#if defined(ST_HW_X86)
    return x86_simd();
#elif defined(ST_HW_ARM64)
    return arm64_simd();
#elif defined(__aarch64__)
    return ST_HW_NEON; /* Advanced SIMD is mandatory in AArch64 */
#else
    return 0;
#endif
}

void st__hw_cpu_caches(st_hw_info *info) {
#ifdef ST_HW_X86
    x86_caches(info);
#else
    (void)info;
#endif
}

void st__hw_cpu_fill(st_hw_info *info) {
    struct utsname u;
    if (uname(&u) == 0) st__hw_copy_field(info->arch, sizeof info->arch, u.machine);
#ifdef ST_HW_X86
    x86_ident(info);
#endif
    fill_from_cpuinfo(info); /* fills only what is still empty */
    info->simd = st__hw_cpu_simd();
}

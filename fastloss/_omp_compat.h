/* OpenMP when the build has it, single-threaded stand-ins when it does not.
 * Kernels call these names unconditionally; setup.py decides whether _OPENMP is defined.
 * Also the build facts that `fastloss info` reports: compiler, OpenMP, the SIMD instruction sets
 * the compiler was allowed to use (the OpenMP runtime library is found by _omp_runtime.h). */
#ifndef FASTLOSS_OMP_COMPAT_H
#define FASTLOSS_OMP_COMPAT_H

#ifdef _OPENMP
#include <omp.h>
#define FASTLOSS_OPENMP 1
#define FASTLOSS_OPENMP_VERSION _OPENMP
#else
#define FASTLOSS_OPENMP 0
#define FASTLOSS_OPENMP_VERSION 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_procs(void) { return 1; }
static inline int omp_in_parallel(void) { return 0; }
#endif

/* What setup.py was asked (FASTLOSS_OPENMP): 0 off, 1 required, 2 unset (auto); -1 unknown. */
#ifndef FASTLOSS_OPENMP_REQUEST
#define FASTLOSS_OPENMP_REQUEST -1
#endif

/* What the compiler was told it may use for SIMD (the build's baseline, not the running CPU). */
#if defined(__AVX512F__)
#define FASTLOSS_SIMD "AVX512F"
#elif defined(__AVX2__)
#define FASTLOSS_SIMD "AVX2"
#elif defined(__AVX__)
#define FASTLOSS_SIMD "AVX"
#elif defined(__SSE4_2__)
#define FASTLOSS_SIMD "SSE4.2"
#elif defined(__SSE2__) || defined(_M_X64)
#define FASTLOSS_SIMD "SSE2"
#elif defined(__ARM_NEON) || defined(__aarch64__) || defined(_M_ARM64)
#define FASTLOSS_SIMD "NEON"
#else
#define FASTLOSS_SIMD "none"
#endif

/* Every instruction-set extension the compiler may use, space-separated (from its predefined
 * macros; MSVC on x86-64 always has SSE2 and defines __AVX__/__AVX2__/__AVX512F__ under /arch). */
#if defined(__SSE__) || defined(_M_X64)
#define FASTLOSS_S_SSE " SSE"
#else
#define FASTLOSS_S_SSE ""
#endif
#if defined(__SSE2__) || defined(_M_X64)
#define FASTLOSS_S_SSE2 " SSE2"
#else
#define FASTLOSS_S_SSE2 ""
#endif
#if defined(__SSE3__)
#define FASTLOSS_S_SSE3 " SSE3"
#else
#define FASTLOSS_S_SSE3 ""
#endif
#if defined(__SSSE3__)
#define FASTLOSS_S_SSSE3 " SSSE3"
#else
#define FASTLOSS_S_SSSE3 ""
#endif
#if defined(__SSE4_1__)
#define FASTLOSS_S_SSE41 " SSE4.1"
#else
#define FASTLOSS_S_SSE41 ""
#endif
#if defined(__SSE4_2__)
#define FASTLOSS_S_SSE42 " SSE4.2"
#else
#define FASTLOSS_S_SSE42 ""
#endif
#if defined(__AVX__)
#define FASTLOSS_S_AVX " AVX"
#else
#define FASTLOSS_S_AVX ""
#endif
#if defined(__AVX2__)
#define FASTLOSS_S_AVX2 " AVX2"
#else
#define FASTLOSS_S_AVX2 ""
#endif
#if defined(__FMA__)
#define FASTLOSS_S_FMA " FMA"
#else
#define FASTLOSS_S_FMA ""
#endif
#if defined(__AVX512F__)
#define FASTLOSS_S_AVX512F " AVX512F"
#else
#define FASTLOSS_S_AVX512F ""
#endif
#if defined(__AVX512DQ__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define FASTLOSS_S_AVX512X " AVX512DQ AVX512VL AVX512BW"
#else
#define FASTLOSS_S_AVX512X ""
#endif
#if defined(__ARM_NEON) || defined(_M_ARM64)
#define FASTLOSS_S_NEON " NEON"
#else
#define FASTLOSS_S_NEON ""
#endif
#if defined(__ARM_FEATURE_SVE)
#define FASTLOSS_S_SVE " SVE"
#else
#define FASTLOSS_S_SVE ""
#endif
#define FASTLOSS_SIMD_TARGETS                                                                    \
    FASTLOSS_S_SSE FASTLOSS_S_SSE2 FASTLOSS_S_SSE3 FASTLOSS_S_SSSE3 FASTLOSS_S_SSE41              \
    FASTLOSS_S_SSE42 FASTLOSS_S_AVX FASTLOSS_S_AVX2 FASTLOSS_S_FMA FASTLOSS_S_AVX512F FASTLOSS_S_AVX512X \
    FASTLOSS_S_NEON FASTLOSS_S_SVE ""

#define FASTLOSS_STR_(x) #x
#define FASTLOSS_STR(x) FASTLOSS_STR_(x)

/* Kernel calls running at this moment in this module (from any Python thread). A call shares the
 * requested threads with the others, so that N callers from another pool do not start N full
 * OpenMP teams on the same cores. Block boundaries do not depend on it: results are unchanged. */
static long fastloss_active_calls = 0;
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline long fastloss_enter(void) { return _InterlockedIncrement(&fastloss_active_calls); }
static inline void fastloss_leave(void) { _InterlockedDecrement(&fastloss_active_calls); }
#else
static inline long fastloss_enter(void)
{
    return __atomic_add_fetch(&fastloss_active_calls, 1, __ATOMIC_RELAXED);
}
static inline void fastloss_leave(void)
{
    __atomic_sub_fetch(&fastloss_active_calls, 1, __ATOMIC_RELAXED);
}
#endif

/* A monotonic clock in seconds, for timing a call's first block (see threads_after_first in
 * _blocks.pxd). Without OpenMP there is only one thread to choose, and the clock reads 0. */
static inline double fastloss_now(void)
{
#ifdef _OPENMP
    return omp_get_wtime();
#else
    return 0.0;
#endif
}

/* Whether the running CPU has AVX2 and FMA (the instruction sets of the *_avx2 kernel modules). */
static inline int fastloss_cpu_avx2_fma(void)
{
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* Whether the running CPU (and its OS) has AVX-512 F, DQ, VL and BW, with AVX2 and FMA: the
 * instruction sets of the *_avx512 kernel modules (libgcc's check includes the OS's saving
 * of the 512-bit state). */
static inline int fastloss_cpu_avx512(void)
{
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return fastloss_cpu_avx2_fma() && __builtin_cpu_supports("avx512f")
           && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
           && __builtin_cpu_supports("avx512bw");
#else
    return 0;
#endif
}

#if defined(__clang__)
#define FASTLOSS_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define FASTLOSS_COMPILER "gcc " __VERSION__
#elif defined(_MSC_VER)
#define FASTLOSS_COMPILER "msvc " FASTLOSS_STR(_MSC_FULL_VER)
#else
#define FASTLOSS_COMPILER "unknown"
#endif

/* The machine the code was compiled for. */
#if defined(__x86_64__) || defined(_M_X64)
#define FASTLOSS_ARCH "x86_64"
#elif defined(__aarch64__) || defined(_M_ARM64)
#define FASTLOSS_ARCH "aarch64"
#elif defined(__i386__) || defined(_M_IX86)
#define FASTLOSS_ARCH "x86"
#else
#define FASTLOSS_ARCH "other"
#endif
#endif

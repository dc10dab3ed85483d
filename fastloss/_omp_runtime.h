/* Which OpenMP runtime library is in use: for `fastloss info`, included by _core.pyx only (it
 * pulls in platform headers the kernels need not see). */
#ifndef FASTLOSS_OMP_RUNTIME_H
#define FASTLOSS_OMP_RUNTIME_H
#include <string.h>
#include "_omp_compat.h"

/* The OpenMP runtime library this module calls into, found from the address of one of its
 * functions as the dynamic linker resolved it for this module (so a runtime bundled in the
 * wheel, a system one or one forced in with LD_PRELOAD is named as it really is). Writes the
 * library's path into buf and returns 1, or returns 0 (serial build, or the platform cannot
 * tell). ELF systems walk the loaded objects (dl_iterate_phdr, in libc itself, no -ldl);
 * macOS uses dladdr; Windows asks for the module that holds the address. */
#if FASTLOSS_OPENMP && defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
static int fastloss_openmp_runtime(char *buf, int size)
{
    HMODULE mod = NULL;
    DWORD n;
    if (!GetModuleHandleExA(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                                GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                            (LPCSTR)(void *)&omp_get_num_procs, &mod))
        return 0;
    n = GetModuleFileNameA(mod, buf, (DWORD)size);
    return n > 0 && n < (DWORD)size;
}
#elif FASTLOSS_OPENMP && defined(__APPLE__)
#include <dlfcn.h>
static int fastloss_openmp_runtime(char *buf, int size)
{
    Dl_info info;
    if (!dladdr((const void *)&omp_get_num_procs, &info) || info.dli_fname == NULL)
        return 0;
    strncpy(buf, info.dli_fname, (size_t)size - 1);
    buf[size - 1] = '\0';
    return 1;
}
#elif FASTLOSS_OPENMP && (defined(__linux__) || defined(__FreeBSD__))
#include <link.h>
#include <stdint.h>
struct fastloss_find_object { uintptr_t addr; const char *name; };
static int fastloss_find_object_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    struct fastloss_find_object *f = (struct fastloss_find_object *)data;
    int i;
    (void)size;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = (uintptr_t)info->dlpi_addr + (uintptr_t)ph->p_vaddr;
        if (ph->p_type == PT_LOAD && f->addr >= start && f->addr < start + ph->p_memsz) {
            f->name = info->dlpi_name;
            return 1;
        }
    }
    return 0;
}
static int fastloss_openmp_runtime(char *buf, int size)
{
    struct fastloss_find_object f;
    f.addr = (uintptr_t)(void *)&omp_get_num_procs;
    f.name = NULL;
    dl_iterate_phdr(fastloss_find_object_cb, &f);
    if (f.name == NULL || f.name[0] == '\0')  /* "" is the main program: linked statically */
        return 0;
    strncpy(buf, f.name, (size_t)size - 1);
    buf[size - 1] = '\0';
    return 1;
}
#else
static int fastloss_openmp_runtime(char *buf, int size)
{
    (void)buf;
    (void)size;
    return 0;
}
#endif
#endif

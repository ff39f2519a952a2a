/* hide_avx512.so: run a process as if its CPU had no AVX-512, AMX or AVX-VNNI (x86-64 Linux only).
 *
 * Libraries that choose their kernels from CPUID (ONNX Runtime's MLAS, OpenBLAS, oneDNN) then pick their AVX2
 * code, as on an AVX2-only CPU; the cores, caches and clocks stay this machine's. Used to time ONNX Runtime's
 * AVX2 kernels beside TVM code compiled for x86-64-v3 (docs/design.md, "Logs for an ISA level").
 *
 *   gcc -O2 -shared -fPIC docs/hide_avx512.c -o hide_avx512.so -ldl
 *   LD_PRELOAD=$PWD/hide_avx512.so python -c "import numpy; numpy.show_config()"   # OpenBLAS: Haswell
 *
 * How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, 0; the CPU or hypervisor must support it, see
 * `cpuid_fault` in /proc/cpuinfo) makes every CPUID instruction raise SIGSEGV; the handler runs the real CPUID,
 * clears the feature bits, and steps over the instruction. The setting is inherited by threads and forked
 * children and reset by exec, where LD_PRELOAD sets it up again. SIGSEGV handlers that the program installs are
 * kept and called for every other fault. LLVM's CPU name (and so TVM's host target) does not change: compile TVM
 * for the ISA level explicitly.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <ucontext.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cpuid.h>
#include <string.h>
#include <dlfcn.h>
#include <errno.h>
static struct sigaction next_action; static int have_next;
#define ARCH_SET_CPUID 0x1012
static void handler(int sig, siginfo_t *si, void *vctx) {
  ucontext_t *uc = vctx; greg_t *g = uc->uc_mcontext.gregs;
  unsigned char *ip = (unsigned char *)g[REG_RIP];
  if (ip[0] != 0x0f || ip[1] != 0xa2) {
    if (have_next && (next_action.sa_flags & SA_SIGINFO)) { next_action.sa_sigaction(sig, si, vctx); return; }
    if (have_next && next_action.sa_handler != SIG_DFL && next_action.sa_handler != SIG_IGN) { next_action.sa_handler(sig); return; }
    struct sigaction dfl; memset(&dfl, 0, sizeof dfl); dfl.sa_handler = SIG_DFL;
    int (*real)(int, const struct sigaction *, struct sigaction *) = dlsym(RTLD_NEXT, "sigaction");
    real(SIGSEGV, &dfl, 0); return;
  }
  unsigned leaf = (unsigned)g[REG_RAX], sub = (unsigned)g[REG_RCX], a, b, c, d;
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
  __cpuid_count(leaf, sub, a, b, c, d);
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
  if (leaf == 7 && sub == 0) {
    b &= ~((1u<<16)|(1u<<17)|(1u<<21)|(1u<<26)|(1u<<27)|(1u<<28)|(1u<<30)|(1u<<31));
    c &= ~((1u<<1)|(1u<<6)|(1u<<11)|(1u<<12)|(1u<<14));
    d &= ~((1u<<2)|(1u<<3)|(1u<<8)|(1u<<22)|(1u<<23)|(1u<<24)|(1u<<25));
  }
  if (leaf == 7 && sub == 1) a &= ~((1u<<4)|(1u<<5));
  if (leaf == 0xd && sub == 0) a &= ~0xe0u;
  g[REG_RAX] = a; g[REG_RBX] = b; g[REG_RCX] = c; g[REG_RDX] = d; g[REG_RIP] += 2;
}
__attribute__((constructor)) static void hide_init(void) {
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  int (*real)(int, const struct sigaction *, struct sigaction *) = dlsym(RTLD_NEXT, "sigaction");
  real(SIGSEGV, &sa, 0);
  if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
    /* No CPUID faulting on this CPU or hypervisor: nothing is hidden. Say so, once per process, rather than let a
       run pass for an AVX2 view. */
    static const char msg[] = "hide_avx512.so: CPUID faulting is not available here (no cpuid_fault in "
                              "/proc/cpuinfo): AVX-512 stays visible, this is NOT an AVX2 view\n";
    if (write(2, msg, sizeof msg - 1) < 0) {}
  }
}

/* Others' SIGSEGV handlers are kept and called for faults that are not CPUID. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  int (*real)(int, const struct sigaction *, struct sigaction *) = dlsym(RTLD_NEXT, "sigaction");
  if (sig != SIGSEGV) return real(sig, act, old);
  if (old) { if (have_next) *old = next_action; else { memset(old, 0, sizeof *old); old->sa_handler = SIG_DFL; } }
  if (act) { next_action = *act; have_next = 1; }
  return 0;
}
sighandler_t signal(int sig, sighandler_t h) {
  if (sig != SIGSEGV) { sighandler_t (*real)(int, sighandler_t) = dlsym(RTLD_NEXT, "signal"); return real(sig, h); }
  sighandler_t prev = have_next ? next_action.sa_handler : SIG_DFL;
  memset(&next_action, 0, sizeof next_action); next_action.sa_handler = h; have_next = 1;
  return prev;
}

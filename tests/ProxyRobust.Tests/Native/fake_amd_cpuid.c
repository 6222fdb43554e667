// Makes a program see an AMD CPU whose cache leaf (CPUID 0x8000001D) is empty, as in the virtual machines where
// oneDNN computed wrong convolutions (src/ProxyRobust/Native/OneDnnGuard.cs). Loaded with LD_PRELOAD on a Linux host
// that supports CPUID faulting (the cpuid_fault flag in /proc/cpuinfo): every CPUID then traps (SIGSEGV), and the
// handler runs the real instruction with faulting briefly off, changes the answer and steps over it. Everything else
// (ISA flags, topology) stays the host's. Such VMs still answer AMD's older cache leaves (0x80000005 for L1,
// 0x80000006 for L2 and L3), so those are filled in from the host's own caches (Intel's leaf 4), unless the environment
// sets FAKE_AMD_NO_OLD_LEAVES=1, which leaves them empty too. Used only by the tests: OneDnnGuardTests compiles it with
// cc.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static struct sigaction chained; // the program's own SIGSEGV handler (the .NET runtime installs one)
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static int old_leaves = 1;

// Bytes of the host's data or unified cache at a level, from Intel's leaf 4 (0 when it has none).
static uint64_t host_cache(uint32_t level) {
  for (uint32_t sub = 0; sub < 16; sub++) {
    uint32_t r[4];
    cpuid(4, sub, r);
    uint32_t type = r[0] & 31;
    if (type == 0)
      break;
    if ((type == 1 || type == 3) && ((r[0] >> 5) & 7) == level)
      return (uint64_t)((r[1] >> 22) + 1) * (((r[1] >> 12) & 1023) + 1) * ((r[1] & 4095) + 1) * (r[2] + 1ull);
  }
  return 0;
}

static void on_segv(int sig, siginfo_t *info, void *context) {
  ucontext_t *uc = context;
  greg_t *regs = uc->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
  if (ip[0] == 0x0f && ip[1] == 0xa2) { // cpuid
    uint32_t leaf = (uint32_t)regs[REG_RAX], sub = (uint32_t)regs[REG_RCX], r[4];
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    cpuid(leaf, sub, r);
    uint64_t l1 = 0, l2 = 0, l3 = 0;
    if (leaf == 0x80000005 || leaf == 0x80000006)
      l1 = host_cache(1), l2 = host_cache(2), l3 = host_cache(3);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    if (leaf == 0) { // vendor "AuthenticAMD" in EBX, EDX, ECX
      memcpy(&r[1], "Auth", 4);
      memcpy(&r[3], "enti", 4);
      memcpy(&r[2], "cAMD", 4);
    }
    if (leaf == 0x80000000 && r[0] < 0x8000001D)
      r[0] = 0x8000001D;
    if (leaf == 0x8000001D)
      r[0] = r[1] = r[2] = r[3] = 0;
    if (leaf == 0x80000005) // L1 data in KiB in ECX[31:24]
      r[2] = old_leaves ? (uint32_t)(l1 >> 10) << 24 : 0;
    if (leaf == 0x80000006) { // L2 in KiB in ECX[31:16], L3 in 512 KiB units in EDX[31:18]
      r[2] = old_leaves ? (uint32_t)(l2 >> 10) << 16 : 0;
      r[3] = old_leaves ? (uint32_t)(l3 >> 19) << 18 : 0;
    }
    regs[REG_RAX] = r[0];
    regs[REG_RBX] = r[1];
    regs[REG_RCX] = r[2];
    regs[REG_RDX] = r[3];
    regs[REG_RIP] += 2;
    return;
  }
  if (chained.sa_flags & SA_SIGINFO)
    chained.sa_sigaction(sig, info, context);
  else if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN)
    chained.sa_handler(sig);
  else {
    signal(sig, SIG_DFL);
    raise(sig);
  }
}

// Our handler stays first: the .NET runtime's own SIGSEGV handler runs CPUID itself, so it is kept to chain to.
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  if (!real_sigaction)
    real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
  if (sig != SIGSEGV)
    return real_sigaction(sig, act, old);
  if (old)
    *old = chained;
  if (act)
    chained = *act;
  return 0;
}

__attribute__((constructor)) static void start(void) {
  const char *no_old = getenv("FAKE_AMD_NO_OLD_LEAVES");
  old_leaves = !(no_old && no_old[0] == '1');
  real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  real_sigaction(SIGSEGV, &sa, &chained);
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

/*
 * didbench: the guest side of `cargo xtask bench` (docs/evaluation.md). One workload per run,
 * pinned to vCPU 0 (and vCPU 1 for ipi), bracketed by the hypervisor's exit counters and the
 * guest's own interrupt counts, reported as `key=value` words on short lines that all start
 * with `didvisor-bench: workload=NAME` (one record per workload, in this order):
 *
 *   ops=N ns=T [p50_ns=.. p99_ns=..] [sum=..]
 *   irqs=I loc=L res=R hv=didvisor|kvm|none
 *   exits=E cpuid=.. intr=.. eoi=.. timer=..            (under didvisor only)
 *   ipi=.. injected=.. hlt=.. msr=.. npf=.. ioio=..     (under didvisor only)
 *
 * Workloads: idle MS (one sleep of MS ms), timer N (N sleeps of 1 ms; latency = time asleep
 * minus 1 ms), ipi N (N futex ping-pong round trips between threads on CPU 0 and CPU 1; each
 * wake-up of the halted other CPU is a rescheduling IPI), cpu N (N million rounds of an integer
 * mixing kernel; no memory traffic, no system calls), nvme-rand N (N reads of 4 KiB at random
 * 4 KiB-aligned offsets of /dev/nvme0n1, O_DIRECT, one at a time: QD1), nvme-seq N (N MiB read
 * sequentially from the start of /dev/nvme0n1 in 128 KiB O_DIRECT reads). The nvme workloads count
 * the exits of both vCPUs (the completion interrupt may land on either): the thread hops to
 * CPU 1 to read its counters at both ends of the window.
 *
 * Exit counters: CPUID leaf 4000_0002h, ECX = counter index (kernel/src/exit_counters.rs), read
 * on the vCPU being counted. `exits` is the total minus CPUID exits (the reads themselves).
 * Interrupts: the rows of /proc/interrupts for the CPUs involved; read inside the exit window.
 *
 * Under KVM (signature KVMKVMKVM at 4000_0000h: the `kvm` columns, an L2 whose L1 counts its
 * exits) the window is marked on the console instead: `didvisor-bench-mark: NAME begin` before
 * it and `... end` after it, each followed by MARK_SETTLE_MS of sleep, in which the L1 reading
 * the console snapshots KVM's exit statistics (tests/qemu-avic/kvm-l1-init.sh).
 *
 * Built static by xtask (gcc -static, glibc): the initramfs has no dynamic loader.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HV_BASE 0x40000000u
#define COUNTER_LEAF 0x40000002u
/* The order of kernel/src/exit_counters.rs Counter::ALL. */
static const char *const COUNTER_NAMES[] = {"total", "cpuid", "intr", "eoi", "timer", "ipi",
					    "injected", "hlt", "msr", "npf", "ioio"};
#define NCOUNTERS (sizeof(COUNTER_NAMES) / sizeof(COUNTER_NAMES[0]))

struct counters {
	uint64_t v[NCOUNTERS];
};

static int have_didvisor(void)
{
	unsigned a, b, c, d;
	__cpuid(HV_BASE, a, b, c, d);
	return b == 0x76646964 /* "didv" */ && c == 0x726f7369 /* "isor" */ && a >= COUNTER_LEAF;
}

#define MARK_SETTLE_MS 300

static int have_kvm(void)
{
	unsigned a, b, c, d;
	__cpuid(HV_BASE, a, b, c, d);
	(void)a;
	return b == 0x4b4d564b /* "KVMK" */ && c == 0x564b4d56 /* "VMKV" */ && d == 0x4d /* "M" */;
}

static void sleep_ms(unsigned ms);

/* Under KVM: tells the L1 where a window begins or ends and gives it time to snapshot. */
static void mark(const char *name, const char *edge)
{
	if (!have_kvm())
		return;
	printf("didvisor-bench-mark: %s %s\n", name, edge);
	fflush(stdout);
	sleep_ms(MARK_SETTLE_MS);
}

/* This vCPU's counters (the caller is pinned). */
static void read_counters(struct counters *out)
{
	for (unsigned i = 0; i < NCOUNTERS; i++) {
		unsigned a, b, c, d;
		__cpuid_count(COUNTER_LEAF, i, a, b, c, d);
		out->v[i] = ((uint64_t)b << 32) | a;
	}
}

static void add_delta(struct counters *sum, const struct counters *a, const struct counters *b)
{
	for (unsigned i = 0; i < NCOUNTERS; i++)
		sum->v[i] += b->v[i] - a->v[i];
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	if (sched_setaffinity(0, sizeof(s), &s) != 0)
		die("sched_setaffinity");
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Interrupts taken by CPUs [0, ncpu) from /proc/interrupts: all rows, the LOC row, the RES row. */
struct irqs {
	uint64_t all, loc, res;
};

static struct irqs read_irqs(int ncpu)
{
	struct irqs r = {0, 0, 0};
	char line[1024];
	FILE *f = fopen("/proc/interrupts", "r");
	if (!f)
		die("/proc/interrupts");
	if (!fgets(line, sizeof(line), f)) /* the CPU header */
		die("/proc/interrupts header");
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ':');
		if (!p)
			continue;
		*p++ = 0;
		const char *label = line + strspn(line, " ");
		uint64_t row = 0;
		for (int c = 0; c < ncpu; c++) {
			char *end;
			unsigned long long n = strtoull(p, &end, 10);
			if (end == p)
				break;
			row += n;
			p = end;
		}
		r.all += row;
		if (strcmp(label, "LOC") == 0)
			r.loc += row;
		if (strcmp(label, "RES") == 0)
			r.res += row;
	}
	fclose(f);
	return r;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* A window: counters first and last, interrupts inside them (every interrupt the guest counts
 * falls inside the exit window). */
struct window {
	const char *name;
	int hv, ncpu, both;
	struct counters c0, c0_cpu1;
	struct irqs i0;
	uint64_t t0;
};

/* CPU 1's counters, read by hopping there and back to CPU 0. */
static void read_counters_cpu1(struct counters *out)
{
	pin(1);
	read_counters(out);
	pin(0);
}

static void begin(struct window *w, int ncpu, const char *name)
{
	w->name = name;
	w->hv = have_didvisor();
	if (!w->hv)
		mark(name, "begin");
	w->ncpu = ncpu;
	w->both = 0;
	if (w->hv)
		read_counters(&w->c0);
	w->i0 = read_irqs(ncpu);
	w->t0 = now_ns();
}

/* Ends the window; `extra` holds counter deltas of other vCPUs (ipi), `tail` extra fields. */
static void report(struct window *w, const char *name, uint64_t ops, const struct counters *extra,
		   const char *tail)
{
	uint64_t ns = now_ns() - w->t0;
	struct irqs i1 = read_irqs(w->ncpu);
	if (!w->hv)
		mark(name, "end");
	struct counters c1, d;
	memset(&d, 0, sizeof(d));
	if (w->hv) {
		read_counters(&c1);
		add_delta(&d, &w->c0, &c1);
		if (w->both) {
			read_counters_cpu1(&c1);
			add_delta(&d, &w->c0_cpu1, &c1);
		}
		if (extra)
			for (unsigned k = 0; k < NCOUNTERS; k++)
				d.v[k] += extra->v[k];
	}
	/* Short lines: the hypervisor's console breaks a guest line at 160 bytes. */
	printf("didvisor-bench: workload=%s ops=%llu ns=%llu%s\n", name, (unsigned long long)ops,
	       (unsigned long long)ns, tail);
	printf("didvisor-bench: workload=%s irqs=%llu loc=%llu res=%llu hv=%s\n", name,
	       (unsigned long long)(i1.all - w->i0.all), (unsigned long long)(i1.loc - w->i0.loc),
	       (unsigned long long)(i1.res - w->i0.res),
	       w->hv ? "didvisor" : have_kvm() ? "kvm" : "none");
	if (w->hv) {
		printf("didvisor-bench: workload=%s exits=%llu", name,
		       (unsigned long long)(d.v[0] - d.v[1]));
		for (unsigned k = 1; k < NCOUNTERS; k++) {
			if (k == NCOUNTERS / 2)
				printf("\ndidvisor-bench: workload=%s", name);
			printf(" %s=%llu", COUNTER_NAMES[k], (unsigned long long)d.v[k]);
		}
		printf("\n");
	}
	fflush(stdout);
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &t, &t) != 0)
		;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec t = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &t, &t) != 0)
		;
}

static void percentiles(uint64_t *v, uint64_t n, char *out, size_t len)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	snprintf(out, len, " p50_ns=%llu p99_ns=%llu", (unsigned long long)v[n / 2],
		 (unsigned long long)v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1]);
}

static void idle(uint64_t ms)
{
	struct window w;
	pin(0);
	begin(&w, 1, "idle");
	sleep_ns(ms * 1000000u);
	report(&w, "idle", 1, NULL, "");
}

static void timer(uint64_t n)
{
	uint64_t *lat = calloc(n, sizeof(*lat));
	char tail[96];
	struct window w;
	if (!lat)
		die("calloc");
	pin(0);
	begin(&w, 1, "timer");
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t = now_ns();
		sleep_ns(1000000u);
		uint64_t slept = now_ns() - t;
		lat[i] = slept > 1000000u ? slept - 1000000u : 0;
	}
	percentiles(lat, n, tail, sizeof(tail));
	report(&w, "timer", n, NULL, tail);
	free(lat);
}

/* ipi: the flag goes 1 (ping, to CPU 1) and 2 (pong, to CPU 0); futex wait/wake on it. */
static _Atomic int flag, ready, done;
static struct counters pong_delta;
static uint64_t rounds;

static void futex_wait(_Atomic int *f, int val)
{
	syscall(SYS_futex, f, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic int *f)
{
	syscall(SYS_futex, f, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *pong(void *arg)
{
	struct counters c0, c1;
	int hv = have_didvisor();
	(void)arg;
	pin(1);
	if (hv)
		read_counters(&c0);
	atomic_store(&ready, 1);
	for (uint64_t i = 0; i < rounds; i++) {
		int v;
		while ((v = atomic_load(&flag)) != 1)
			futex_wait(&flag, v);
		atomic_store(&flag, 2);
		futex_wake(&flag);
	}
	if (hv) {
		read_counters(&c1);
		add_delta(&pong_delta, &c0, &c1);
	}
	atomic_store(&done, 1);
	return NULL;
}

static void ipi(uint64_t n)
{
	pthread_t t;
	struct window w;
	uint64_t *rtt = calloc(n, sizeof(*rtt));
	char tail[96];
	if (!rtt)
		die("calloc");
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		printf("didvisor-bench: workload=ipi skipped (needs 2 cpus)\n");
		return;
	}
	pin(0);
	rounds = n;
	if (pthread_create(&t, NULL, pong, NULL) != 0)
		die("pthread_create");
	while (!atomic_load(&ready))
		sched_yield();
	usleep(10000); /* let CPU 1 go idle */
	begin(&w, 2, "ipi");
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		atomic_store(&flag, 1);
		futex_wake(&flag);
		int v;
		while ((v = atomic_load(&flag)) != 2)
			futex_wait(&flag, v);
		atomic_store(&flag, 0);
		rtt[i] = now_ns() - t0;
	}
	while (!atomic_load(&done))
		sched_yield();
	pthread_join(t, NULL);
	percentiles(rtt, n, tail, sizeof(tail));
	report(&w, "ipi", n, &pong_delta, tail);
	free(rtt);
}

/* A fixed integer kernel: n million rounds of multiply-xorshift, the result printed so the loop
 * cannot be dropped. */
static void cpu(uint64_t n)
{
	struct window w;
	char tail[64];
	uint64_t x = 0x9e3779b97f4a7c15u;
	pin(0);
	begin(&w, 1, "cpu");
	for (uint64_t i = 0; i < n * 1000000u; i++) {
		x ^= x >> 31;
		x *= 0xbf58476d1ce4e5b9u;
		x ^= i;
	}
	snprintf(tail, sizeof(tail), " sum=%016llx", (unsigned long long)x);
	report(&w, "cpu", n, NULL, tail);
}

/* /dev/nvme0n1 opened for O_DIRECT reads, its size, and an aligned buffer of `len` bytes. */
static int open_disk(uint64_t *size, void **buf, size_t len)
{
	int fd = open("/dev/nvme0n1", O_RDONLY | O_DIRECT);
	if (fd < 0)
		die("/dev/nvme0n1");
	if (ioctl(fd, BLKGETSIZE64, size) != 0)
		die("BLKGETSIZE64");
	if (posix_memalign(buf, 4096, len) != 0)
		die("posix_memalign");
	return fd;
}

/* Both vCPUs' counters, all CPUs' interrupts. */
static void begin_both(struct window *w, const char *name)
{
	pin(0);
	if (have_didvisor())
		read_counters_cpu1(&w->c0_cpu1);
	begin(w, 2, name);
	w->both = w->hv;
}

static void nvme_rand(uint64_t n)
{
	uint64_t size, x = 0x2545f4914f6cdd1du, *lat = calloc(n, sizeof(uint64_t));
	void *buf;
	char tail[96];
	struct window w;
	int fd = open_disk(&size, &buf, 4096);
	uint64_t blocks = (size < (64u << 20) ? size : (64u << 20)) / 4096;
	if (!lat || blocks == 0)
		die("nvme-rand: no memory or an empty disk");
	begin_both(&w, "nvme-rand");
	for (uint64_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t t = now_ns();
		if (pread(fd, buf, 4096, (off_t)((x % blocks) * 4096)) != 4096)
			die("nvme-rand: pread");
		lat[i] = now_ns() - t;
	}
	percentiles(lat, n, tail, sizeof(tail));
	report(&w, "nvme-rand", n, NULL, tail);
	close(fd);
	free(lat);
	free(buf);
}

static void nvme_seq(uint64_t mib)
{
	uint64_t size;
	void *buf;
	struct window w;
	const size_t chunk = 128 << 10;
	int fd = open_disk(&size, &buf, chunk);
	if (mib << 20 > size)
		die("nvme-seq: the disk is smaller than the read");
	begin_both(&w, "nvme-seq");
	for (uint64_t off = 0; off < mib << 20; off += chunk)
		if (pread(fd, buf, chunk, (off_t)off) != (ssize_t)chunk)
			die("nvme-seq: pread");
	report(&w, "nvme-seq", mib, NULL, "");
	close(fd);
	free(buf);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: didbench idle|timer|ipi|cpu|nvme-rand|nvme-seq N\n");
		return 2;
	}
	uint64_t n = strtoull(argv[2], NULL, 10);
	if (n == 0) {
		fprintf(stderr, "didbench: N must be a positive number (got %s)\n", argv[2]);
		return 2;
	}
	if (strcmp(argv[1], "idle") == 0)
		idle(n);
	else if (strcmp(argv[1], "timer") == 0)
		timer(n);
	else if (strcmp(argv[1], "ipi") == 0)
		ipi(n);
	else if (strcmp(argv[1], "cpu") == 0)
		cpu(n);
	else if (strcmp(argv[1], "nvme-rand") == 0)
		nvme_rand(n);
	else if (strcmp(argv[1], "nvme-seq") == 0)
		nvme_seq(n);
	else {
		fprintf(stderr, "didbench: unknown workload %s\n", argv[1]);
		return 2;
	}
	return 0;
}

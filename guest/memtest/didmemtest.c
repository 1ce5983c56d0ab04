/*
 * didmemtest MIB: a memory test of the guest's RAM above 4 GiB, for the large-guest test
 * (tests/tests/bigmem.rs). Run by guest/init.sh (step `memtest`) as root.
 *
 * It maps MIB MiB of anonymous memory and locks it in (Linux hands user pages out of
 * ZONE_NORMAL, the RAM above 4 GiB, before ZONE_DMA32), reads each page's physical frame from
 * /proc/self/pagemap (bits 54:0 = PFN, bit 63 = present; the PFN reads as 0 without
 * CAP_SYS_ADMIN), writes a pattern made of the physical address into every word of each page
 * above 4 GiB, then reads all of them back. Prints one line:
 *   didvisor-guest: memtest pages N high H bad B max-pa 0xADDR
 * (N pages mapped, H of them above 4 GiB, B words that read back wrong) and exits 0 only if
 * H > 0 and B = 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define FOUR_GIB (1ULL << 32)
#define PFN_MASK ((1ULL << 55) - 1)
#define PRESENT (1ULL << 63)

static uint64_t pattern(uint64_t pa, uint64_t i)
{
	return (pa + i * 8) ^ 0xd1d7a5e5c0ffee00ULL ^ (i * 0x9e3779b97f4a7c15ULL);
}

int main(int argc, char **argv)
{
	if (argc != 2 || strtoul(argv[1], NULL, 10) == 0) {
		fprintf(stderr, "usage: didmemtest MIB\n");
		return 2;
	}
	size_t pages = strtoul(argv[1], NULL, 10) * (1UL << 20) / PAGE;
	uint8_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (mem == MAP_FAILED || mlock(mem, pages * PAGE) != 0) {
		perror("didmemtest: mmap/mlock");
		return 1;
	}
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t *pa = calloc(pages, sizeof *pa);
	if (fd < 0 || !pa) {
		perror("didmemtest: pagemap");
		return 1;
	}
	size_t high = 0;
	uint64_t max_pa = 0;
	for (size_t p = 0; p < pages; p++) {
		uint64_t e;
		off_t at = (off_t)((uintptr_t)(mem + p * PAGE) / PAGE * 8);
		if (pread(fd, &e, 8, at) != 8 || !(e & PRESENT) || (e & PFN_MASK) == 0) {
			fprintf(stderr, "didmemtest: no frame for page %zu (pagemap %#" PRIx64 ")\n", p, e);
			return 1;
		}
		pa[p] = (e & PFN_MASK) * PAGE;
		if (pa[p] > max_pa)
			max_pa = pa[p];
		if (pa[p] >= FOUR_GIB)
			high++;
	}
	for (size_t p = 0; p < pages; p++) {
		if (pa[p] < FOUR_GIB)
			continue;
		volatile uint64_t *w = (volatile uint64_t *)(mem + p * PAGE);
		for (uint64_t i = 0; i < PAGE / 8; i++)
			w[i] = pattern(pa[p], i);
	}
	uint64_t bad = 0;
	for (size_t p = 0; p < pages; p++) {
		if (pa[p] < FOUR_GIB)
			continue;
		volatile uint64_t *w = (volatile uint64_t *)(mem + p * PAGE);
		for (uint64_t i = 0; i < PAGE / 8; i++)
			bad += w[i] != pattern(pa[p], i);
	}
	printf("didvisor-guest: memtest pages %zu high %zu bad %" PRIu64 " max-pa %#" PRIx64 "\n",
	       pages, high, bad, max_pa);
	return high > 0 && bad == 0 ? 0 : 1;
}

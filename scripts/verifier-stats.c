// SPDX-License-Identifier: Apache-2.0
/*
 * Verifier statistics of each program of a BPF object: loads every program
 * (bench_* excepted) with its own log buffer at log level 4 (statistics only)
 * and prints, per program, what the verifier says: verification time,
 * processed instructions, states, stack depth. `make verifier-stats`.
 *
 *   verifier-stats natra.bpf.o [log_level]
 *
 * A log level of 1 or 2 prints the full log instead (large; the buffer holds
 * 64 MiB per program). Needs root (or CAP_BPF + CAP_PERFMON) and bpffs-less
 * map creation, like the tests. Links the distribution's libbpf.
 */
#include <bpf/libbpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROGS 16

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	const char *names[MAX_PROGS];
	char *logs[MAX_PROGS];
	int n = 0, err, level = argc > 2 ? atoi(argv[2]) : 4;
	size_t log_size = level == 4 ? 4096 : 64u << 20;

	if (argc < 2) {
		fprintf(stderr, "usage: %s OBJECT.o [LOG_LEVEL]\n", argv[0]);
		return 2;
	}
	obj = bpf_object__open(argv[1]);
	if (!obj) {
		perror(argv[1]);
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
	{
		int bench = strncmp(bpf_program__name(prog), "bench_", 6) == 0;

		bpf_program__set_autoload(prog, !bench);
		if (bench || n == MAX_PROGS)
			continue;
		logs[n] = calloc(1, log_size);
		if (!logs[n]) {
			perror("calloc");
			return 1;
		}
		names[n] = bpf_program__name(prog);
		bpf_program__set_log_level(prog, level);
		bpf_program__set_log_buf(prog, logs[n], log_size);
		n++;
	}
	err = bpf_object__load(obj);
	for (int i = 0; i < n; i++)
		printf("== %s\n%s\n", names[i], logs[i]);
	if (err)
		fprintf(stderr, "load failed: %d\n", err);
	bpf_object__close(obj);
	return err ? 1 : 0;
}

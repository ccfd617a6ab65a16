/* A main() for the fuzz targets built without libFuzzer (gcc, the normal
 * and the ASan+UBSan builds): feeds every regular file of each folder (or
 * file) named on the command line to LLVMFuzzerTestOneInput, in name
 * order, so `make test` replays the seed corpora and every past crash.
 * Fails when an argument cannot be read or holds no input at all. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fuzz.h"

static int
run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *data = NULL;
	size_t n = 0, cap = 0;

	if (f == NULL) {
		fprintf(stderr, "replay: cannot open %s\n", path);
		return -1;
	}
	for (;;) {
		size_t got;

		if (n == cap) {
			uint8_t *p = realloc(data, cap = cap == 0 ? 4096 : cap * 2);

			if (p == NULL) {
				fprintf(stderr, "replay: out of memory on %s\n", path);
				abort();
			}
			data = p;
		}
		if ((got = fread(data + n, 1, cap - n, f)) == 0)
			break;
		n += got;
	}
	fclose(f);
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
	/* An exact-size copy, so ASan sees a read one past the input. */
	uint8_t *exact = malloc(n > 0 ? n : 1);
	if (exact == NULL)
		abort();
	memcpy(exact, data, n);
	free(data);
	(void)LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of dir; returns how many, or -1. */
static long
run_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	long ran = 0;

	if (d == NULL) {
		fprintf(stderr, "replay: cannot open %s\n", dir);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **p = realloc(names, (cap = cap == 0 ? 64 : cap * 2) * sizeof(*p));

			if (p == NULL)
				abort();
			names = p;
		}
		if ((names[n] = malloc(strlen(dir) + strlen(de->d_name) + 2)) == NULL)
			abort();
		snprintf(names[n], strlen(dir) + strlen(de->d_name) + 2, "%s/%s", dir, de->d_name);
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		struct stat sb;

		if (stat(names[i], &sb) == 0 && S_ISREG(sb.st_mode)) {
			if (run_file(names[i]) != 0)
				ran = -1;
			else if (ran >= 0)
				ran++;
		}
		free(names[i]);
	}
	free(names);
	return ran;
}

int
main(int argc, char **argv)
{
	long total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat sb;
		long n;

		if (stat(argv[i], &sb) != 0) {
			fprintf(stderr, "replay: cannot read %s\n", argv[i]);
			return 1;
		}
		n = S_ISDIR(sb.st_mode) ? run_dir(argv[i]) : (run_file(argv[i]) == 0 ? 1 : -1);
		if (n < 0)
			return 1;
		total += n;
	}
	if (total == 0) {
		fprintf(stderr, "replay: no input found\n");
		return 1;
	}
	printf("replay: %ld inputs, no crash\n", total);
	return 0;
}

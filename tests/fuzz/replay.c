/* SPDX-License-Identifier: MIT */
/*
 * replay.c - runs a libFuzzer target's corpus with the normal compiler, so
 * ctest replays every saved input (and any crash reproducer) on each run.
 * Usage: fuzz_NAME DIR|FILE...
 */
#include "mk_alloc.h"
#include "mk_buf.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		perror(path);
		return -1;
	}
	struct mk_buf b;
	mk_buf_init(&b, 64u * 1024 * 1024);
	for (;;) {
		uint8_t *p;
		if (mk_buf_reserve(&b, 65536, &p) < 0)
			break;
		size_t n = fread(p, 1, 65536, f);
		mk_buf_commit(&b, n);
		if (n < 65536)
			break;
	}
	fclose(f);
	/* a private copy of exactly `len` bytes, so ASan sees overreads */
	uint8_t *copy = mk_xmalloc(b.len ? b.len : 1);
	if (b.len)
		memcpy(copy, b.data, b.len);
	LLVMFuzzerTestOneInput(copy, b.len);
	mk_free(copy);
	mk_buf_cleanup(&b);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]) < 0)
				return 1;
			files++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		if (d == NULL) {
			perror(argv[i]);
			return 1;
		}
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
			if (run_file(path) < 0) {
				closedir(d);
				return 1;
			}
			files++;
		}
		closedir(d);
	}
	printf("replayed %d inputs\n", files);
	return files > 0 ? 0 : 1; /* an empty corpus is a broken test */
}

/* SPDX-License-Identifier: MIT */
/*
 * fuzz_config.c - libFuzzer target for the configuration parser: parses the
 * input as a config file, prints the tree to /dev/null (so every resolved
 * field is read) and frees everything. Under ASan a leak, overread or
 * crash anywhere in parse/validate/presets is a finding.
 */
#include "mk_alloc.h"
#include "mk_config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	if (devnull == NULL)
		devnull = fopen("/dev/null", "w");
	struct mk_config *cfg = NULL;
	char *error = NULL;
	/* A fixed home so "~/" expansion and the default store are exercised
	 * whatever the environment. */
	int r = mk_config_parse((const char *)data, size, "fuzz", "/home/fuzz", &cfg, &error);
	if (r == 0) {
		if (error != NULL || cfg == NULL)
			__builtin_trap();
		if (devnull != NULL)
			mk_config_dump(cfg, devnull);
		for (size_t i = 0; i < cfg->n_accounts; i++) {
			if (mk_config_find_account(cfg, cfg->accounts[i].name) != &cfg->accounts[i])
				__builtin_trap();
		}
	} else {
		/* Every failure carries a "fuzz:" message and no tree. */
		if (error == NULL || cfg != NULL || strncmp(error, "fuzz:", 5) != 0)
			__builtin_trap();
	}
	mk_config_free(&cfg);
	mk_free(error);
	return 0;
}

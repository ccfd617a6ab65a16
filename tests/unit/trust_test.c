/* trust.c: the SIGHUP reload of the trust list keeps each provider's key
 * cache by identity (name, issuer, jwks_uri), refuses a removed provider,
 * and never gives a cache to another provider. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "trust/trust.h"

static void
set(struct am_config *cfg, const char *section, const char *key, const char *value)
{
	char err[256];

	if (am_config_set(cfg, section, key, value, err, sizeof(err)) != 0)
		fail_msg("[%s] %s: %s", section, key, err);
}

/* A configuration trusting the providers named in names (issuer
 * http://127.0.0.1:1/NAME: nothing listens there, so a fetch fails fast). */
static void
config_with(struct am_config *cfg, const char *const *names, size_t n)
{
	char err[256], section[80], issuer[128];

	am_config_defaults(cfg);
	set(cfg, "outbound", "allow_private_targets", "127.0.0.0/8");
	for (size_t i = 0; i < n; i++) {
		snprintf(section, sizeof(section), "provider %s", names[i]);
		snprintf(issuer, sizeof(issuer), "http://127.0.0.1:1/%s", names[i]);
		set(cfg, section, "issuer", issuer);
	}
	assert_int_equal(am_config_validate(cfg, err, sizeof(err)), 0);
}

static void
a_reload_keeps_known_caches_and_refuses_removed_providers(void **state)
{
	static const char *const ab[] = {"a", "b"}, *const b[] = {"b"};
	struct am_config one, two, three;
	struct am_error e = {0};
	struct jose_keyset *keys = NULL;
	struct trust *t;
	const struct am_provider *pa;

	(void)state;
	config_with(&one, ab, 2);
	assert_int_equal(trust_new(&one, &t, &e), AM_OK);
	pa = &one.providers[0];
	/* The fetch fails (nothing listens), but it is counted for a. */
	assert_int_equal(trust_keys(t, pa, "k1", 1000, &keys, &e), AM_E_UNAVAILABLE);
	assert_int_equal(trust_fetch_count(t, pa), 1);

	/* a removed: refused as untrusted, even through the old pointer. */
	config_with(&two, b, 1);
	assert_int_equal(trust_reload(t, &two, &e), AM_OK);
	assert_int_equal(trust_keys(t, pa, "k1", 2000, &keys, &e), AM_E_INVALID_ISSUER);
	assert_int_equal(trust_fetch_count(t, pa), 0);

	/* a back, same identity: its cache (and fetch history) is there again,
	 * found through a provider of the new configuration. */
	config_with(&three, ab, 2);
	assert_int_equal(trust_reload(t, &three, &e), AM_OK);
	assert_int_equal(trust_fetch_count(t, &three.providers[0]), 1);
	assert_int_equal(trust_fetch_count(t, &three.providers[1]), 0);
	/* Renamed: another provider as far as caches go. */
	memcpy(three.providers[0].name, "a2", 3);
	assert_int_equal(trust_fetch_count(t, &three.providers[0]), 0);
	trust_free(t);
}

static void
a_reload_needing_more_caches_than_there_are_is_refused(void **state)
{
	static const char *const first[] = {"p0"};
	static struct am_config cfg, next, good;
	struct jose_keyset *keys = NULL;
	struct am_error e = {0};
	struct trust *t;
	char names[16][16];
	const char *ptrs[16];
	int round = 0;
	enum am_err rc;

	(void)state;
	config_with(&cfg, first, 1);
	assert_int_equal(trust_new(&cfg, &t, &e), AM_OK);
	good = cfg;
	do {
		if (round > 0)
			good = next;
		round++;
		for (int i = 0; i < 16; i++) {
			snprintf(names[i], sizeof(names[i]), "r%d-%d", round, i);
			ptrs[i] = names[i];
		}
		config_with(&next, ptrs, 16);
		rc = trust_reload(t, &next, &e);
	} while (rc == AM_OK && round < 10);
	assert_int_equal(rc, AM_E_UNAVAILABLE);
	assert_non_null(strstr(e.detail, "restart"));
	assert_true(round > 1 && round < 10);
	/* The refused reload changed nothing: the last good list still holds
	 * (its provider is looked up, and its fetch fails), the refused one
	 * is not trusted. */
	assert_int_equal(trust_keys(t, &good.providers[0], "k", 1, &keys, &e), AM_E_UNAVAILABLE);
	assert_int_equal(trust_keys(t, &next.providers[0], "k", 1, &keys, &e), AM_E_INVALID_ISSUER);
	trust_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_reload_keeps_known_caches_and_refuses_removed_providers),
		cmocka_unit_test(a_reload_needing_more_caches_than_there_are_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

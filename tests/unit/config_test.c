/* core/config: defaults, file errors with file:line:key, cross-key rules,
 * and that docs/configuration.md documents every key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "provider/provider.h"

static char *
write_file(const char *text)
{
	static char path[64];
	FILE *f;
	int fd;

	snprintf(path, sizeof(path), "/tmp/authmd-config-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

/* The whole of a file under the source tree (caller frees). */
static char *
slurp(const char *relative)
{
	char path[512];
	char *text = calloc(1, 1 << 20);
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", SOURCE_DIR, relative);
	assert_non_null(f = fopen(path, "r"));
	assert_true(fread(text, 1, (1 << 20) - 1, f) > 0);
	fclose(f);
	return text;
}

/* Fails unless doc has a "| `[section] key` |" row for every key of the
 * table (section forced when not NULL). */
static void
assert_documented(const char *doc, const char *name, const struct cfg_key *k, size_t n,
		  const char *section)
{
	char want[128];

	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "| `[%s] %s` |",
			 section != NULL ? section : k[i].section, k[i].key);
		if (strstr(doc, want) == NULL)
			fail_msg("%s does not document %s", name, want);
	}
}

static void
defaults_are_valid_and_derive_the_resource(void **state)
{
	struct am_config cfg;

	(void)state;
	am_config_defaults(&cfg);
	assert_string_equal(cfg.public_url, "http://127.0.0.1:8000");
	assert_string_equal(cfg.resource, "http://127.0.0.1:8000/api/");
	assert_string_equal(cfg.listen_host, "127.0.0.1");
	assert_int_equal(cfg.listen_port, 8000);
	assert_int_equal(cfg.otp_attempts, 5);
	assert_int_equal(cfg.ttl_otp, 600);
	assert_true(cfg.flow_anonymous);
	assert_true(cfg.flow_id_jag);
	assert_int_equal(cfg.nproviders, 0);
}

static void
a_file_overrides_and_normalises(void **state)
{
	struct am_config cfg;
	char err[256];
	char *path = write_file("[server]\npublic_url = https://auth.example.test/\n"
				"listen = ::1:9000\n[ttl]\notp = 120\n[flows]\nanonymous = off\n");

	(void)state;
	assert_int_equal(am_config_load(path, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.public_url, "https://auth.example.test");
	assert_string_equal(cfg.resource, "https://auth.example.test/api/");
	assert_string_equal(cfg.listen_host, "::1");
	assert_int_equal(cfg.listen_port, 9000);
	assert_int_equal(cfg.ttl_otp, 120);
	assert_false(cfg.flow_anonymous);
	unlink(path);
}

static void
errors_name_the_file_line_and_key(void **state)
{
	struct am_config cfg;
	char err[256], want[128];
	char *path = write_file("[server]\n\nthreads = lots\n");

	(void)state;
	assert_int_equal(am_config_load(path, &cfg, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:3: [server] threads:", path);
	assert_non_null(strstr(err, want));
	unlink(path);
	path = write_file("[nope]\nkey = 1\n");
	assert_int_equal(am_config_load(path, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "[nope] key: unknown key"));
	unlink(path);
}

static void
values_out_of_range_or_shape_are_refused(void **state)
{
	struct am_config cfg;
	char err[256];

	(void)state;
	am_config_defaults(&cfg);
	assert_int_equal(am_config_set(&cfg, "ttl", "otp", "1", err, sizeof(err)), -1);
	assert_int_equal(am_config_set(&cfg, "ttl", "otp", "-5", err, sizeof(err)), -1);
	assert_int_equal(am_config_set(&cfg, "server", "listen", "localhost", err, sizeof(err)),
			 -1);
	assert_int_equal(am_config_set(&cfg, "server", "listen", "1.2.3.4:99999", err, sizeof(err)),
			 -1);
	assert_int_equal(am_config_set(&cfg, "server", "public_url", "x", err, sizeof(err)), -1);
	assert_int_equal(am_config_set(&cfg, "server", "resource_logo_uri",
				       "https://x.test/\"><script>", err, sizeof(err)),
			 -1);
	assert_int_equal(am_config_set(&cfg, "mail", "starttls", "maybe", err, sizeof(err)), -1);
	assert_int_equal(am_config_set(&cfg, "scopes", "supported", "a\\b", err, sizeof(err)), -1);
	assert_int_equal(am_config_set(&cfg, "log", "level", "loud", err, sizeof(err)), -1);
}

static void
cross_key_rules_are_checked(void **state)
{
	struct am_config cfg;
	char err[256];

	(void)state;
	am_config_defaults(&cfg);
	assert_int_equal(am_config_set(&cfg, "scopes", "post_claim", "api.admin", err, sizeof(err)),
			 0);
	assert_int_equal(am_config_validate(&cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "api.admin"));
	am_config_defaults(&cfg);
	assert_int_equal(am_config_set(&cfg, "server", "public_url", "https://x.test/path", err,
				       sizeof(err)),
			 0);
	assert_int_equal(am_config_validate(&cfg, err, sizeof(err)), -1);
	am_config_defaults(&cfg);
	assert_int_equal(am_config_set(&cfg, "audit", "sink", "syslog", err, sizeof(err)), 0);
	assert_int_equal(am_config_validate(&cfg, err, sizeof(err)), -1);
}

static void
provider_sections_make_the_trust_list(void **state)
{
	struct am_config cfg;
	char err[256];
	const struct am_provider *p;
	char *path = write_file("[provider acme]\nissuer = https://acme.test/\n"
				"link_by_email = on\n[provider beta]\nissuer = https://beta.test\n"
				"client_ids = a b\nscopes = api.read\n");

	(void)state;
	assert_int_equal(am_config_load(path, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.nproviders, 2);
	p = am_config_provider(&cfg, "https://acme.test/");
	assert_non_null(p);
	assert_string_equal(p->name, "acme");
	assert_string_equal(p->jwks_uri, "https://acme.test/.well-known/jwks.json");
	assert_string_equal(p->client_ids, "https://acme.test/");
	assert_string_equal(p->scopes, "api.read api.write");
	assert_true(p->link_by_email);
	assert_false(p->link_by_phone); /* linking is off unless a provider entry turns it on */
	p = am_config_provider(&cfg, "https://beta.test");
	assert_string_equal(p->client_ids, "a b");
	assert_true(am_word_in(p->client_ids, "b"));
	assert_null(am_config_provider(&cfg, "https://beta.test/"));
	unlink(path);

	path = write_file("[provider x]\njwks_uri = https://x.test/k\n");
	assert_int_equal(am_config_load(path, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "issuer is required"));
	unlink(path);
	path = write_file("[provider x]\nissuer = https://x.test\n[provider y]\n"
			  "issuer = https://x.test\n");
	assert_int_equal(am_config_load(path, &cfg, err, sizeof(err)), -1);
	unlink(path);
	path = write_file("[provider x]\nissuer = https://x.test\nscopes = admin\n");
	assert_int_equal(am_config_load(path, &cfg, err, sizeof(err)), -1);
	unlink(path);
	path = write_file("[provider x]\nissuer = https://x.test\ncolour = blue\n");
	assert_int_equal(am_config_load(path, &cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, ":3: [provider x] colour: unknown key"));
	unlink(path);
}

static void
scope_membership_is_by_whole_token(void **state)
{
	(void)state;
	assert_true(am_scope_in("api.read api.write", "api.write"));
	assert_false(am_scope_in("api.read api.writer", "api.write"));
	assert_false(am_scope_in("api.read", "api"));
	assert_false(am_scope_in("api.read", ""));
}

static void
every_key_is_in_the_configuration_docs(void **state)
{
	size_t n;
	const struct cfg_key *k = am_config_keys(&n);
	char *doc = slurp("docs/configuration.md");

	(void)state;
	assert_documented(doc, "docs/configuration.md", k, n, NULL);
	k = am_config_provider_keys(&n);
	assert_documented(doc, "docs/configuration.md", k, n, "provider");
	k = am_config_route_keys(&n);
	assert_documented(doc, "docs/configuration.md", k, n, "route");
	k = am_config_introspection_client_keys(&n);
	assert_documented(doc, "docs/configuration.md", k, n, "introspection client");
	free(doc);
}

static void
the_sample_config_is_valid_and_complete(void **state)
{
	struct am_config cfg;
	char err[256];
	size_t n;
	const struct cfg_key *k = am_config_keys(&n);
	char *text = slurp("etc/authmd.ini");
	char want[128];

	(void)state;
	assert_int_equal(am_config_load(SOURCE_DIR "/etc/authmd.ini", &cfg, err, sizeof(err)), 0);
	for (size_t i = 0; i < n; i++) {
		snprintf(want, sizeof(want), "\n%s =", k[i].key);
		if (strstr(text, want) == NULL) {
			snprintf(want, sizeof(want), "\n; %s =", k[i].key);
			if (strstr(text, want) == NULL)
				fail_msg("etc/authmd.ini does not show [%s] %s", k[i].section,
					 k[i].key);
		}
	}
	free(text);
}

static void
every_provider_key_is_in_its_docs_and_sample(void **state)
{
	size_t n;
	const struct cfg_key *k = prov_config_keys(&n);
	char *doc = slurp("docs/provider.md"), err[256];
	struct prov_config c;

	(void)state;
	assert_documented(doc, "docs/provider.md", k, n, NULL);
	free(doc);
	assert_int_equal(prov_config_load(SOURCE_DIR "/etc/provider.ini", &c, err, sizeof(err)), 0);
	assert_string_equal(c.client_id, "http://127.0.0.1:4000");
	assert_int_equal(c.listen_port, 4000);
}

/* ---- operator surface: secrets and admin keys from files ---- */

/* Writes text to a fresh temporary file with mode; its path into path. */
static void
temp_file(char *path, size_t cap, const char *text, mode_t mode)
{
	int fd;

	snprintf(path, cap, "/tmp/authmd-config-test-XXXXXX");
	assert_true((fd = mkstemp(path)) >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

static void
secret_files_open_to_others_or_not_regular_are_refused(void **state)
{
	char path[64], out[32], err[512];

	(void)state;
	temp_file(path, sizeof(path), "s3cret\nsecond line\n", 0600);
	assert_int_equal(am_secret_file_read(path, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, "s3cret"); /* the first line only */
	for (mode_t m = 0; m < 0100; m++) {
		if ((m & 077) == 0)
			continue;
		assert_int_equal(chmod(path, 0600 | m), 0);
		assert_int_equal(am_secret_file_read(path, out, sizeof(out), err, sizeof(err)), -1);
		assert_non_null(strstr(err, "chmod 600"));
		assert_string_equal(out, "");
	}
	unlink(path);
	temp_file(path, sizeof(path), "\n", 0600);
	assert_int_equal(am_secret_file_read(path, out, sizeof(out), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no secret"));
	unlink(path);
	temp_file(path, sizeof(path), "0123456789012345678901234567890123456789", 0400);
	assert_int_equal(am_secret_file_read(path, out, sizeof(out), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "longer"));
	unlink(path);
	assert_int_equal(am_secret_file_read("/tmp", out, sizeof(out), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(am_secret_file_read("/nonexistent/x", out, sizeof(out), err, sizeof(err)),
			 -1);
}

static void
admin_keys_are_read_as_names_and_hashes(void **state)
{
	static const char hash[] =
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
	struct am_config cfg;
	char path[64], text[512], err[512];

	(void)state;
	am_config_defaults(&cfg);
	snprintf(text, sizeof(text), "# operators\n\nalice %s\nbob   %s # on call\n", hash, hash);
	temp_file(path, sizeof(path), text, 0600);
	assert_int_equal(am_config_set(&cfg, "admin", "listen", "127.0.0.1:8001", err, sizeof(err)),
			 0);
	assert_int_equal(am_config_set(&cfg, "admin", "keys_file", path, err, sizeof(err)), 0);
	assert_int_equal(am_config_validate(&cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.nadmin_keys, 2);
	assert_string_equal(cfg.admin_keys[1].name, "bob");
	assert_int_equal(cfg.admin_keys[0].hash[0], 0x9f);
	assert_int_equal(cfg.admin_port, 8001);
	unlink(path);

#define H "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	static const char *const bad[] = {
		"alice\n",	   "alice 9f86\n",	 "alice " H " extra\n",
		"al/ice " H "\n",  "a " H "\na " H "\n", "#\n",
		"alice " H "zz\n",
	};
#undef H
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		temp_file(path, sizeof(path), bad[i], 0600);
		assert_int_equal(am_config_set(&cfg, "admin", "keys_file", path, err, sizeof(err)),
				 0);
		if (am_config_validate(&cfg, err, sizeof(err)) != -1)
			fail_msg("accepted: %s", bad[i]);
		unlink(path);
	}
	snprintf(text, sizeof(text), "alice %s\n", hash);
	for (mode_t m = 0600; m <= 0677; m += 010) {
		temp_file(path, sizeof(path), text, m == 0600 ? 0604 : m);
		assert_int_equal(am_config_set(&cfg, "admin", "keys_file", path, err, sizeof(err)),
				 0);
		assert_int_equal(am_config_validate(&cfg, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "chmod 600"));
		unlink(path);
	}
	/* listen without keys */
	assert_int_equal(am_config_set(&cfg, "admin", "keys_file", "", err, sizeof(err)), 0);
	assert_int_equal(am_config_validate(&cfg, err, sizeof(err)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_are_valid_and_derive_the_resource),
		cmocka_unit_test(a_file_overrides_and_normalises),
		cmocka_unit_test(errors_name_the_file_line_and_key),
		cmocka_unit_test(values_out_of_range_or_shape_are_refused),
		cmocka_unit_test(cross_key_rules_are_checked),
		cmocka_unit_test(provider_sections_make_the_trust_list),
		cmocka_unit_test(scope_membership_is_by_whole_token),
		cmocka_unit_test(every_key_is_in_the_configuration_docs),
		cmocka_unit_test(the_sample_config_is_valid_and_complete),
		cmocka_unit_test(every_provider_key_is_in_its_docs_and_sample),
		cmocka_unit_test(secret_files_open_to_others_or_not_regular_are_refused),
		cmocka_unit_test(admin_keys_are_read_as_names_and_hashes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

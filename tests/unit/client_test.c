/* agent/: the credentials file, URL matching and advice, without a network. */
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

#include "agent/credstore.h"
#include "agent/internal.h"
#include "agent/view.h"
#include "authmd/client.h"

static char dir[64];
static char path[128];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/authmd-client-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sub/credentials.json", dir);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct authmd_credential
sample(const char *resource)
{
	struct authmd_credential c;

	memset(&c, 0, sizeof(c));
	snprintf(c.resource, sizeof(c.resource), "%s", resource);
	snprintf(c.method, sizeof(c.method), "anonymous");
	snprintf(c.credential, sizeof(c.credential), "sk_secret");
	snprintf(c.scopes, sizeof(c.scopes), "api.read");
	c.worked = true;
	return c;
}

static void
a_missing_file_is_an_empty_store_and_saving_makes_it_private(void **state)
{
	struct authmd_error e = {0};
	struct authmd_credential c = sample("https://api.test/"), back;
	json_t *doc = NULL;
	struct stat sb;

	(void)state;
	assert_int_equal(cs_load(path, &doc, &e), AUTHMD_OK);
	assert_int_equal(json_object_size(json_object_get(doc, "credentials")), 0);
	cs_put(doc, &c);
	assert_int_equal(cs_save(path, doc, &e), AUTHMD_OK);
	json_decref(doc);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(cs_load(path, &doc, &e), AUTHMD_OK);
	assert_true(cs_get(doc, "https://api.test/", &back));
	assert_string_equal(back.credential, "sk_secret");
	assert_string_equal(back.scopes, "api.read");
	assert_true(back.worked);
	assert_true(cs_del(doc, "https://api.test/"));
	assert_false(cs_get(doc, "https://api.test/", &back));
	json_decref(doc);
}

static void
an_unsafe_or_corrupt_file_is_refused(void **state)
{
	struct authmd_error e = {0};
	json_t *doc = NULL;
	FILE *f;

	(void)state;
	assert_int_equal(cs_load(path, &doc, &e), AUTHMD_OK);
	assert_int_equal(cs_save(path, doc, &e), AUTHMD_OK);
	json_decref(doc);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(cs_load(path, &doc, &e), AUTHMD_ERR_STORE);
	assert_non_null(strstr(e.message, "can be read by other users"));
	assert_int_equal(chmod(path, 0600), 0);
	f = fopen(path, "w");
	fputs("[1, 2]", f);
	fclose(f);
	assert_int_equal(cs_load(path, &doc, &e), AUTHMD_ERR_STORE);
	assert_non_null(e.advice);
}

static void
urls_match_the_longest_stored_resource_then_the_origin(void **state)
{
	json_t *doc = json_pack("{s:i, s:{}}", "version", 1, "credentials");
	struct authmd_credential a = sample("https://api.test/"),
				 b = sample("https://api.test/v2/");

	(void)state;
	cs_put(doc, &a);
	cs_put(doc, &b);
	assert_string_equal(cs_match(doc, "https://api.test/v2/items"), "https://api.test/v2/");
	assert_string_equal(cs_match(doc, "https://api.test/v1/items"), "https://api.test/");
	assert_non_null(cs_match(doc, "https://API.test"));
	assert_null(cs_match(doc, "https://other.test/v2/"));
	assert_null(cs_match(doc, "https://api.test.evil/"));
	json_decref(doc);
	/* A resource stored without a trailing slash matches on a boundary only. */
	doc = json_pack("{s:i, s:{}}", "version", 1, "credentials");
	a = sample("https://bank.test");
	cs_put(doc, &a);
	assert_null(cs_match(doc, "https://bank.test.evil.test/steal"));
	assert_string_equal(cs_match(doc, "https://bank.test/accounts"), "https://bank.test");
	assert_string_equal(cs_match(doc, "https://bank.test"), "https://bank.test");
	json_decref(doc);
}

/* The URL asked for was read past its end when a stored resource was longer
 * (issue 10, finding 8; the ASan build reports it). The URL is on the heap
 * so that any byte read past it is caught. */
static void
a_url_shorter_than_a_stored_resource_is_not_read_past_its_end(void **state)
{
	json_t *doc = json_pack("{s:i, s:{}}", "version", 1, "credentials");
	struct authmd_credential a = sample("https://api.test/v2/items/and/a/long/path");
	char *url = strdup("https://api.test");
	char *other = strdup("https://a");

	(void)state;
	assert_non_null(url);
	assert_non_null(other);
	cs_put(doc, &a);
	/* Not under the stored path, but on its origin: the origin fallback. */
	assert_string_equal(cs_match(doc, url), "https://api.test/v2/items/and/a/long/path");
	assert_null(cs_match(doc, other));
	assert_null(cs_match(doc, ""));
	free(url);
	free(other);
	json_decref(doc);
}

static void
paths_match_on_segment_boundaries_and_ports_count(void **state)
{
	json_t *doc = json_pack("{s:i, s:{}}", "version", 1, "credentials");
	struct authmd_credential a = sample("https://api.test/v1"),
				 b = sample("https://api.test:8443/");

	(void)state;
	cs_put(doc, &a);
	cs_put(doc, &b);
	assert_string_equal(cs_match(doc, "https://api.test/v1/x"), "https://api.test/v1");
	assert_string_equal(cs_match(doc, "https://api.test:443/v1"), "https://api.test/v1");
	assert_string_equal(cs_match(doc, "https://api.test:8443/v1/x"), "https://api.test:8443/");
	assert_null(cs_match(doc, "http://api.test/v1"));
	assert_null(cs_match(doc, "https://api.test@evil.test/v1"));
	json_decref(doc);
}

static void
origins_are_scheme_host_and_port(void **state)
{
	char o[64];

	(void)state;
	assert_true(cs_origin("HTTPS://Api.Test:8443/x?y#z", o, sizeof(o)));
	assert_string_equal(o, "https://api.test:8443");
	assert_true(cs_origin("http://h", o, sizeof(o)));
	assert_string_equal(o, "http://h");
	assert_false(cs_origin("nope", o, sizeof(o)));
	assert_false(cs_origin("http:///path", o, sizeof(o)));
}

static void
expired_claim_tokens_are_forgotten(void **state)
{
	json_t *doc = json_pack("{s:i, s:{}}", "version", 1, "credentials");
	struct authmd_credential a = sample("https://a.test/"), b = sample("https://b.test/"), got;

	(void)state;
	snprintf(a.claim_token, sizeof(a.claim_token), "clm_old");
	snprintf(a.claim_token_expires, sizeof(a.claim_token_expires), "2020-01-01T00:00:00.000Z");
	snprintf(b.claim_token, sizeof(b.claim_token), "clm_live");
	snprintf(b.claim_token_expires, sizeof(b.claim_token_expires), "2999-01-01T00:00:00.000Z");
	cs_put(doc, &a);
	cs_put(doc, &b);
	assert_true(cs_prune(doc, time(NULL)));
	assert_true(cs_get(doc, "https://a.test/", &got));
	assert_string_equal(got.claim_token, "");
	assert_string_equal(got.claim_state, "expired");
	assert_string_equal(got.credential, "sk_secret"); /* the key itself stays */
	assert_true(cs_get(doc, "https://b.test/", &got));
	assert_string_equal(got.claim_token, "clm_live");
	assert_false(cs_prune(doc, time(NULL)));
	json_decref(doc);
}

static void
advice_follows_the_auth_md_table(void **state)
{
	(void)state;
	assert_non_null(strstr(authmd_advice("otp_invalid"), "re-read"));
	assert_non_null(strstr(authmd_advice("claim_expired"), "Register again"));
	assert_non_null(authmd_advice("rate_limited"));
	assert_null(authmd_advice("no_such_code"));
	assert_null(authmd_advice(NULL));
}

static void
the_client_needs_a_home_for_its_file(void **state)
{
	struct authmd_client *c = NULL;
	struct authmd_error e = {0};
	struct authmd_options o = {.store_path = path, .max_retries = -1};
	struct authmd_credential cred;

	(void)state;
	assert_int_equal(authmd_client_new(&o, &c, &e), AUTHMD_OK);
	assert_int_equal(authmd_credential_for(c, "https://x.test/", &cred, &e),
			 AUTHMD_ERR_ACTION_NEEDED);
	assert_int_equal(authmd_discover(c, "not a url", NULL, &e), AUTHMD_ERR_USAGE);
	authmd_client_free(c);
}

static void
the_credential_view_shows_no_secret(void **state)
{
	struct authmd_credential c = sample("https://api.test/");
	json_t *o;
	char *text;

	(void)state;
	snprintf(c.claim_token, sizeof(c.claim_token), "clm_very_secret");
	snprintf(c.session, sizeof(c.session), "sess_very_secret");
	snprintf(c.provider, sizeof(c.provider), "https://prov.test");
	o = agent_credential_json(&c);
	text = json_dumps(o, JSON_COMPACT);
	assert_non_null(text);
	assert_null(strstr(text, "sk_secret"));
	assert_null(strstr(text, "clm_very_secret"));
	assert_null(strstr(text, "sess_very_secret"));
	assert_true(json_is_true(json_object_get(o, "has_credential")));
	assert_string_equal(json_string_value(json_object_get(o, "provider")), "https://prov.test");
	free(text);
	json_decref(o);
}

static void
the_grant_view_says_whether_it_was_made_or_kept(void **state)
{
	struct authmd_grant g = {.created = false, .kept_as_is = true};
	json_t *o;

	(void)state;
	snprintf(g.id, sizeof(g.id), "gr_1");
	snprintf(g.mode, sizeof(g.mode), "once");
	o = agent_grant_json(&g);
	assert_string_equal(json_string_value(json_object_get(o, "mode")), "once");
	assert_true(json_is_null(json_object_get(o, "status"))); /* the provider gave none */
	assert_true(json_is_false(json_object_get(o, "created")));
	assert_true(json_is_true(json_object_get(o, "kept_as_is")));
	json_decref(o);
}

static void
a_bad_consent_value_is_refused_before_any_request(void **state)
{
	struct authmd_client *c = NULL;
	struct authmd_error e = {0};
	struct authmd_options o = {.store_path = path, .max_retries = -1};
	struct authmd_discovery d;

	(void)state;
	memset(&d, 0, sizeof(d));
	d.id_jag = true;
	assert_int_equal(authmd_client_new(&o, &c, &e), AUTHMD_OK);
	/* 127.0.0.1:9 is never contacted: the value is checked first. */
	assert_int_equal(authmd_register_provider(c, &d, "http://127.0.0.1:9", "s", NULL,
						  (enum authmd_consent)7, NULL, NULL, &e),
			 AUTHMD_ERR_USAGE);
	authmd_client_free(c);
}

static json_t *
block(const char *code, const char *uri)
{
	return json_pack("{s:s, s:s, s:s, s:i, s:i}", "user_code", code, "verification_uri", uri,
			 "verification_uri_complete", "https://svc.test/login?c=1", "expires_in",
			 300, "interval", 7);
}

static void
a_claim_block_is_kept_as_the_open_attempt(void **state)
{
	struct authmd_credential c = sample("https://api.test/");
	json_t *b = block("WDJB-MJHT", "https://svc.test/login?return_to=%2Fclaim");
	time_t until;

	(void)state;
	assert_true(agent_keep_attempt(&c, b, "cla_1"));
	assert_string_equal(c.user_code, "WDJB-MJHT");
	assert_string_equal(c.claim_attempt_id, "cla_1");
	assert_string_equal(c.claim_state, "pending");
	assert_int_equal(c.claim_interval, 7);
	until = cs_parse_utc(c.claim_attempt_expires);
	assert_true(until >= time(NULL) + 298 && until <= time(NULL) + 300);
	json_decref(b);
	/* no interval: RFC 8628's 5 s; no expires_in: at most 10 min */
	b = json_pack("{s:s, s:s}", "user_code", "A", "verification_uri", "http://svc.test/");
	assert_true(agent_keep_attempt(&c, b, NULL));
	assert_int_equal(c.claim_interval, 5);
	assert_true(cs_parse_utc(c.claim_attempt_expires) <= time(NULL) + 600);
	json_decref(b);
}

static void
a_claim_block_a_terminal_should_not_print_is_refused(void **state)
{
	static const char *const bad[][2] = {
		{"WDJB\x1b]0;owned\x07", "https://svc.test/login"}, /* an escape sequence */
		{"WDJB-MJHT", "https://svc.test/\x1b[2J"},
		{"WDJB-MJHT", "javascript:alert(1)"},
		{"WDJB-MJHT", "https://svc.test/a b"},
		{"", "https://svc.test/login"},
		{"WDJB-MJHT", ""},
	};
	struct authmd_credential c = sample("https://api.test/");

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *b = block(bad[i][0], bad[i][1]);

		assert_false(agent_keep_attempt(&c, b, "cla_1"));
		assert_string_equal(c.user_code, ""); /* nothing half-kept */
		json_decref(b);
	}
}

static void
the_open_attempt_survives_the_file_and_dies_with_its_claim_token(void **state)
{
	struct authmd_error e = {0};
	struct authmd_credential c = sample("https://api.test/"), back;
	json_t *doc = NULL, *b = block("WDJB-MJHT", "https://svc.test/login");

	(void)state;
	snprintf(c.claim_token, sizeof(c.claim_token), "clm_x");
	snprintf(c.claim_token_expires, sizeof(c.claim_token_expires), "2099-01-01T00:00:00Z");
	assert_true(agent_keep_attempt(&c, b, "cla_1"));
	json_decref(b);
	assert_int_equal(cs_load(path, &doc, &e), AUTHMD_OK);
	cs_put(doc, &c);
	assert_int_equal(cs_save(path, doc, &e), AUTHMD_OK);
	json_decref(doc);
	assert_int_equal(cs_load(path, &doc, &e), AUTHMD_OK);
	assert_true(cs_get(doc, "https://api.test/", &back));
	assert_string_equal(back.user_code, "WDJB-MJHT");
	assert_string_equal(back.verification_uri, "https://svc.test/login");
	assert_int_equal(back.claim_interval, 7);
	assert_false(cs_prune(doc, time(NULL)));
	assert_true(cs_prune(doc, cs_parse_utc("2099-01-02T00:00:00Z")));
	assert_true(cs_get(doc, "https://api.test/", &back));
	assert_string_equal(back.claim_token, "");
	assert_string_equal(back.user_code, "");
	assert_string_equal(back.claim_attempt_expires, "");
	assert_int_equal(back.claim_interval, 0);
	assert_string_equal(back.claim_state, "expired");
	json_decref(doc);
}

static void
a_v06_claim_has_no_mailed_code_and_a_v01_one_no_poll(void **state)
{
	struct authmd_client *c = NULL;
	struct authmd_error e = {0};
	struct authmd_options o = {.store_path = path, .max_retries = -1};
	struct authmd_credential cred = sample("http://127.0.0.1:9/api/");
	enum authmd_claim_status st;
	long interval;
	json_t *doc = NULL;

	(void)state;
	snprintf(cred.protocol, sizeof(cred.protocol), "v0.6");
	snprintf(cred.claim_token, sizeof(cred.claim_token), "clm_x");
	snprintf(cred.token_endpoint, sizeof(cred.token_endpoint), "http://127.0.0.1:9/t");
	assert_int_equal(cs_load(path, &doc, &e), AUTHMD_OK);
	cs_put(doc, &cred);
	snprintf(cred.resource, sizeof(cred.resource), "http://127.0.0.1:9/v01/");
	snprintf(cred.protocol, sizeof(cred.protocol), "v0.1");
	cs_put(doc, &cred);
	assert_int_equal(cs_save(path, doc, &e), AUTHMD_OK);
	json_decref(doc);
	assert_int_equal(authmd_client_new(&o, &c, &e), AUTHMD_OK);
	/* nothing is sent: 127.0.0.1:9 is never contacted */
	assert_int_equal(authmd_claim_complete(c, "http://127.0.0.1:9/api/x", "123456", NULL, &e),
			 AUTHMD_ERR_USAGE);
	assert_int_equal(
		authmd_claim_code_poll(c, "http://127.0.0.1:9/v01/x", &st, &interval, NULL, &e),
		AUTHMD_ERR_REFUSED);
	/* a v0.6 registration with no open attempt has nothing to wait for */
	assert_int_equal(
		authmd_claim_code_wait(c, "http://127.0.0.1:9/api/x", NULL, NULL, NULL, &e),
		AUTHMD_ERR_ACTION_NEEDED);
	authmd_client_free(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(a_missing_file_is_an_empty_store_and_saving_makes_it_private),
		T(an_unsafe_or_corrupt_file_is_refused),
		T(urls_match_the_longest_stored_resource_then_the_origin),
		T(a_url_shorter_than_a_stored_resource_is_not_read_past_its_end),
		T(paths_match_on_segment_boundaries_and_ports_count),
		T(origins_are_scheme_host_and_port),
		T(expired_claim_tokens_are_forgotten),
		T(advice_follows_the_auth_md_table),
		T(the_client_needs_a_home_for_its_file),
		T(the_credential_view_shows_no_secret),
		T(the_grant_view_says_whether_it_was_made_or_kept),
		T(a_bad_consent_value_is_refused_before_any_request),
		T(a_claim_block_is_kept_as_the_open_attempt),
		T(a_claim_block_a_terminal_should_not_print_is_refused),
		T(the_open_attempt_survives_the_file_and_dies_with_its_claim_token),
		T(a_v06_claim_has_no_mailed_code_and_a_v01_one_no_poll),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* core/url: the one URL parser, and the outbound address policy of core/fetch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "core/fetch.h"
#include "core/url.h"

static void
a_url_parses_into_lower_cased_parts_with_the_default_port(void **state)
{
	struct am_url u;

	(void)state;
	assert_true(am_url_parse("HTTPS://API.Example.TEST/v1/x?q=1#f", &u));
	assert_string_equal(u.scheme, "https");
	assert_string_equal(u.host, "api.example.test");
	assert_int_equal(u.port, 443);
	assert_true(u.default_port);
	assert_string_equal(u.path, "/v1/x");
	assert_true(u.has_query);
	assert_true(u.has_fragment);
	assert_true(am_url_parse("http://[::1]:8080", &u));
	assert_true(u.ipv6);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 8080);
	assert_string_equal(u.path, "/");
}

static void
anything_but_an_absolute_http_url_is_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"example.test/x",
		"/relative",
		"ftp://example.test/",
		"file:///etc/passwd",
		"javascript:alert(1)",
		"http://",
		"http:///path",
		"http:/path",
		"http:example.test",
		"http//example.test",
		"http://exa mple.test/",
		"http://example.test/a b",
		"http://example.test/\"x",
		"http://example.test/<x>",
		"http://example.test:0/",
		"http://example.test:65536/",
		"http://example.test:port/",
		"http://[::1/",
		"http://[fe80::1%25eth0]/",
		"http://example.test/\x01",
	};
	struct am_url u;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (am_url_parse(bad[i], &u))
			fail_msg("accepted: %s", bad[i]);
	}
}

static void
loopback_is_decided_by_the_parsed_host_not_a_prefix(void **state)
{
	(void)state;
	assert_true(am_url_text_is_loopback("http://127.0.0.1:8000/x"));
	assert_true(am_url_text_is_loopback("http://127.9.8.7/"));
	assert_true(am_url_text_is_loopback("http://localhost:4000"));
	assert_true(am_url_text_is_loopback("http://LOCALHOST/"));
	assert_true(am_url_text_is_loopback("http://[::1]:9/"));
	assert_true(am_url_text_is_loopback("http://[::ffff:127.0.0.1]/"));
	/* The cases that passed the hand-written checks. */
	assert_false(am_url_text_is_loopback("http://127.evil.com/"));
	assert_false(am_url_text_is_loopback("http://localhost.evil/"));
	assert_false(am_url_text_is_loopback("http://localhost.evil.test:80/"));
	assert_false(am_url_text_is_loopback("http://127.0.0.1.evil.test/"));
	assert_false(am_url_text_is_loopback("http://[::1].evil/"));
	assert_false(am_url_text_is_loopback("http://user@evil.test/127.0.0.1"));
	assert_false(am_url_text_is_loopback("http://128.0.0.1/"));
	assert_false(am_url_text_is_loopback("http://[::2]/"));
	assert_false(am_url_text_is_loopback("not a url"));
}

static void
origins_compare_scheme_host_and_effective_port(void **state)
{
	char o[128];

	(void)state;
	assert_true(am_url_texts_same_origin("https://a.test/x", "HTTPS://A.TEST:443/y?z"));
	assert_true(am_url_texts_same_origin("http://a.test:80", "http://a.test/"));
	assert_false(am_url_texts_same_origin("http://a.test", "https://a.test"));
	assert_false(am_url_texts_same_origin("http://a.test:8000", "http://a.test:8001"));
	assert_false(am_url_texts_same_origin("http://a.test", "http://a.test.evil"));
	assert_false(am_url_texts_same_origin("http://a.test", "http://a.test@evil.test/"));
	assert_true(am_url_origin_of("HTTP://Example.TEST:8080/p?q", o, sizeof(o)));
	assert_string_equal(o, "http://example.test:8080");
	assert_true(am_url_origin_of("https://example.test:443/p", o, sizeof(o)));
	assert_string_equal(o, "https://example.test");
	assert_true(am_url_origin_of("http://[::1]:9/", o, sizeof(o)));
	assert_string_equal(o, "http://[::1]:9");
	assert_false(am_url_origin_of("https://example.test/", o, 10));
	assert_true(am_url_is_origin_text("https://example.test"));
	assert_true(am_url_is_origin_text("https://example.test:8443/"));
	assert_false(am_url_is_origin_text("https://example.test/api"));
	assert_false(am_url_is_origin_text("https://example.test?x"));
	assert_false(am_url_is_origin_text("https://example.test#x"));
	assert_false(am_url_is_origin_text("https://user@example.test"));
}

static bool
under(const char *base, const char *url)
{
	struct am_url b, u;

	assert_true(am_url_parse(base, &b));
	assert_true(am_url_parse(url, &u));
	return am_url_under(&b, &u);
}

static void
a_path_prefix_counts_only_on_a_segment_boundary(void **state)
{
	(void)state;
	assert_true(under("https://a.test/api", "https://a.test/api"));
	assert_true(under("https://a.test/api", "https://a.test/api/"));
	assert_true(under("https://a.test/api", "https://a.test/api/x?y"));
	assert_false(under("https://a.test/api", "https://a.test/apix"));
	assert_true(under("https://a.test/api/", "https://a.test/api/x"));
	assert_false(under("https://a.test/api/", "https://a.test/api"));
	assert_true(under("https://a.test", "https://a.test/anything"));
	assert_false(under("https://a.test/api", "https://a.test.evil/api"));
	assert_false(under("https://a.test/api", "http://a.test/api"));
	assert_false(under("https://a.test/v2/", "https://a.test"));
}

static void
a_url_splits_into_its_origin_and_the_rest_as_written(void **state)
{
	char o[128];
	const char *rest;

	(void)state;
	assert_true(am_url_split("HTTPS://Api.TEST:443/v1/Items?x=1", o, sizeof(o), &rest));
	assert_string_equal(o, "https://api.test");
	assert_string_equal(rest, "/v1/Items?x=1");
	assert_true(am_url_split("http://127.0.0.1:8000", o, sizeof(o), &rest));
	assert_string_equal(o, "http://127.0.0.1:8000");
	assert_string_equal(rest, "");
	assert_true(am_url_split("http://h?q", o, sizeof(o), &rest));
	assert_string_equal(rest, "?q");
	assert_false(am_url_split("http:///x", o, sizeof(o), &rest));
	assert_false(am_url_split("https://a-rather-long-host.test/", o, 8, &rest));
}

static bool
blocked(int family, const char *text, const char *allow)
{
	struct sockaddr_storage ss;
	socklen_t len;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &in->sin_addr), 1);
		len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
		len = sizeof(*in6);
	}
	return !am_fetch_address_allowed((const struct sockaddr *)&ss, len, allow);
}

static void
private_and_special_addresses_are_refused_unless_allowed(void **state)
{
	static const char *const v4[] = {"127.0.0.1",	    "10.1.2.3",	   "172.16.0.1",
					 "172.31.255.255",  "192.168.1.1", "169.254.169.254",
					 "0.0.0.0",	    "100.64.0.1",  "224.0.0.1",
					 "255.255.255.255", "198.18.0.1"};
	static const char *const v6[] = {"::1",
					 "::",
					 "fe80::1",
					 "fc00::1",
					 "fd12::1",
					 "ff02::1",
					 "::ffff:127.0.0.1",
					 "::ffff:10.0.0.1",
					 "::ffff:169.254.169.254",
					 "64:ff9b::a00:1"};

	(void)state;
	for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
		if (!blocked(AF_INET, v4[i], ""))
			fail_msg("not refused: %s", v4[i]);
	}
	for (size_t i = 0; i < sizeof(v6) / sizeof(v6[0]); i++) {
		if (!blocked(AF_INET6, v6[i], NULL))
			fail_msg("not refused: %s", v6[i]);
	}
	assert_false(blocked(AF_INET, "93.184.216.34", ""));
	assert_false(blocked(AF_INET, "172.32.0.1", ""));
	assert_false(blocked(AF_INET6, "2606:4700::1", ""));
	/* Allowed blocks open exactly themselves, v4-mapped included. */
	assert_false(blocked(AF_INET, "127.0.0.1", "127.0.0.0/8 ::1/128"));
	assert_false(blocked(AF_INET6, "::1", "127.0.0.0/8 ::1/128"));
	assert_false(blocked(AF_INET6, "::ffff:127.0.0.2", "127.0.0.0/8"));
	assert_true(blocked(AF_INET, "10.0.0.1", "127.0.0.0/8 ::1/128"));
	assert_true(blocked(AF_INET, "169.254.169.254", "127.0.0.0/8"));
	assert_false(blocked(AF_INET, "10.9.0.1", "10.9.0.0/16"));
	assert_true(blocked(AF_INET, "10.10.0.1", "10.9.0.0/16"));
}

static void
an_allow_list_must_be_cidr_blocks(void **state)
{
	char err[128];

	(void)state;
	assert_int_equal(am_fetch_allow_check("", err, sizeof(err)), 0);
	assert_int_equal(am_fetch_allow_check("127.0.0.0/8 ::1/128 10.0.0.0/8", err, sizeof(err)),
			 0);
	assert_int_equal(am_fetch_allow_check("127.0.0.1", err, sizeof(err)), 0);
	assert_int_equal(am_fetch_allow_check("localhost", err, sizeof(err)), -1);
	assert_int_equal(am_fetch_allow_check("10.0.0.0/33", err, sizeof(err)), -1);
	assert_int_equal(am_fetch_allow_check("::1/129", err, sizeof(err)), -1);
	assert_int_equal(am_fetch_allow_check("10.0.0.0/", err, sizeof(err)), -1);
	assert_int_equal(am_fetch_allow_check("10.0.0.0/8x", err, sizeof(err)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_url_parses_into_lower_cased_parts_with_the_default_port),
		cmocka_unit_test(anything_but_an_absolute_http_url_is_refused),
		cmocka_unit_test(loopback_is_decided_by_the_parsed_host_not_a_prefix),
		cmocka_unit_test(origins_compare_scheme_host_and_effective_port),
		cmocka_unit_test(a_path_prefix_counts_only_on_a_segment_boundary),
		cmocka_unit_test(a_url_splits_into_its_origin_and_the_rest_as_written),
		cmocka_unit_test(private_and_special_addresses_are_refused_unless_allowed),
		cmocka_unit_test(an_allow_list_must_be_cidr_blocks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

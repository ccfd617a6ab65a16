/* mail/: address validation and message rendering (no header injection), and
 * no freed block of the mail path still holding the claim link's token. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/str.h"
#include "flows/internal.h"
#include "mail/mail.h"

/* Every block freed (or moved by realloc, which frees the old copy unwiped)
 * while `watched` is set is searched for it. Replacing the allocator's
 * entry points cannot coexist with ASan's, so there the test is skipped. */
static const char *watched;
static int unwiped;

#if defined(__SANITIZE_ADDRESS__)
#define WATCH_FREES 0
#else
#define WATCH_FREES 1
#include <malloc.h>

extern void __libc_free(void *p);
extern void *__libc_realloc(void *p, size_t n);

static void
inspect(void *p)
{
	if (watched != NULL && p != NULL &&
	    memmem(p, malloc_usable_size(p), watched, strlen(watched)) != NULL)
		unwiped++;
}

void
free(void *p)
{
	inspect(p);
	__libc_free(p);
}

void *
realloc(void *p, size_t n)
{
	inspect(p);
	return __libc_realloc(p, n);
}
#endif

static void
plain_addresses_are_accepted(void **state)
{
	(void)state;
	assert_true(mail_address_ok("user@example.com"));
	assert_true(mail_address_ok("first.last+tag@sub.example.co.uk"));
	assert_true(mail_address_ok("o'neil@example.test"));
}

static void
anything_that_could_reach_a_header_badly_is_refused(void **state)
{
	const char *bad[] = {
		"",
		"a",
		"a@b",
		"@b.test",
		"a@",
		"a@@b.test",
		"a b@c.test",
		"a@b.test\r\nBcc: x@y.z",
		"a@b.test\n",
		"\"q\"@b.test",
		"a..b@c.test",
		".a@b.test",
		"a.@b.test",
		"a@-b.test",
		"a@b-.test",
		"a@b..test",
		"<a@b.test>",
		"a@b.test,c@d.test",
		"a@b.test;",
		"a(comment)@b.test",
		"a@[127.0.0.1]",
		"a@b.test\t",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(mail_address_ok(bad[i]));
	{
		char local[80], domain[300];

		memset(local, 'a', 65);
		strcpy(local + 65, "@b.test");
		assert_false(mail_address_ok(local));
		strcpy(domain, "a@");
		memset(domain + 2, 'b', 250);
		strcpy(domain + 252, ".test");
		assert_false(mail_address_ok(domain));
	}
}

static void
normalising_lower_cases(void **state)
{
	char out[64];

	(void)state;
	assert_true(mail_address_normalize("Ann@Example.TEST", out, sizeof(out)));
	assert_string_equal(out, "ann@example.test");
	assert_false(mail_address_normalize("nope", out, sizeof(out)));
}

static void
rendered_message_has_crlf_lines_and_both_parts(void **state)
{
	struct mail_msg m = {"to@example.test", "Hello", "line one\nline two", "<p>hi</p>"};
	struct am_error e = {0};
	char *text = NULL;

	(void)state;
	assert_int_equal(mail_render("from@example.test", &m, &text, &e), AM_OK);
	assert_non_null(strstr(text, "From: <from@example.test>\r\n"));
	assert_non_null(strstr(text, "To: <to@example.test>\r\n"));
	assert_non_null(strstr(text, "Subject: Hello\r\n"));
	assert_non_null(strstr(text, "line one\r\nline two\r\n"));
	assert_non_null(strstr(text, "Content-Type: text/plain; charset=utf-8"));
	assert_non_null(strstr(text, "Content-Type: text/html; charset=utf-8"));
	assert_non_null(strstr(text, "Message-ID: <"));
	for (const char *p = strchr(text, '\n'); p != NULL; p = strchr(p + 1, '\n'))
		assert_int_equal(p[-1], '\r');
	free(text);
}

static void
a_subject_with_a_newline_or_a_bad_recipient_is_refused(void **state)
{
	struct mail_msg m = {"to@example.test", "Hi\r\nBcc: x@evil.test", "t", "h"};
	struct am_error e = {0};
	char *text = NULL;

	(void)state;
	assert_int_not_equal(mail_render("from@example.test", &m, &text, &e), AM_OK);
	assert_null(text);
	m.subject = "fine";
	m.to = "to@example.test\r\nBcc: x@evil.test";
	assert_int_equal(mail_render("from@example.test", &m, &text, &e), AM_E_INVALID_REQUEST);
	assert_null(text);
}

static void
non_ascii_subjects_are_encoded_words(void **state)
{
	struct mail_msg m = {"to@example.test", "Caf\xc3\xa9", "t", "h"};
	struct am_error e = {0};
	char *text = NULL;

	(void)state;
	assert_int_equal(mail_render("from@example.test", &m, &text, &e), AM_OK);
	assert_non_null(strstr(text, "Subject: =?UTF-8?B?Q2Fmw6k=?=\r\n"));
	free(text);
}

static void
no_freed_block_of_the_claim_mail_holds_the_token(void **state)
{
	/* Longer than any buffer's first size, so every buffer grows. */
	char token[FLOW_SECRET_LEN] =
		"cv_SECRETattempttoken0123456789abcdefghijklmnopqrstuvwxyzABCDE";
	char outbox[] = "/tmp/authmd-mail-XXXXXX";
	char long_name[120];
	struct am_config cfg;
	struct mailer *m = NULL;
	struct am_error e = {0};
	struct flow_env env = {0};

	(void)state;
	if (!WATCH_FREES)
		skip();
	assert_non_null(mkdtemp(outbox));
	am_config_defaults(&cfg);
	assert_true(am_copy(cfg.mail_outbox, sizeof(cfg.mail_outbox), outbox));
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_true(am_copy(cfg.resource_name, sizeof(cfg.resource_name), long_name));
	assert_int_equal(mailer_new(&cfg, &m, &e), AM_OK);
	env.cfg = &cfg;
	env.mail = m;
	watched = token;
	unwiped = 0;
	assert_int_equal(flow_send_claim_mail(&env, "ann@example.test", token, 1700000000, &e),
			 AM_OK);
	watched = NULL;
	assert_int_equal(unwiped, 0);
	mailer_free(m);
	{
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", outbox);
		assert_int_equal(system(cmd), 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain_addresses_are_accepted),
		cmocka_unit_test(anything_that_could_reach_a_header_badly_is_refused),
		cmocka_unit_test(normalising_lower_cases),
		cmocka_unit_test(rendered_message_has_crlf_lines_and_both_parts),
		cmocka_unit_test(a_subject_with_a_newline_or_a_bad_recipient_is_refused),
		cmocka_unit_test(non_ascii_subjects_are_encoded_words),
		cmocka_unit_test(no_freed_block_of_the_claim_mail_holds_the_token),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

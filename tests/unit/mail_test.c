/* mail/: address validation and message rendering (no header injection). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "mail/mail.h"

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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

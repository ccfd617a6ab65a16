/* core/: tokens, hashing, comparison, numbers, buffers and the error table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/crypto.h"
#include "core/errors.h"
#include "core/json.h"
#include "core/log.h"
#include "core/str.h"

static void
tokens_carry_their_prefix_and_base62_body(void **state)
{
	char a[64], b[64];
	struct am_error e = {0};

	(void)state;
	assert_int_equal(am_rand_token("clm_", a, sizeof(a), &e), AM_OK);
	assert_int_equal(am_rand_token("clm_", b, sizeof(b), &e), AM_OK);
	assert_int_equal(strlen(a), 4 + AM_TOKEN_CHARS);
	assert_memory_equal(a, "clm_", 4);
	assert_int_equal(
		strspn(a + 4, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
		AM_TOKEN_CHARS);
	assert_string_not_equal(a, b);
}

/* Random bytes come from a per-thread pool (core/crypto.c): a forked child
 * holds a copy of it and must not hand out the parent's next bytes. */
static void
a_forked_child_never_repeats_the_parents_next_token(void **state)
{
	char first[64], mine[64], childs[64] = "";
	struct am_error e = {0};
	int fds[2];
	pid_t pid;
	int status;
	ssize_t n;

	(void)state;
	assert_int_equal(am_rand_token("clm_", first, sizeof(first), &e), AM_OK); /* fills it */
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char t[64];
		int ok = am_rand_token("clm_", t, sizeof(t), &e) == AM_OK &&
			 write(fds[1], t, strlen(t) + 1) == (ssize_t)(strlen(t) + 1);

		_exit(ok ? 0 : 1);
	}
	close(fds[1]);
	assert_int_equal(am_rand_token("clm_", mine, sizeof(mine), &e), AM_OK);
	n = read(fds[0], childs, sizeof(childs) - 1);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(n > 4);
	assert_int_equal(strlen(childs), 4 + AM_TOKEN_CHARS);
	assert_string_not_equal(childs, mine);
	assert_string_not_equal(childs, first);
}

/* A thousand ids in a row (two pool refills) are all distinct and hex. */
static void
ids_from_the_pool_are_distinct(void **state)
{
	static char ids[1000][40];
	struct am_error e = {0};

	(void)state;
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(am_rand_id("reg_", ids[i], sizeof(ids[i]), &e), AM_OK);
		assert_int_equal(strspn(ids[i] + 4, "0123456789abcdef"), AM_ID_CHARS);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(ids[i], ids[j]);
	}
}

/* am_log writes each line whole, with one write and its newline, also when
 * the text is cut at the line cap; and the request id is on it. */
static void
a_log_line_is_whole_even_when_cut(void **state)
{
	char path[] = "/tmp/authmd-log-XXXXXX", got[4096], big[3000];
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	FILE *f;
	size_t n;

	(void)state;
	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(am_log_set_level("info"), 0);
	am_log_set_request("00000000000000ab");
	log_info("short key=%d", 7);
	log_debug("not written");
	log_warn("long %s", big);
	am_log_set_request(NULL);
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	f = fdopen(fd, "r");
	assert_non_null(f);
	rewind(f);
	n = fread(got, 1, sizeof(got) - 1, f);
	fclose(f);
	unlink(path);
	got[n] = '\0';
	{
		char *nl = strchr(got, '\n');
		char *second;

		assert_non_null(nl);
		*nl = '\0';
		assert_non_null(strstr(got, " level=info req=00000000000000ab short key=7"));
		assert_int_equal(strlen(got),
				 strlen("2026-01-01T00:00:00Z") +
					 strlen(" level=info req=00000000000000ab short key=7"));
		second = nl + 1;
		nl = strchr(second, '\n');
		assert_non_null(nl);
		assert_int_equal(nl - second + 1, 1023); /* the cap, newline included */
		assert_non_null(strstr(second, " level=warn req=00000000000000ab long xxx"));
		assert_string_equal(nl + 1, ""); /* and nothing else: debug is off */
	}
}

static void
a_token_buffer_too_small_is_refused(void **state)
{
	char small[10];
	struct am_error e = {0};

	(void)state;
	assert_int_equal(am_rand_token("clm_", small, sizeof(small), &e), AM_E_INTERNAL);
}

static void
otps_are_six_digits_and_cover_every_digit(void **state)
{
	char otp[AM_OTP_DIGITS + 1];
	int seen[10] = {0};
	struct am_error e = {0};

	(void)state;
	for (int i = 0; i < 500; i++) {
		assert_int_equal(am_rand_otp(otp, &e), AM_OK);
		assert_int_equal(strlen(otp), 6);
		for (int j = 0; j < 6; j++) {
			assert_true(otp[j] >= '0' && otp[j] <= '9');
			seen[otp[j] - '0']++;
		}
	}
	/* 3000 digits: every digit appears, and none wildly more than others. */
	for (int d = 0; d < 10; d++) {
		assert_true(seen[d] > 200);
		assert_true(seen[d] < 400);
	}
}

static void
sha256_matches_the_standard_vector(void **state)
{
	uint8_t h[AM_HASH_LEN];
	char hex[2 * AM_HASH_LEN + 1];

	(void)state;
	am_sha256_str("abc", h);
	am_hex(h, sizeof(h), hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void
constant_time_equality(void **state)
{
	(void)state;
	assert_true(am_ct_equal("abcd", "abcd", 4));
	assert_false(am_ct_equal("abcd", "abce", 4));
}

static void
numbers_are_parsed_strictly(void **state)
{
	int64_t v = 0;

	(void)state;
	assert_int_equal(am_parse_i64("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(am_parse_i64("", 0, 100, &v), -1);
	assert_int_equal(am_parse_i64(" 4", 0, 100, &v), -1);
	assert_int_equal(am_parse_i64("4x", 0, 100, &v), -1);
	assert_int_equal(am_parse_i64("-1", 0, 100, &v), -1);
	assert_int_equal(am_parse_i64("+1", 0, 100, &v), -1);
	assert_int_equal(am_parse_i64("101", 0, 100, &v), -1);
	assert_int_equal(am_parse_i64("99999999999999999999", 0, INT64_MAX, &v), -1);
}

static void
html_escaping_covers_the_five_characters(void **state)
{
	struct am_buf b = {0};
	char *s;

	(void)state;
	am_buf_html(&b, "<a href=\"x\">'&'</a>");
	s = am_buf_take(&b);
	assert_string_equal(s, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
	free(s);
}

static void
copy_refuses_what_does_not_fit(void **state)
{
	char dst[4];

	(void)state;
	assert_true(am_copy(dst, sizeof(dst), "abc"));
	assert_false(am_copy(dst, sizeof(dst), "abcd"));
	assert_string_equal(dst, "");
}

static void
every_error_code_has_a_name_and_the_documented_status(void **state)
{
	(void)state;
	for (int c = AM_E_INVALID_REQUEST; c < AM_E__COUNT; c++) {
		assert_non_null(am_err_name((enum am_err)c));
		assert_true(am_err_status((enum am_err)c) >= 400);
		assert_string_not_equal(am_err_name((enum am_err)c), "ok");
	}
	/* The claim tables of the service guide and AUTH.md. */
	assert_int_equal(am_err_status(AM_E_OTP_INVALID), 401);
	assert_int_equal(am_err_status(AM_E_OTP_EXPIRED), 410);
	assert_int_equal(am_err_status(AM_E_PREVIOUSLY_CLAIMED), 409);
	assert_int_equal(am_err_status(AM_E_CLAIM_EXPIRED), 410);
	assert_int_equal(am_err_status(AM_E_CLAIM_SUPERSEDED), 410);
	assert_int_equal(am_err_status(AM_E_CLAIM_COMPLETED), 409);
	assert_int_equal(am_err_status(AM_E_RATE_LIMITED), 429);
	assert_string_equal(am_err_name(AM_E_RATE_LIMITED), "rate_limited");
	assert_string_equal(am_err_name((enum am_err)999), "server_error");
}

static void
fail_fills_the_error_and_returns_the_code(void **state)
{
	struct am_error e = {0};

	(void)state;
	assert_int_equal(am_fail(&e, AM_E_OTP_INVALID, "%d tries left", 3), AM_E_OTP_INVALID);
	assert_int_equal(e.code, AM_E_OTP_INVALID);
	assert_string_equal(e.detail, "3 tries left");
	assert_int_equal(am_fail(NULL, AM_E_NOT_FOUND, "x"), AM_E_NOT_FOUND);
}

/* ---- operator surface: [log] format = json ---- */

static json_t *
json_line(enum am_log_level lvl, const char *req, const char *text)
{
	char line[2048];
	json_error_t err;
	json_t *obj;
	size_t n = am_log_format_line(line, sizeof(line), 1767225600LL, lvl, req, text);

	assert_int_equal(strlen(line), n);
	assert_null(strchr(line, '\n')); /* one line, whatever the text held */
	obj = json_loads(line, 0, &err);
	if (obj == NULL)
		fail_msg("not JSON: %s (%s)", line, err.text);
	assert_true(json_is_object(obj));
	return obj;
}

static void
json_log_lines_parse_with_the_fields_of_the_text_format(void **state)
{
	char text[1024], line[2048];
	json_t *o;

	(void)state;
	assert_int_equal(am_log_set_format("yaml"), -1);
	assert_int_equal(am_log_set_format("json"), 0);
	o = json_line(AM_LOG_INFO, "req_1",
		      "registration created id=reg_1 kind=anonymous scopes=\"api.read api.write\"");
	assert_string_equal(json_string_value(json_object_get(o, "time")), "2026-01-01T00:00:00Z");
	assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(o, "req")), "req_1");
	assert_string_equal(json_string_value(json_object_get(o, "id")), "reg_1");
	assert_string_equal(json_string_value(json_object_get(o, "kind")), "anonymous");
	assert_string_equal(json_string_value(json_object_get(o, "scopes")), "api.read api.write");
	assert_string_equal(json_string_value(json_object_get(o, "msg")),
			    "registration created id=reg_1 kind=anonymous scopes=\"api.read "
			    "api.write\"");
	json_decref(o);

	/* A pair cannot overwrite the fixed members; quotes, backslashes,
	 * control characters and an open quote stay inside the JSON. */
	o = json_line(AM_LOG_WARN, NULL,
		      "level=error msg=x time=0 req=forged why=\"a \\ b\nc\" tail=\"open");
	assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
	assert_null(json_object_get(o, "req"));
	assert_string_equal(json_string_value(json_object_get(o, "time")), "2026-01-01T00:00:00Z");
	assert_string_equal(json_string_value(json_object_get(o, "why")), "a \\ b\nc");
	assert_string_equal(json_string_value(json_object_get(o, "tail")), "open");
	json_decref(o);

	/* Not UTF-8, and the longest text am_log passes: still one object. */
	o = json_line(AM_LOG_ERROR, NULL, "bad \xff\xfe bytes=\xc3");
	assert_string_equal(json_string_value(json_object_get(o, "msg")), "(not UTF-8)");
	json_decref(o);
	memset(text, '"', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	o = json_line(AM_LOG_INFO, NULL, text);
	assert_non_null(json_object_get(o, "msg"));
	json_decref(o);
	/* Too small a buffer gives an empty line, never a cut object. */
	assert_int_equal(am_log_format_line(line, 16, 0, AM_LOG_INFO, NULL, "x=1"), 0);

	assert_int_equal(am_log_set_format("text"), 0);
	am_log_format_line(line, sizeof(line), 1767225600LL, AM_LOG_INFO, "req_1", "a=b");
	assert_string_equal(line, "2026-01-01T00:00:00Z level=info req=req_1 a=b");
}

/* ---- am_json_dump: the replies' and audit lines' writer ---- */

/* am_json_dump must write what json_dumps writes, byte for byte. */
static void
assert_dumps_like_jansson(const json_t *j)
{
	for (int sort = 0; sort <= 1; sort++) {
		char *want = json_dumps(j, JSON_COMPACT | (sort ? JSON_SORT_KEYS : 0));
		struct am_buf b = {0};

		assert_non_null(want);
		am_buf_puts(&b, "x"); /* appends after what is there */
		assert_true(am_json_dump(&b, j, sort != 0));
		assert_int_equal(b.len, strlen(want) + 1);
		assert_memory_equal(b.data + 1, want, strlen(want));
		free(want);
		am_buf_free(&b);
	}
}

static void
json_dump_writes_what_jansson_writes(void **state)
{
	char ascii[128], key[8];
	json_t *doc = json_object(), *arr = json_array(), *deep = json_object();

	(void)state;
	for (int c = 1; c < 128; c++) /* every ASCII byte, control characters included */
		ascii[c - 1] = (char)c;
	ascii[127] = '\0';
	json_object_set_new(doc, "ascii", json_string(ascii));
	json_object_set_new(doc, "utf8",
			    json_string("\xc3\xa9t\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x94\x91"));
	json_object_set_new(doc, "nul", json_stringn("a\0b", 3));
	json_object_set_new(doc, "key \"quoted\"\n", json_string(""));
	json_object_set_new(doc, "min", json_integer(INT64_MIN));
	json_object_set_new(doc, "max", json_integer(INT64_MAX));
	json_object_set_new(doc, "zero", json_integer(0));
	json_object_set_new(doc, "neg", json_integer(-42));
	json_object_set_new(doc, "real", json_real(0.1));
	json_object_set_new(doc, "big", json_real(1e300));
	json_object_set_new(doc, "t", json_true());
	json_object_set_new(doc, "f", json_false());
	json_object_set_new(doc, "n", json_null());
	json_object_set_new(doc, "empty_o", json_object());
	json_object_set_new(doc, "empty_a", json_array());
	for (int i = 0; i < 40; i++) { /* more members than the stack's array holds */
		snprintf(key, sizeof(key), "k%02d", (i * 17) % 40);
		json_object_set_new(deep, key, json_integer(i));
	}
	json_array_append_new(arr, json_string("x"));
	json_array_append_new(arr, deep);
	json_array_append_new(arr, json_array());
	json_object_set_new(doc, "arr", arr);
	assert_dumps_like_jansson(doc);
	assert_dumps_like_jansson(arr);
	json_decref(doc);
}

static void
json_dump_refuses_scalars_and_runaway_nesting(void **state)
{
	struct am_buf b = {0};
	json_t *top = json_array(), *cur = top;

	(void)state;
	for (int i = 0; i < 70; i++) {
		json_t *next = json_array();

		json_array_append_new(cur, next);
		cur = next;
	}
	json_array_append_new(cur, json_string("secret"));
	am_buf_puts(&b, "kept");
	assert_false(am_json_dump(&b, top, false));
	assert_string_equal(b.data, "kept"); /* as it was */
	json_decref(top);
	top = json_string("s");
	assert_false(am_json_dump(&b, top, false));
	assert_false(am_json_dump(&b, NULL, false));
	assert_int_equal(b.len, 4);
	json_decref(top);
	am_buf_free(&b);
}

/* The member-by-member writer writes what a tree of the same members dumps. */
static void
json_writer_matches_the_tree_it_stands_for(void **state)
{
	json_t *doc = json_object(), *list = json_array(), *inner = json_object();
	struct am_buf want = {0}, got = {0};

	(void)state;
	json_object_set_new(doc, "user_id", json_null());
	json_object_set_new(doc, "email", json_string("a\"b\\c\n@\xc3\xa9.example"));
	json_object_set_new(doc, "scopes", am_json_scopes("  api.read  api.write "));
	json_object_set_new(doc, "none", am_json_scopes(""));
	json_object_set_new(doc, "n", json_integer(-9007199254740993LL));
	json_object_set_new(doc, "ok", json_true());
	json_object_set_new(doc, "no", json_false());
	json_object_set_new(inner, "k", json_string("v"));
	json_array_append_new(list, json_string("first"));
	json_array_append_new(list, inner);
	json_object_set_new(doc, "list", list);
	assert_true(am_json_dump(&want, doc, false));

	am_jw_begin(&got);
	am_jw_str(&got, "user_id", NULL);
	am_jw_str(&got, "email", "a\"b\\c\n@\xc3\xa9.example");
	am_jw_scopes(&got, "scopes", "  api.read  api.write ");
	am_jw_scopes(&got, "none", "");
	am_jw_int(&got, "n", -9007199254740993LL);
	am_jw_bool(&got, "ok", true);
	am_jw_bool(&got, "no", false);
	am_jw_key_array(&got, "list");
	am_jw_item(&got, "first", 5);
	am_jw_begin(&got);
	am_jw_str(&got, "k", "v");
	am_jw_end(&got);
	am_jw_array_end(&got);
	am_jw_end(&got);
	assert_string_equal(got.data, want.data);
	json_decref(doc);
	am_buf_free(&want);
	am_buf_free(&got);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tokens_carry_their_prefix_and_base62_body),
		cmocka_unit_test(a_token_buffer_too_small_is_refused),
		cmocka_unit_test(a_forked_child_never_repeats_the_parents_next_token),
		cmocka_unit_test(ids_from_the_pool_are_distinct),
		cmocka_unit_test(a_log_line_is_whole_even_when_cut),
		cmocka_unit_test(otps_are_six_digits_and_cover_every_digit),
		cmocka_unit_test(sha256_matches_the_standard_vector),
		cmocka_unit_test(constant_time_equality),
		cmocka_unit_test(numbers_are_parsed_strictly),
		cmocka_unit_test(html_escaping_covers_the_five_characters),
		cmocka_unit_test(copy_refuses_what_does_not_fit),
		cmocka_unit_test(every_error_code_has_a_name_and_the_documented_status),
		cmocka_unit_test(fail_fills_the_error_and_returns_the_code),
		cmocka_unit_test(json_log_lines_parse_with_the_fields_of_the_text_format),
		cmocka_unit_test(json_dump_writes_what_jansson_writes),
		cmocka_unit_test(json_dump_refuses_scalars_and_runaway_nesting),
		cmocka_unit_test(json_writer_matches_the_tree_it_stands_for),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

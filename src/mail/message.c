/* Address validation and RFC 5322 rendering. */
#include <ctype.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/crypto.h"
#include "core/limits.h"
#include "core/str.h"
#include "mail/mail.h"

static bool
atext(char c)
{
	return isalnum((unsigned char)c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool
domain_ok(const char *d)
{
	size_t label = 0;
	int dots = 0;
	char prev = '.';

	if (*d == '\0')
		return false;
	for (const char *p = d; *p != '\0'; p++) {
		if (*p == '.') {
			if (label == 0 || prev == '-')
				return false;
			dots++;
			label = 0;
		} else if (isalnum((unsigned char)*p) || *p == '-') {
			if (label == 0 && *p == '-')
				return false;
			if (++label > 63)
				return false;
		} else {
			return false;
		}
		prev = *p;
	}
	return label > 0 && prev != '-' && dots >= 1;
}

bool
mail_address_ok(const char *addr)
{
	const char *at;
	size_t len;

	if (addr == NULL || (len = strlen(addr)) < 3 || len > AM_MAX_EMAIL_BYTES)
		return false;
	at = strchr(addr, '@');
	if (at == NULL || at == addr || strchr(at + 1, '@') != NULL || at - addr > 64)
		return false;
	for (const char *p = addr; p < at; p++) {
		if (*p == '.') {
			if (p == addr || p + 1 == at || p[1] == '.')
				return false;
		} else if (!atext(*p)) {
			return false;
		}
	}
	return domain_ok(at + 1);
}

bool
mail_address_normalize(const char *addr, char *out, size_t cap)
{
	if (!mail_address_ok(addr) || !am_copy(out, cap, addr))
		return false;
	for (char *p = out; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return true;
}

static bool
subject_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false; /* CR, LF and every other control: no injection */
	}
	return strlen(s) <= 200;
}

static void
put_subject(struct am_buf *b, const char *s)
{
	bool ascii = true;
	unsigned char enc[4 * 200 / 3 + 8];

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		ascii = ascii && *p < 0x80;
	if (ascii) {
		am_buf_printf(b, "Subject: %s\r\n", s);
		return;
	}
	/* RFC 2047 encoded-word; subject_ok capped the length. */
	EVP_EncodeBlock(enc, (const unsigned char *)s, (int)strlen(s));
	am_buf_printf(b, "Subject: =?UTF-8?B?%s?=\r\n", (const char *)enc);
}

/* Appends text with every line ending made CRLF, as SMTP requires. */
static void
put_body(struct am_buf *b, const char *text)
{
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == '\r')
			continue;
		if (*p == '\n')
			am_buf_add(b, "\r\n", 2);
		else
			am_buf_add(b, p, 1);
	}
	am_buf_add(b, "\r\n", 2);
}

enum am_err
mail_render(const char *from, const struct mail_msg *msg, char **out, struct am_error *e)
{
	struct am_buf b = {.secret = true}; /* the body carries the claim link */
	char boundary[64], msgid[64], date[64];
	const char *domain;
	struct tm tm;
	time_t now = time(NULL);
	enum am_err rc;

	if (!mail_address_ok(from))
		return am_fail(e, AM_E_INTERNAL, "the configured sender address is not valid");
	if (!mail_address_ok(msg->to))
		return am_fail(e, AM_E_INVALID_REQUEST, "the email address is not valid");
	if (!subject_ok(msg->subject))
		return am_fail(e, AM_E_INTERNAL, "the subject has control characters");
	if ((rc = am_rand_id("b_", boundary, sizeof(boundary), e)) != AM_OK ||
	    (rc = am_rand_id("", msgid, sizeof(msgid), e)) != AM_OK)
		return rc;
	domain = strchr(from, '@') + 1;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

	am_buf_printf(&b, "From: <%s>\r\nTo: <%s>\r\n", from, msg->to);
	put_subject(&b, msg->subject);
	am_buf_printf(&b, "Date: %s\r\nMessage-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n", date, msgid,
		      domain);
	am_buf_puts(&b, "Auto-Submitted: auto-generated\r\n");
	am_buf_printf(&b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", boundary);
	am_buf_printf(&b,
		      "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		      "Content-Transfer-Encoding: 8bit\r\n\r\n",
		      boundary);
	put_body(&b, msg->text);
	am_buf_printf(&b,
		      "--%s\r\nContent-Type: text/html; charset=utf-8\r\n"
		      "Content-Transfer-Encoding: 8bit\r\n\r\n",
		      boundary);
	put_body(&b, msg->html);
	am_buf_printf(&b, "--%s--\r\n", boundary);
	*out = am_buf_take(&b);
	return AM_OK;
}

/* Outgoing mail: an RFC 5322 message with text and HTML parts, written to an
 * outbox folder (default) or sent over SMTP with libcurl. Addresses are
 * validated before use, and nothing from outside reaches a header unchecked,
 * so no header can be injected. */
#ifndef AM_MAIL_H
#define AM_MAIL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "core/errors.h"

struct mailer;

struct mail_msg {
	const char *to;	     /* a validated address */
	const char *subject; /* printable; non-ASCII is RFC 2047 encoded */
	const char *text;    /* plain-text part, UTF-8 */
	const char *html;    /* HTML part, already escaped by the caller */
};

/* True when addr is a plain addr-spec we accept: at most 254 bytes, one @,
 * a dot-atom local part of at most 64 bytes, and a domain of LDH labels with
 * at least one dot. Quoted local parts, comments, spaces and control
 * characters are all refused. */
bool mail_address_ok(const char *addr);

/* Lower-cases addr into out (cap bytes); false if it does not fit or is not
 * mail_address_ok. */
bool mail_address_normalize(const char *addr, char *out, size_t cap);

/* Renders msg as a complete RFC 5322 message from `from` into *out (caller
 * wipes with OPENSSL_cleanse, then frees: it holds the claim link; no
 * intermediate copy is left unwiped). Fails with AM_E_INVALID_REQUEST on a
 * bad address or subject. */
enum am_err mail_render(const char *from, const struct mail_msg *msg, char **out,
			struct am_error *e) AM_WUR;

/* A mailer from [mail]: SMTP when smtp_url is set, else the outbox folder
 * (created if missing). */
enum am_err mailer_new(const struct am_config *cfg, struct mailer **out, struct am_error *e) AM_WUR;
void mailer_free(struct mailer *m);

/* Delivers msg; AM_E_UNAVAILABLE when the outbox cannot be written or the
 * SMTP server cannot be reached or refuses. Thread-safe. */
enum am_err mailer_send(struct mailer *m, const struct mail_msg *msg, struct am_error *e) AM_WUR;

#endif

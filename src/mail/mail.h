/* Outgoing mail: an RFC 5322 message with text and HTML parts, written to an
 * outbox folder (default) or sent over SMTP with libcurl. Addresses are
 * validated before use, and nothing from outside reaches a header unchecked,
 * so no header can be injected. */
#ifndef AM_MAIL_H
#define AM_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/errors.h"

struct mailer;
struct store_pool;

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

/* How a delivery of a rendered message ended. */
enum mail_outcome {
	MAIL_SENT,	/* in the outbox, or accepted by the SMTP server */
	MAIL_TEMPORARY, /* try again later: no connection, timeout, SMTP 4xx */
	MAIL_PERMANENT, /* the SMTP server refused it for good (5xx) */
};

/* Delivers message (an RFC 5322 text from mail_render) to rcpt; why gets a
 * short reason without secrets (for logs and the queue's last_error). A
 * delivery in flight is abandoned (MAIL_TEMPORARY) when the mailer stops. */
enum mail_outcome mailer_deliver(struct mailer *m, const char *rcpt, const char *message, char *why,
				 size_t whycap);

/* The delay before try number `tries` + 1 of a mail that failed `tries`
 * times (tries >= 1): min_s doubled per try, capped at max_s, then a
 * uniform jitter taking it down by up to half, so that mails that failed
 * together do not retry together. rnd is a uniform random value. */
int64_t mail_backoff(int64_t tries, int64_t min_s, int64_t max_s, uint32_t rnd);

/* Starts the mail worker: a thread that sends the store's queued mails
 * (store_mail_*), retrying temporary failures with mail_backoff and
 * recording permanent ones. From then on mailer_queued is true. The pool
 * must outlive mailer_stop. */
enum am_err mailer_start(struct mailer *m, struct store_pool *pool, struct am_error *e) AM_WUR;
/* Stops and joins the worker (abandoning a delivery in flight, which stays
 * queued); no-op when not started. */
void mailer_stop(struct mailer *m);
/* True when a worker sends the queue: flows write a queue row instead of
 * sending. False (tests, tools): mailer_send delivers at once. */
bool mailer_queued(const struct mailer *m);
/* Wakes the worker: a queue row was committed. Never blocks on delivery. */
void mailer_kick(struct mailer *m);

#endif

/* Between mailer.c and queue.c only: the mailer's worker slot and stop
 * flag. Not part of the mail interface (mail.h). */
#ifndef AM_MAIL_WORKER_H
#define AM_MAIL_WORKER_H

#include <stdbool.h>

#include "core/config.h"

struct mailer;
struct mail_worker;

/* Where the mailer keeps its worker (NULL: none). */
struct mail_worker **mailer_worker_slot(struct mailer *m);
/* The configuration the mailer was made with (borrowed). */
const struct am_config *mailer_config(const struct mailer *m);
/* Sets the flag libcurl's progress callback reads to abandon a delivery in
 * flight when the worker stops. */
void mailer_set_stopping(struct mailer *m, bool on);

#endif

/* Email addresses as the service meets them (the verified_email assertion,
 * the claim's email, an ID-JAG's email claim): mail_address_ok, then
 * mail_address_normalize and mail_render. The oracles are the contract in
 * mail/mail.h: an accepted address is a plain addr-spec that cannot break
 * out of the To: header; a refused one is refused by every entry point. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/fuzz.h"
#include "mail/mail.h"

static void
check_accepted(const char *a)
{
	struct mail_msg msg = {a, "Claim your agent", "text", "<p>html</p>"};
	struct am_error e = {0};
	const char *at = strchr(a, '@');
	char norm[300], again[300], *out = NULL, to[300];
	size_t len = strlen(a);

	if (len > 254 || at == NULL || strchr(at + 1, '@') != NULL || at == a || at - a > 64)
		fz_die("an accepted address breaks the addr-spec rules");
	for (const char *p = a; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f || strchr("<>()[]\\,;:\"", c) != NULL)
			fz_die("an accepted address holds a character outside dot-atom");
	}
	if (!mail_address_normalize(a, norm, sizeof(norm)) || !mail_address_ok(norm) ||
	    !mail_address_normalize(norm, again, sizeof(again)) || strcmp(norm, again) != 0 ||
	    strcasecmp(norm, a) != 0)
		fz_die("normalizing an accepted address is not stable");
	if (mail_render("authmd@fuzz.test", &msg, &out, &e) != AM_OK)
		fz_die("an accepted address cannot be rendered");
	snprintf(to, sizeof(to), "\r\nTo: <%s>\r\n", a);
	if (strstr(out, to) == NULL)
		fz_die("the rendered To: header is not exactly the address");
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *a = malloc(size + 1);
	char norm[300];

	if (a == NULL)
		abort();
	memcpy(a, data, size);
	a[size] = '\0'; /* an embedded NUL ends the address, as in a C string */
	if (mail_address_ok(a)) {
		check_accepted(a);
	} else {
		struct mail_msg msg = {a, "s", "t", "h"};
		struct am_error e = {0};
		char *out = NULL;

		if (mail_address_normalize(a, norm, sizeof(norm)))
			fz_die("normalize accepted an address mail_address_ok refused");
		if (mail_render("authmd@fuzz.test", &msg, &out, &e) != AM_E_INVALID_REQUEST ||
		    out != NULL)
			fz_die("mail_render accepted an address mail_address_ok refused");
	}
	free(a);
	return 0;
}

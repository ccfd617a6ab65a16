/* authmd-provider's API layer: the HTTP routes over the flow layer's
 * struct prov_app (provider.h). Only papi.c and main.c include this; the
 * flow layer (pconfig, pkeys, pstore, pflow, pdiscover, delivery) never
 * sees an HTTP type (tests/integration/test_layering.py checks). */
#ifndef AM_PROVIDER_PAPI_H
#define AM_PROVIDER_PAPI_H

#include <stddef.h>

#include "core/errors.h"
#include "http/http.h"
#include "provider/provider.h"

struct prov_http {
	struct prov_app *app; /* not owned; the handlers' context */
	struct http_route routes[8];
	size_t nroutes;
	char cimd_path[1024]; /* the route of the CIMD document, when served */
};

/* The routes of the provider's API over a (which must outlive them): the
 * JWKS, grants, ID-JAG minting and, when client_id is a URL under the
 * issuer, its Client ID Metadata Document. Serve them with a as context. */
enum am_err prov_http_new(struct prov_app *a, struct prov_http **out, struct am_error *e) AM_WUR;
void prov_http_free(struct prov_http *h);

#endif

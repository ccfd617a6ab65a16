/* Configuration files: the fuzzer's bytes as an INI file, loaded as the
 * server's (am_config_load) and as the provider's (prov_config_load). Both
 * must either accept or refuse with "file:line"-style text; an accepted
 * server file must still pass the cross-key checks on a second look. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/fuzz.h"
#include "core/log.h"
#include "provider/provider.h"

static char path[400];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct am_config cfg; /* large: keep it off the stack */
	static struct prov_config pc;
	char err[512];
	int fd;

	if (path[0] == '\0') {
		snprintf(path, sizeof(path), "%s/fuzz.ini", fz_tmpdir());
		(void)am_log_set_level("error");
	}
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 ||
	    write(fd, data, size) != (ssize_t)size || close(fd) != 0)
		fz_die("cannot write the config file");
	err[0] = '\0';
	if (am_config_load(path, &cfg, err, sizeof(err)) == 0) {
		if (am_config_validate(&cfg, err, sizeof(err)) != 0)
			fz_die("a loaded config fails its own cross-key checks");
		if (cfg.nproviders > AM_MAX_PROVIDERS)
			fz_die("more providers than AM_MAX_PROVIDERS");
	} else if (err[0] == '\0') {
		fz_die("a refused server config gives no reason");
	}
	err[0] = '\0';
	if (prov_config_load(path, &pc, err, sizeof(err)) != 0 && err[0] == '\0')
		fz_die("a refused provider config gives no reason");
	return 0;
}

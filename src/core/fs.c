#include "core/fs.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "core/str.h"

int
am_mkdir_p(const char *path)
{
	char tmp[512];

	if (!am_copy(tmp, sizeof(tmp), path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	}
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

int
am_mkdir_parent(const char *file)
{
	char dir[512];
	char *slash;

	if (!am_copy(dir, sizeof(dir), file)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	return am_mkdir_p(dir);
}

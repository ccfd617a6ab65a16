/* File-system helpers. */
#ifndef AM_FS_H
#define AM_FS_H

#include <stddef.h>

#include "core/compiler.h"

/* Creates path and its missing parents with mode 0700; 0 or -1 (errno). */
int am_mkdir_p(const char *path) AM_WUR;

/* Creates the missing parent folders of the file path; 0 or -1 (errno). */
int am_mkdir_parent(const char *file) AM_WUR;

/* Writes len bytes to path atomically with mode 0600: a temporary file
 * beside it (tmp, which must be on the same file system), fsync, rename.
 * Readers see the old content or the new, never a part. 0 or -1 (errno). */
int am_write_private(const char *path, const char *tmp, const void *data, size_t len) AM_WUR;

#endif

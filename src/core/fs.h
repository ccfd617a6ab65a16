/* File-system helpers. */
#ifndef AM_FS_H
#define AM_FS_H

#include "core/compiler.h"

/* Creates path and its missing parents with mode 0700; 0 or -1 (errno). */
int am_mkdir_p(const char *path) AM_WUR;

/* Creates the missing parent folders of the file path; 0 or -1 (errno). */
int am_mkdir_parent(const char *file) AM_WUR;

#endif

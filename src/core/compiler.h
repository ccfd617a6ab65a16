/* Compiler attributes used across the tree. */
#ifndef AM_COMPILER_H
#define AM_COMPILER_H

#define AM_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define AM_WUR __attribute__((warn_unused_result))
#define AM_UNUSED __attribute__((unused))

#endif

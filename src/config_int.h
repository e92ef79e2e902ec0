/* Inside config (config.c, config_file.c); other modules use config.h. */
#ifndef KVS_CONFIG_INT_H
#define KVS_CONFIG_INT_H

#include <stddef.h>

#include "util.h"

/* Largest configuration accepted; real ones are a few KB. */
#define CONFIG_MAX_BYTES (1024 * 1024)

/* Who besides root and us could change the file open at fd: anyone (o+w) is refused (-EPERM,
 * err set); another owner, or a group other than root's with write access, sets *warning (a
 * new string, caller frees) if warning and *warning is still NULL. 0 otherwise. */
int config_file_mode_check(const char *path, int fd, char **warning, kvs_err *err);
/* Reads the whole file at path (at most CONFIG_MAX_BYTES) into a new NUL-terminated buffer
 * (*out, caller wipes and frees; *outlen its length), after refusing a file every user may
 * write; a file others may change sets *warning (a new string, caller frees; NULL: not
 * wanted). 0, or a negative errno with err set (-ENOENT when it does not exist). */
int config_file_read(const char *path, char **out, size_t *outlen, char **warning,
                     kvs_err *err);

#endif

/* KiotViet dates. The REST API sends Vietnam wall-clock time without an offset
 * ("2025-06-17T14:34:09.013", 0-7 fraction digits); webhooks and old endpoints send an offset,
 * "Z" or "/Date(ms)/". Vietnam has no DST: offset-less means +07:00. */
#ifndef KVS_KVTIME_H
#define KVS_KVTIME_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define KVTIME_VN_OFFSET_S (7 * 3600)
#define KVTIME_BUFSZ 40

/* Parses "YYYY-MM-DD", "YYYY-M-D", "YYYY-MM-DDTHH:MM[:SS[.f{1,7}]]" (also ' ' for 'T'),
 * optionally followed by "Z", "±HH:MM", "±HHMM" or "±HH"; and "/Date(ms)/",
 * "/Date(ms±HHMM)/". Calendar fields are range-checked (leap years included). A 7th fraction
 * digit (100 ns) is truncated to microseconds. Returns 0 and microseconds since the Unix
 * epoch (UTC), or -EINVAL. Instants whose Vietnam wall-clock year would fall outside
 * 0001..9999 are -EINVAL too, so every formatter below writes a 4-digit year that reads back
 * (and kvtime_format_vn's text is one PostgreSQL accepts). */
int kvtime_parse(const char *s, int64_t *out_us) KVS_MUSTCHECK;
/* True for instants in Vietnam wall-clock year 1: KiotViet's "zero date" (.NET's
 * DateTime.MinValue, "0001-01-01T00:00:00") stands for "no date", never for a real one. */
bool kvtime_is_zero_date(int64_t us);
/* "2025-06-17T14:34:09.013+07:00": Vietnam time with explicit offset, fraction trimmed
 * (none when whole seconds). For Postgres timestamptz parameters and for people. */
int kvtime_format_vn(int64_t us, char out[KVTIME_BUFSZ]);
/* "2025-06-17T14:34:09": Vietnam wall-clock time without offset, seconds floored: the form
 * KiotViet's lastModifiedFrom expects. */
int kvtime_format_vn_local(int64_t us, char out[KVTIME_BUFSZ]);
/* "2025-06-17T07:34:09.013Z": UTC. */
int kvtime_format_utc(int64_t us, char out[KVTIME_BUFSZ]);

#endif

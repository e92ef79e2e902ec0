/* KiotViet dates <-> microseconds since the Unix epoch.
 *
 * All calendar arithmetic is our own (proleptic Gregorian, days-from-civil and back, after
 * Howard Hinnant's public-domain algorithms) so that nothing depends on the process TZ,
 * mktime or localtime: Vietnam is a fixed +07:00, and the daemon may run in any zone. */
#include "kvtime.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define US_PER_S INT64_C(1000000)
#define S_PER_DAY INT64_C(86400)

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) q--;
    return q;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12, d 1..31). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Instants we accept: those whose Vietnam wall-clock year is 0001..9999, i.e.
 * 0001-01-01T00:00:00+07:00 (KiotViet's "zero date", .NET DateTime.MinValue) ..
 * 9999-12-31T23:59:59.999999+07:00. Every formatter then writes a 4-digit year (UTC may say
 * 0000) that kvtime_parse reads back, and the +07:00 text we send is one PostgreSQL's
 * timestamptz accepts: a hostile "/Date(-99999999999999)/" or "9999-12-31T23:00-12:00"
 * fails its record instead of the page's SQL. */
#define KVTIME_MIN_US ((INT64_C(-62135596800) - KVTIME_VN_OFFSET_S) * US_PER_S)
#define KVTIME_MAX_US ((INT64_C(253402300800) - KVTIME_VN_OFFSET_S) * US_PER_S - 1)

bool kvtime_is_zero_date(int64_t us)
{
    return us >= KVTIME_MIN_US && us < KVTIME_MIN_US + INT64_C(365) * 86400 * US_PER_S;
}

static int in_range(int64_t us, int64_t *out_us)
{
    if (us < KVTIME_MIN_US || us > KVTIME_MAX_US) return -EINVAL;
    *out_us = us;
    return 0;
}

static bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Reads between min and max digits at *p into *out; 0 or -EINVAL. */
static int read_digits(const char **p, int min, int max, int64_t *out)
{
    int n = 0;
    int64_t v = 0;
    while (n < max && is_digit((*p)[n])) {
        v = v * 10 + ((*p)[n] - '0');
        n++;
    }
    if (n < min) return -EINVAL;
    *p += n;
    *out = v;
    return 0;
}

/* ".NET JSON" dates: "/Date(ms)/" or "/Date(ms±HHMM)/". The milliseconds are UTC; the
 * offset only says which zone the sender displayed, so it is validated and ignored. */
static int parse_msdate(const char *p, int64_t *out_us)
{
    bool neg = false;
    int64_t ms, tz;
    if (*p == '-') {
        neg = true;
        p++;
    }
    /* 16 digits cannot overflow read_digits; the µs result must still fit int64. */
    if (read_digits(&p, 1, 16, &ms) || is_digit(*p) || ms > INT64_MAX / 1000) return -EINVAL;
    if (*p == '+' || *p == '-') {
        p++;
        if (read_digits(&p, 4, 4, &tz) || tz / 100 > 23 || tz % 100 > 59) return -EINVAL;
    }
    if (strcmp(p, ")/") != 0) return -EINVAL;
    return in_range((neg ? -ms : ms) * 1000, out_us);
}

int kvtime_parse(const char *s, int64_t *out_us)
{
    int64_t y, mo, d, h = 0, mi = 0, sec = 0, frac_us = 0, off_s = KVTIME_VN_OFFSET_S;
    const char *p = s, *q;

    if (!s || !out_us) return -EINVAL;
    if (strncmp(s, "/Date(", 6) == 0) return parse_msdate(s + 6, out_us);

    if (read_digits(&p, 4, 4, &y) || *p++ != '-') return -EINVAL;
    q = p;
    if (read_digits(&p, 1, 2, &mo) || *p++ != '-') return -EINVAL;
    bool padded = p - q == 3;
    q = p;
    if (read_digits(&p, 1, 2, &d)) return -EINVAL;
    padded = padded && p - q == 2;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, (int)mo)) return -EINVAL;

    if (*p != '\0') {
        /* A time part needs the zero-padded date: "2024-12-1T…" is nobody's format. */
        if (!padded || (*p != 'T' && *p != ' ')) return -EINVAL;
        p++;
        if (read_digits(&p, 2, 2, &h) || *p++ != ':' || read_digits(&p, 2, 2, &mi)) return -EINVAL;
        if (*p == ':') {
            p++;
            if (read_digits(&p, 2, 2, &sec)) return -EINVAL;
            if (*p == '.') {
                int64_t f;
                p++;
                q = p;
                if (read_digits(&p, 1, 7, &f) || is_digit(*p)) return -EINVAL;
                /* Scale to 7 digits (100 ns), then drop the 7th: microseconds. */
                for (ptrdiff_t n = p - q; n < 7; n++) f *= 10;
                frac_us = f / 10;
            }
        }
        if (h > 23 || mi > 59 || sec > 59) return -EINVAL;
        if (*p == 'Z') {
            off_s = 0;
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1;
            int64_t oh, om = 0;
            if (read_digits(&p, 2, 2, &oh)) return -EINVAL;
            if (*p == ':') {
                p++;
                if (read_digits(&p, 2, 2, &om)) return -EINVAL;
            } else if (is_digit(*p)) {
                if (read_digits(&p, 2, 2, &om)) return -EINVAL;
            }
            if (oh > 23 || om > 59) return -EINVAL;
            off_s = sign * (oh * 3600 + om * 60);
        }
        if (*p != '\0') return -EINVAL;
    }

    int64_t days = days_from_civil(y, (int)mo, (int)d);
    int64_t secs = days * S_PER_DAY + h * 3600 + mi * 60 + sec - off_s;
    return in_range(secs * US_PER_S + frac_us, out_us);
}

/* Wall-clock fields of an instant seen at a fixed UTC offset; floors for pre-1970 instants
 * (-1 µs is 23:59:59.999999 on the previous day, not 00:00:00). */
typedef struct wall {
    int64_t year;
    int mon, day, hour, min, sec;
    int us;
} wall;

static void wall_from_us(int64_t us, int64_t off_s, wall *w)
{
    /* Remainder first: secs * 10^6 can overflow for INT64_MIN. |secs| <= 9.3e12 leaves ample
     * room for off_s. */
    int64_t rem = us % US_PER_S;
    w->us = (int)(rem < 0 ? rem + US_PER_S : rem);
    int64_t secs = floor_div(us, US_PER_S) + off_s;
    int64_t days = floor_div(secs, S_PER_DAY);
    int64_t sod = secs - days * S_PER_DAY;
    civil_from_days(days, &w->year, &w->mon, &w->day);
    w->hour = (int)(sod / 3600);
    w->min = (int)(sod / 60 % 60);
    w->sec = (int)(sod % 60);
}

/* "YYYY-MM-DDTHH:MM:SS" then ".ffffff" with trailing zeros trimmed (when with_frac and not
 * whole seconds), then suffix. */
static int format_wall(const wall *w, bool with_frac, const char *suffix, char out[KVTIME_BUFSZ])
{
    char frac[8] = "";
    if (with_frac && w->us) {
        int us = w->us, nd = 6;
        while (us % 10 == 0) {
            us /= 10;
            nd--;
        }
        snprintf(frac, sizeof frac, ".%0*d", nd, us);
    }
    return snprintf(out, KVTIME_BUFSZ, "%04lld-%02d-%02dT%02d:%02d:%02d%s%s", (long long)w->year,
                    w->mon, w->day, w->hour, w->min, w->sec, frac, suffix);
}

int kvtime_format_vn(int64_t us, char out[KVTIME_BUFSZ])
{
    wall w;
    wall_from_us(us, KVTIME_VN_OFFSET_S, &w);
    return format_wall(&w, true, "+07:00", out);
}

int kvtime_format_vn_local(int64_t us, char out[KVTIME_BUFSZ])
{
    wall w;
    wall_from_us(us, KVTIME_VN_OFFSET_S, &w);
    return format_wall(&w, false, "", out);
}

int kvtime_format_utc(int64_t us, char out[KVTIME_BUFSZ])
{
    wall w;
    wall_from_us(us, 0, &w);
    return format_wall(&w, true, "Z", out);
}

build-old/obj/sync.o: src/sync.c include/sync.h include/backoff.h \
 include/config.h include/util.h include/http.h include/mapping.h \
 include/jewel.h include/store.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h include/db.h include/db.h \
 include/kiotviet.h include/kvjson.h include/log.h include/kvtime.h \
 include/log.h
include/sync.h:
include/backoff.h:
include/config.h:
include/util.h:
include/http.h:
include/mapping.h:
include/jewel.h:
include/store.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
include/db.h:
include/db.h:
include/kiotviet.h:
include/kvjson.h:
include/log.h:
include/kvtime.h:
include/log.h:

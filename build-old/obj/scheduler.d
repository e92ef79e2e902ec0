build-old/obj/scheduler.o: src/scheduler.c include/scheduler.h \
 include/config.h include/util.h include/http.h include/backoff.h \
 include/db.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h include/log.h include/mapping.h \
 include/jewel.h include/notify.h include/store.h include/db.h \
 include/mapping.h include/sync.h include/backoff.h include/store.h
include/scheduler.h:
include/config.h:
include/util.h:
include/http.h:
include/backoff.h:
include/db.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
include/log.h:
include/mapping.h:
include/jewel.h:
include/notify.h:
include/store.h:
include/db.h:
include/mapping.h:
include/sync.h:
include/backoff.h:
include/store.h:

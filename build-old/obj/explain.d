build-old/obj/explain.o: src/explain.c include/explain.h include/config.h \
 include/util.h /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h include/db.h include/http.h \
 include/kiotviet.h include/backoff.h include/http.h include/kvjson.h \
 include/log.h include/kvjson.h include/log.h include/mapping.h \
 include/jewel.h include/store.h include/db.h include/mapping.h
include/explain.h:
include/config.h:
include/util.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
include/db.h:
include/http.h:
include/kiotviet.h:
include/backoff.h:
include/http.h:
include/kvjson.h:
include/log.h:
include/kvjson.h:
include/log.h:
include/mapping.h:
include/jewel.h:
include/store.h:
include/db.h:
include/mapping.h:

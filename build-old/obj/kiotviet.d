build-old/obj/kiotviet.o: src/kiotviet.c include/kiotviet.h \
 include/backoff.h include/http.h include/util.h include/kvjson.h \
 include/log.h include/kvtime.h
include/kiotviet.h:
include/backoff.h:
include/http.h:
include/util.h:
include/kvjson.h:
include/log.h:
include/kvtime.h:

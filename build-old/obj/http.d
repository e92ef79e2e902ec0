build-old/obj/http.o: src/http.c include/http.h include/util.h \
 include/log.h
include/http.h:
include/util.h:
include/log.h:

build-old/obj/backoff.o: src/backoff.c include/backoff.h include/util.h
include/backoff.h:
include/util.h:

build-old/obj/util.o: src/util.c include/util.h
include/util.h:

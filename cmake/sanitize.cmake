# Sanitizer builds (scripts/sanitize.sh configures and runs them). include()d from the top-level CMakeLists.txt
# before any target exists, so the flags reach the library, the app, the tests, the tools and the benches alike.
#   LONGCTX_SANITIZE=""         no sanitizer (default)
#   LONGCTX_SANITIZE=address    AddressSanitizer (+ LeakSanitizer) and UndefinedBehaviorSanitizer, with
#                               float-cast-overflow (a float out of an integer's range converted to it), which
#                               -fsanitize=undefined leaves out; a UB report aborts the program
#                               (-fno-sanitize-recover) instead of printing and going on
#   LONGCTX_SANITIZE=thread     ThreadSanitizer (the copy thread, offload, ring code: see scripts/sanitize.sh)
# Both compile at -O1 with debug info and frame pointers (readable stacks, usable speed); -O1 comes after the
# build type's -O3/-O2, so it wins. gcc is enough for both (libasan, libubsan and libtsan ship with it).
set(LONGCTX_SANITIZE "" CACHE STRING "Sanitizer build: \"\" (none), address (ASan+UBSan) or thread (TSan)")
set_property(CACHE LONGCTX_SANITIZE PROPERTY STRINGS "" address thread)

if(LONGCTX_SANITIZE STREQUAL "")
  return()
elseif(LONGCTX_SANITIZE STREQUAL "address")
  set(_lc_sanitize -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow)
elseif(LONGCTX_SANITIZE STREQUAL "thread")
  set(_lc_sanitize -fsanitize=thread)
else()
  message(FATAL_ERROR "LONGCTX_SANITIZE=${LONGCTX_SANITIZE}: expected \"\", address or thread")
endif()
if(LONGCTX_FUZZ)
  message(FATAL_ERROR "LONGCTX_SANITIZE=${LONGCTX_SANITIZE} and LONGCTX_FUZZ=ON: one or the other "
                      "(the fuzz build brings ASan and UBSan itself: scripts/fuzz.sh)")
endif()
if(LONGCTX_HAVE_CUDA)
  message(FATAL_ERROR "LONGCTX_SANITIZE=${LONGCTX_SANITIZE} is for CPU builds: configure with -DLONGCTX_CUDA=OFF")
endif()

# (C and C++ only: the CUDA backend is off in these builds, checked above)
add_compile_options(${_lc_sanitize} -O1 -g -fno-omit-frame-pointer)
add_link_options(${_lc_sanitize})
message(STATUS "longctx: sanitizer ${LONGCTX_SANITIZE} (${_lc_sanitize})")

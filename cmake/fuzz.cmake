# libFuzzer targets for every parser of a file a user hands us (tests/fuzz).
# Off by default; scripts/fuzz.sh configures build-fuzz/ with it on and runs
# them. With LONGCTX_FUZZ=ON everything compiled in the build (the library,
# the apps) gets -fsanitize=fuzzer-no-link,address,undefined, so this file is
# included before add_subdirectory(src); each tests/fuzz/fuzz_<name>.cpp
# becomes the executable fuzz_<name>, linked with -fsanitize=fuzzer. Needs
# clang (CXX=clang++) and no CUDA (LONGCTX_CUDA=OFF); the normal tests are
# better left off in such a build (LONGCTX_TESTS=OFF).
option(LONGCTX_FUZZ "Build the libFuzzer targets of tests/fuzz (clang; instruments the whole build)" OFF)

if(LONGCTX_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "LONGCTX_FUZZ=ON needs clang++ (configure with CXX=clang++ CC=clang), "
                        "got ${CMAKE_CXX_COMPILER_ID}")
  endif()
  if(LONGCTX_HAVE_CUDA)
    message(FATAL_ERROR "LONGCTX_FUZZ=ON needs LONGCTX_CUDA=OFF")
  endif()

  # The build type scripts/fuzz.sh uses: optimised enough to fuzz fast, asserts
  # on (nlohmann's among them), line tables for the sanitizers' stack traces.
  set(CMAKE_CXX_FLAGS_FUZZ "-O1 -gline-tables-only" CACHE STRING "C++ flags of the Fuzz build type")
  set(CMAKE_C_FLAGS_FUZZ "-O1 -gline-tables-only" CACHE STRING "C flags of the Fuzz build type")

  set(LONGCTX_FUZZ_SAN "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer")
  string(APPEND CMAKE_CXX_FLAGS " -fsanitize=fuzzer-no-link ${LONGCTX_FUZZ_SAN}")
  string(APPEND CMAKE_C_FLAGS " -fsanitize=fuzzer-no-link ${LONGCTX_FUZZ_SAN}")
  string(APPEND CMAKE_EXE_LINKER_FLAGS " ${LONGCTX_FUZZ_SAN}")
  string(APPEND CMAKE_SHARED_LINKER_FLAGS " ${LONGCTX_FUZZ_SAN}")

  file(GLOB LONGCTX_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/tests/fuzz/fuzz_*.cpp)
  add_custom_target(fuzz_all)
  foreach(src ${LONGCTX_FUZZ_SOURCES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    # longctx_lib is defined later, by add_subdirectory(src): names resolve at generate time.
    target_link_libraries(${name} PRIVATE longctx_lib)
    target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src
                                               ${CMAKE_CURRENT_SOURCE_DIR}/tests/fuzz)
    target_compile_options(${name} PRIVATE ${LONGCTX_CXX_FLAGS})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
    add_dependencies(fuzz_all ${name})
  endforeach()
  message(STATUS "longctx: fuzz targets enabled (build them with --target fuzz_all)")
endif()

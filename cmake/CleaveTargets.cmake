# Helpers that give every cleave target the same warnings and the shared LibTorch
# precompiled header (building <torch/script.h> once instead of per translation unit is what
# keeps a clean build affordable on two cores).

# Partial aggregate initialisation ({Codec::kInt8}) is idiomatic here; the rest of -Wextra stays.
set(CLEAVE_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
# -pthread on every target (and the PCH): gRPC and GoogleTest compile with it, and a PCH is
# only used by translation units built with the same _REENTRANT setting.
set(CLEAVE_COMPILE_OPTIONS ${CLEAVE_WARNINGS} -pthread)

# Sanitizer builds (scripts/sanitize.sh, docs/RELIABILITY.md), each in a build folder of its
# own: CLEAVE_SANITIZE=address (ASan + UBSan) or thread (TSan), for every target, libraries
# included. UBSan's vptr check is off: Debian's LibTorch does not export the typeinfo it needs.
set(CLEAVE_SANITIZE "" CACHE STRING "Build with sanitizers: address (ASan+UBSan) or thread")
if(CLEAVE_SANITIZE STREQUAL "address")
  set(CLEAVE_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize=vptr
                             -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
elseif(CLEAVE_SANITIZE STREQUAL "thread")
  set(CLEAVE_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
elseif(NOT CLEAVE_SANITIZE STREQUAL "")
  message(FATAL_ERROR "CLEAVE_SANITIZE must be address, thread or empty, not '${CLEAVE_SANITIZE}'")
endif()
if(CLEAVE_SANITIZER_FLAGS)
  add_compile_options(${CLEAVE_SANITIZER_FLAGS})
  add_link_options(${CLEAVE_SANITIZER_FLAGS})
endif()
# With clang, the ASan build also builds the in-tree libFuzzer targets (tests/fuzz/targets):
# every target gets libFuzzer's coverage instrumentation, which the ASan runtime provides for
# binaries that are not fuzzers.
set(CLEAVE_FUZZ_TARGETS OFF)
if(CLEAVE_SANITIZE STREQUAL "address" AND CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  set(CLEAVE_FUZZ_TARGETS ON)
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

if(CCACHE_PROGRAM)
  # ccache can cache PCH users only when told to ignore the PCH's timestamps.
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      ${CCACHE_PROGRAM})
endif()

add_library(cleave_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/pch.cc)
target_link_libraries(cleave_pch PRIVATE torch Threads::Threads)
target_compile_options(cleave_pch PRIVATE ${CLEAVE_COMPILE_OPTIONS})
target_precompile_headers(cleave_pch PRIVATE <torch/script.h>)

# cleave_target_defaults(TARGET [PCH]): warnings for our code; PCH when the target uses LibTorch.
function(cleave_target_defaults target)
  cmake_parse_arguments(ARG "PCH" "" "" ${ARGN})
  target_compile_options(${target} PRIVATE ${CLEAVE_COMPILE_OPTIONS})
  if(ARG_PCH)
    target_precompile_headers(${target} REUSE_FROM cleave_pch)
  endif()
endfunction()

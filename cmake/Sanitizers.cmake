# Sanitizer and fuzzing builds (see CMakePresets.json, tools/test-sanitizers, tests/scripts/fuzz.sh).
#
# Included after add_subdirectory(agent): the flags apply to every target defined from here
# on, so the agent and its agent_protocol library stay uninstrumented (the agent is linked
# -static, which the sanitizer runtimes do not support). tests/fuzz compiles
# agent/protocol.cpp into its fuzzer itself, so that code is still checked.
set(WARMPOOL_SANITIZE "" CACHE STRING
  "Sanitizers for everything but the static agent: address,undefined or thread (empty: none)")
option(WARMPOOL_FUZZ "Build the libFuzzer targets in tests/fuzz (needs clang)" OFF)

if(WARMPOOL_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "WARMPOOL_FUZZ needs clang (configure with CXX=clang++)")
  endif()
  if(NOT WARMPOOL_SANITIZE)
    set(WARMPOOL_SANITIZE "address,undefined")
  endif()
  # Coverage feedback for the library code the fuzzers call; the fuzzers link -fsanitize=fuzzer.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

if(WARMPOOL_SANITIZE)
  if(NOT WARMPOOL_SANITIZE MATCHES "^(address|undefined|address,undefined|undefined,address|thread)$")
    message(FATAL_ERROR "WARMPOOL_SANITIZE must be address,undefined or thread (got ${WARMPOOL_SANITIZE})")
  endif()
  # vptr: libcaf_core is not instrumented, so its polymorphic types would look foreign.
  add_compile_options(-fsanitize=${WARMPOOL_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${WARMPOOL_SANITIZE})
  if(WARMPOOL_SANITIZE MATCHES "undefined")
    add_compile_options(-fno-sanitize=vptr)
  endif()
  message(STATUS "warmpool: sanitizers ${WARMPOOL_SANITIZE} (the agent stays uninstrumented)")
endif()

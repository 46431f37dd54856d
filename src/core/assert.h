// core/assert.h
//
// Three tiers, as Envoy: SLUICE_ASSERT (debug only, cheap invariants), SLUICE_CHECK
// (always on, aborts with a message). Never assert on input a peer or a config controls.
#pragma once

#include <cstdio>
#include <cstdlib>

#define SLUICE_CHECK(cond, msg)                                                              \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: check failed: %s: %s\n", __FILE__, __LINE__, #cond, msg); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

#ifdef NDEBUG
#define SLUICE_ASSERT(cond, msg) \
  do {                           \
  } while (0)
#else
#define SLUICE_ASSERT(cond, msg) SLUICE_CHECK(cond, msg)
#endif

// core/malloc_tuning.h
//
// glibc's per-thread cache (tcache) keeps 7 freed blocks per size class. A proxy holding
// hundreds of streams at once frees far more blocks of one size than that between two
// allocations, so most frees and mallocs fall through to the arena's bins, with their
// locking and consolidation: measured, a third of the queue-proxy's CPU at 100 HTTP/2
// streams per connection, and with a cache of 1,024 its CPU per stream fell from 16.3 to
// 12.1 µs (medians of 5 alternating h2load runs, same binary, SLUICE_MALLOC_TUNING=off
// against on). glibc reads the size only from GLIBC_TUNABLES at start-up, so the process
// re-executes itself once with it set, then removes it from its own environment (the
// apps `sluice run` starts never see it).
//
// Not done when the user set GLIBC_TUNABLES (theirs wins), when SLUICE_MALLOC_TUNING=off,
// or when /proc/self/exe cannot be executed (the process then just runs untuned).
//
// Threading: call first thing in main(), before any thread exists.
#pragma once

namespace sluice::core {

void tune_malloc(char** argv);

}  // namespace sluice::core

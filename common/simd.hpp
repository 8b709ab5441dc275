#pragma once
// Run-time SIMD dispatch without -march=native: a function marked TQB_MULTIVERSION is compiled for
// AVX-512 (x86-64-v4), AVX2+FMA (x86-64-v3) and baseline x86-64, and the loader picks the best one the
// CPU supports (GCC/Clang target_clones through an ifunc). Inline helpers it calls are compiled into
// each clone. Loops in such functions must not depend on the instruction set for their results
// (no -ffast-math reassociation), so every clone computes bit-identical output.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TQB_NO_MULTIVERSION)
#define TQB_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TQB_MULTIVERSION
#endif

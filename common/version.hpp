#pragma once
// Build identity, generated at build time by cmake/version_info.cmake.
namespace tqb {
const char* version();     // project version, e.g. "0.1.0"
const char* git_commit();  // full commit hash of the source tree, "-dirty" appended for local edits
const char* compiler();    // compiler id and version
const char* build_type();  // CMake build type (Release by default)
}  // namespace tqb

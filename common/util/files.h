// File helpers: whole-file reads and crash-safe writes.
#ifndef CELLFLUX_COMMON_UTIL_FILES_H_
#define CELLFLUX_COMMON_UTIL_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellflux {

// Reads the whole file. NOT_FOUND if it does not exist; the message names the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to `path` atomically: a temp file in the same directory, fsync, rename,
// fsync of the directory. A crash leaves either the old file or the new one, never a mix.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view contents);

// fsync()s a directory so that renames inside it are durable.
absl::Status FsyncDirectory(const std::string& dir);

// Creates the directory and its parents (like mkdir -p).
absl::Status MakeDirs(const std::string& dir);

}  // namespace cellflux

#endif  // CELLFLUX_COMMON_UTIL_FILES_H_

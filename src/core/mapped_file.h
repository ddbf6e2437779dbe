// The bytes of a whole file in memory, read-only; weights are used in place from them. By default a
// memory mapping of the file. FileAccess::Copy reads the file into anonymous memory advised for
// transparent huge pages instead: a decode step streams every weight, and with 4 KiB file pages the
// CPU's TLB misses cost 5-20 % of decode speed on the development VM (same bytes, same format).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ferrum/status.h"

namespace ferrum {

enum class FileAccess { Map, Copy };

class MappedFile {
 public:
  static Result<std::shared_ptr<MappedFile>> open(const std::string& path,
                                                  FileAccess access = FileAccess::Map);
  // Wraps caller-owned bytes (tests, fuzzers); nothing is unmapped on destruction.
  static std::shared_ptr<MappedFile> from_memory(const void* data, size_t size, std::string name);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* region_ = nullptr;  // what the destructor unmaps (the file mapping, or the copy's allocation)
  size_t region_size_ = 0;
  std::string path_;
};

}  // namespace ferrum

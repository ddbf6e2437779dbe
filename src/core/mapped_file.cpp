#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace ferrum {

namespace {

// Reads the whole file into `dst` (pread, so short reads and EINTR are retried).
Status read_all(int fd, uint8_t* dst, size_t n, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    const ssize_t got =
        pread(fd, dst + done, std::min<size_t>(n - done, size_t{1} << 28), static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0)
      return Error(path + ": read failed at byte " + std::to_string(done) + ": " +
                   (got == 0 ? std::string("unexpected end of file") : std::strerror(errno)));
    done += static_cast<size_t>(got);
  }
  return {};
}

}  // namespace

Result<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path, FileAccess access) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error(path + ": not a regular file");
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0 && access == FileAccess::Map) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return Error(path + ": mmap failed: " + std::strerror(e));
    }
    f->data_ = static_cast<const uint8_t*>(p);
    f->region_ = p;
    f->region_size_ = f->size_;
  } else if (f->size_ > 0) {
    // A 2 MiB-aligned start, so every whole 2 MiB of the copy can be one huge page.
    constexpr size_t kHuge = size_t{2} << 20;
    const size_t span = (f->size_ + kHuge - 1) / kHuge * kHuge + kHuge;
    void* p = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return Error(path + ": cannot allocate " + std::to_string(f->size_) +
                   " bytes for the weights: " + std::strerror(e));
    }
    f->region_ = p;
    f->region_size_ = span;
    uint8_t* data = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1));
    madvise(data, span - kHuge, MADV_HUGEPAGE);  // advice only: without THP the copy still works
    if (Status st = read_all(fd, data, f->size_, path); !st.ok()) {
      ::close(fd);
      return st;
    }
    mprotect(p, span, PROT_READ);
    f->data_ = data;
  }
  ::close(fd);
  return f;
}

std::shared_ptr<MappedFile> MappedFile::from_memory(const void* data, size_t size, std::string name) {
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->data_ = static_cast<const uint8_t*>(data);
  f->size_ = size;
  f->path_ = std::move(name);
  return f;
}

MappedFile::~MappedFile() {
  if (region_) munmap(region_, region_size_);
}

}  // namespace ferrum

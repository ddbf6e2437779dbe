// Copies of host test data in a backend's own memory (plain host memory for the host backends,
// device memory for a GPU), made through its alloc / copy_to_device / upload_weight, read back with
// copy_to_host, and released with its free.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "backend/backend.h"

namespace ferrum::testing {

class Mirror {
 public:
  explicit Mirror(Backend& be) : be_(be) {}
  ~Mirror() {
    for (void* p : owned_) be_.free(p);
  }
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  void* put(const void* src, size_t bytes) {
    auto mem = be_.alloc(bytes);
    EXPECT_TRUE(mem.ok()) << mem.status().message();
    if (!mem.ok()) return nullptr;
    owned_.push_back(mem.value());
    be_.copy_to_device(mem.value(), src, bytes);
    return mem.value();
  }
  Tensor f32(const std::vector<float>& v, int64_t rows, int64_t cols) {
    return Tensor::f32(static_cast<float*>(put(v.data(), v.size() * sizeof(float))), rows, cols);
  }
  template <class T>
  const T* array(const std::vector<T>& v) {
    return static_cast<const T*>(put(v.data(), v.size() * sizeof(T)));
  }
  Tensor weight(const Tensor& host_view) {
    auto t = be_.upload_weight(host_view);
    EXPECT_TRUE(t.ok()) << t.status().message();
    if (!t.ok()) return {};
    if (t.value().data != host_view.data) owned_.push_back(t.value().data);
    return t.value();
  }
  std::vector<float> host(const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.rows() * t.cols()));
    be_.copy_to_host(v.data(), t.data, v.size() * sizeof(float));
    return v;
  }

 private:
  Backend& be_;
  std::vector<void*> owned_;
};

}  // namespace ferrum::testing

// Copies of host test data in a backend's own memory (plain host memory for the host backends,
// device memory for a GPU), made through its alloc / copy_to_device / upload_weight, read back with
// copy_to_host, and released with its free.
#pragma once

#include <gtest/gtest.h>

#include <type_traits>
#include <vector>

#include "backend/backend.h"

namespace ferrum::testing {

// Host arrays of one MoE routing and the MoeRouting view of them (not copyable: the view points into
// the arrays).
struct HostRouting {
  std::vector<int32_t> ids, offsets, order, rank;
  std::vector<float> weights;
  MoeRouting r;
  HostRouting(int64_t n, int64_t n_experts, int64_t k)
      : ids(size_t(n * k)),
        offsets(size_t(n_experts + 1)),
        order(size_t(n * k)),
        rank(size_t(n * k)),
        weights(size_t(n * k)) {
    r = {n, n_experts, k, ids.data(), weights.data(), offsets.data(), order.data(), rank.data()};
  }
  HostRouting(const HostRouting&) = delete;
  HostRouting& operator=(const HostRouting&) = delete;
};

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
  // A copy of h's arrays (writable: moe_route fills them).
  MoeRouting routing(const HostRouting& h) {
    const auto put_v = [&](const auto& v) {
      return const_cast<std::remove_cvref_t<decltype(v[0])>*>(array(v));
    };
    return {h.r.n_tokens,     h.r.n_experts,    h.r.k,          put_v(h.ids),
            put_v(h.weights), put_v(h.offsets), put_v(h.order), put_v(h.rank)};
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

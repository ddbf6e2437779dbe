// Shared helpers for tests: where the shared test data lives, and array comparisons.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace ferrum::testing {

// $FERRUM_SHARED, else the path configured at build time (../shared beside the source tree).
inline std::string shared_dir() {
  if (const char* e = std::getenv("FERRUM_SHARED"); e && *e) return e;
  return FERRUM_SHARED_DEFAULT;
}
inline std::string shared_path(const std::string& rel) { return shared_dir() + "/" + rel; }
inline bool shared_exists(const std::string& rel) { return std::filesystem::exists(shared_path(rel)); }

#define FERRUM_REQUIRE_SHARED(rel)                                                  \
  do {                                                                              \
    if (!::ferrum::testing::shared_exists(rel)) GTEST_SKIP() << "missing " << (rel); \
  } while (0)

inline float max_abs(const float* a, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i]));
  return m;
}
inline float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}
inline double rms_diff(const float* a, const float* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(a[i] - b[i]) * double(a[i] - b[i]);
  return std::sqrt(s / double(n));
}

}  // namespace ferrum::testing

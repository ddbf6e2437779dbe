// Loading reference tensors of the shared fixtures.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/half.h"
#include "ferrum/config.h"
#include "formats/safetensors.h"
#include "test_util.h"

namespace ferrum::testing {

// The runtime options the model tests run with: the FERRUM_* environment (backend $FERRUM_BACKEND,
// default cpu), so one suite covers every backend.
inline RuntimeConfig test_config() {
  auto c = RuntimeConfig::from_env();
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? c.value() : RuntimeConfig{};
}
inline std::string test_backend() { return test_config().backend; }

struct HfCase {
  std::vector<int32_t> all_ids, prompt_ids, greedy_ids;
  std::vector<float> logits;  // [all_ids.size(), vocab]
};

inline std::vector<int32_t> ints_of(const SafetensorsTensor& t) {
  std::vector<int32_t> v;
  const size_t n = t.nbytes / (t.type == DType::I64 ? 8 : 4);
  for (size_t i = 0; i < n; ++i)
    v.push_back(t.type == DType::I64 ? static_cast<int32_t>(reinterpret_cast<const int64_t*>(t.data)[i])
                                     : reinterpret_cast<const int32_t*>(t.data)[i]);
  return v;
}

inline std::vector<float> floats_of(const SafetensorsTensor& t) {
  const float* p = reinterpret_cast<const float*>(t.data);
  return std::vector<float>(p, p + t.nbytes / 4);
}

// Every caseN in <dir>/expected.safetensors.
inline std::vector<HfCase> load_hf_cases(const std::string& dir) {
  std::vector<HfCase> cases;
  auto set = SafetensorsSet::open(dir + "/expected.safetensors");
  EXPECT_TRUE(set.ok()) << set.status().message();
  if (!set.ok()) return cases;
  for (int i = 0;; ++i) {
    const std::string p = "case" + std::to_string(i) + ".";
    const SafetensorsTensor* all = set.value()->find(p + "all_ids");
    if (!all) break;
    HfCase c;
    c.all_ids = ints_of(*all);
    c.prompt_ids = ints_of(*set.value()->find(p + "prompt_ids"));
    c.greedy_ids = ints_of(*set.value()->find(p + "greedy_ids"));
    c.logits = floats_of(*set.value()->find(p + "logits"));
    cases.push_back(std::move(c));
  }
  return cases;
}

inline std::vector<int32_t> read_ids_txt(const std::string& path) {
  std::vector<int32_t> ids;
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return ids;
  int v;
  while (std::fscanf(f, "%d", &v) == 1) ids.push_back(v);
  std::fclose(f);
  return ids;
}

}  // namespace ferrum::testing

// WeightStore's upload progress (the loading bar of GPU backends, which upload matrices instead of paging
// in the mapping): each matrix adds its bytes, and the end reports the file's total (tensor_bytes, which
// Runtime::load also compares with the device's free memory).
#include "models/weights.h"

#include <gtest/gtest.h>

#include "backend/backend.h"
#include "test_util.h"

namespace ferrum::testing {
namespace {

TEST(WeightStore, ReportsUploadedBytes) {
  const std::string rel = "models/stories260K.gguf";
  FERRUM_REQUIRE_SHARED(rel);
  auto ws = WeightStore::open(shared_path(rel));
  ASSERT_TRUE(ws.ok()) << ws.status().message();
  auto be = create_backend("cpu", 1);
  ASSERT_TRUE(be.ok());
  WeightStore& w = *ws.value();
  w.bind(be.value().get(), nullptr);
  size_t total = 0;
  const WeightStore::TensorSummary* mat = nullptr;
  const std::vector<WeightStore::TensorSummary> tensors = w.summary();
  for (const auto& t : tensors) total += t.bytes;
  EXPECT_EQ(w.tensor_bytes(), total);
  for (const auto& t : tensors)
    if (!mat && t.dims.size() == 2 && t.bytes >= total / 100) mat = &t;
  ASSERT_NE(mat, nullptr);
  std::vector<std::pair<size_t, size_t>> calls;
  w.report_uploads([&](size_t done, size_t of) { calls.emplace_back(done, of); });
  ASSERT_TRUE(w.matrix(mat->name, mat->dims[1], mat->dims[0]).ok());
  ASSERT_EQ(calls.size(), 1u) << mat->name << " is at least 1 % of the file";
  EXPECT_EQ(calls[0], std::make_pair(mat->bytes, total));
  w.finish_uploads();
  EXPECT_EQ(calls.back(), std::make_pair(total, total));
  const size_t n = calls.size();
  ASSERT_TRUE(w.matrix(mat->name, mat->dims[1], mat->dims[0]).ok());
  EXPECT_EQ(calls.size(), n) << "no reports after finish_uploads";
}

}  // namespace
}  // namespace ferrum::testing

// The BERT encoder against Hugging Face transformers (fixtures/hf/bert): final hidden states and
// the mean, L2-normalized mean and CLS poolings, from the HF folder (cpu and reference backends)
// and from its F32 GGUF conversion; the pooling a sentence-transformers folder asks for; a ragged
// batch equals one input at a time; bad inputs are errors that leave the runtime usable.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ferrum/runtime.h"
#include "fixture_util.h"
#include "models/gguf_export.h"

namespace ferrum::testing {
namespace {

constexpr const char* kBert = "fixtures/hf/bert";
using Opt = Runtime::EmbedOptions;

struct BertCase {
  std::vector<int32_t> ids;
  std::vector<float> last_hidden, mean, mean_l2, cls;
};

std::vector<BertCase> load_cases() {
  std::vector<BertCase> cases;
  auto set = SafetensorsSet::open(shared_path(kBert) + "/expected.safetensors");
  EXPECT_TRUE(set.ok()) << set.status().message();
  if (!set.ok()) return cases;
  for (int i = 0;; ++i) {
    const std::string p = "case" + std::to_string(i) + ".";
    const SafetensorsTensor* ids = set.value()->find(p + "input_ids");
    if (!ids) break;
    cases.push_back({ints_of(*ids), floats_of(*set.value()->find(p + "last_hidden")),
                     floats_of(*set.value()->find(p + "mean_pooled")),
                     floats_of(*set.value()->find(p + "mean_pooled_l2")),
                     floats_of(*set.value()->find(p + "cls"))});
  }
  return cases;
}

std::unique_ptr<Runtime> load(const std::string& path, const std::string& backend = "cpu",
                              int64_t max_tokens = 64, int64_t kv_capacity = 0) {
  RuntimeConfig cfg;
  cfg.backend = backend;
  cfg.max_batch_tokens = max_tokens;
  cfg.kv_capacity = kv_capacity;
  auto r = Runtime::load(path, cfg);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : nullptr;
}

// max |got - want| <= 1e-4 * max |want| (the issue's bound).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  EXPECT_LE(max_abs_diff(got.data(), want.data(), got.size()), 1e-4f * max_abs(want.data(), want.size()))
      << what;
}

std::vector<float> embed(Runtime& r, const std::vector<int32_t>& ids, Pooling p, bool normalize) {
  auto v = r.embed(ids, Opt{p, normalize});
  EXPECT_TRUE(v.ok()) << v.status().message();
  return v.ok() ? std::move(v).value() : std::vector<float>{};
}

void expect_matches_transformers(Runtime& r) {
  auto cases = load_cases();
  ASSERT_EQ(cases.size(), 3u);
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    SCOPED_TRACE("case" + std::to_string(ci));
    const BertCase& c = cases[ci];
    expect_close(embed(r, c.ids, Pooling::None, false), c.last_hidden, "last_hidden");
    expect_close(embed(r, c.ids, Pooling::Mean, false), c.mean, "mean_pooled");
    expect_close(embed(r, c.ids, Pooling::Mean, true), c.mean_l2, "mean_pooled_l2");
    expect_close(embed(r, c.ids, Pooling::Cls, false), c.cls, "cls");
  }
  EXPECT_EQ(r.kv_free_blocks(), r.kv_total_blocks());
}

// A temporary folder whose entries link to the fixture's files, plus files the test writes.
class TempModelDir {
 public:
  TempModelDir() {
    dir_ = std::filesystem::temp_directory_path() / ("ferrum-bert-test-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    for (const char* f : {"config.json", "model.safetensors"})
      std::filesystem::create_symlink(shared_path(std::string(kBert) + "/" + f), dir_ / f);
  }
  ~TempModelDir() { std::filesystem::remove_all(dir_); }
  void write(const std::string& rel, const std::string& text) {
    std::filesystem::create_directories((dir_ / rel).parent_path());
    std::ofstream(dir_ / rel) << text;
  }
  std::string path(const std::string& rel = "") const { return (dir_ / rel).string(); }

 private:
  std::filesystem::path dir_;
};

std::string modules_json(bool normalize) {
  std::string s = R"([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
  {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})";
  if (normalize)
    s +=
        R"(, {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})";
  return s + "]";
}

std::string pooling_json(bool cls, bool mean) {
  return std::string(R"({"word_embedding_dimension": 128, "pooling_mode_cls_token": )") +
         (cls ? "true" : "false") + R"(, "pooling_mode_mean_tokens": )" + (mean ? "true" : "false") +
         R"(, "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false})";
}

class BertBackends : public ::testing::TestWithParam<std::string> {};

TEST_P(BertBackends, HiddenStatesAndPoolingsMatchTransformers) {
  FERRUM_REQUIRE_SHARED(kBert);
  auto r = load(shared_path(kBert), GetParam());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->default_embed_options().pooling, Pooling::Mean);  // plain BertModel folder
  EXPECT_FALSE(r->default_embed_options().normalize);
  expect_matches_transformers(*r);
}

INSTANTIATE_TEST_SUITE_P(Bert, BertBackends, ::testing::Values("cpu", "reference"));

TEST(Bert, F32GgufConversionMatchesTransformers) {
  FERRUM_REQUIRE_SHARED(kBert);
  TempModelDir tmp;
  // A sentence-transformers folder asking for CLS pooling: the GGUF carries it as bert.pooling_type.
  tmp.write("modules.json", modules_json(false));
  tmp.write("1_Pooling/config.json", pooling_json(true, false));
  const std::string gguf = tmp.path("bert-f32.gguf");
  ASSERT_TRUE(quantize_model(tmp.path(), gguf, "F32", nullptr).ok());
  auto r = load(gguf);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->default_embed_options().pooling, Pooling::Cls);
  expect_matches_transformers(*r);
}

TEST(Bert, SentenceTransformersModulesChooseThePooling) {
  FERRUM_REQUIRE_SHARED(kBert);
  auto cases = load_cases();
  ASSERT_FALSE(cases.empty());
  const BertCase& c = cases[1];
  {
    TempModelDir tmp;
    tmp.write("modules.json", modules_json(true));
    tmp.write("1_Pooling/config.json", pooling_json(false, true));
    auto r = load(tmp.path());
    ASSERT_TRUE(r);
    auto v = r->embed(c.ids, r->default_embed_options());
    ASSERT_TRUE(v.ok()) << v.status().message();
    expect_close(*v, c.mean_l2, "mean + Normalize");
  }
  // CLS, in the legacy boolean spelling and in sentence-transformers 6's "pooling_mode".
  for (const std::string& pooling :
       {pooling_json(true, false), std::string(R"({"embedding_dimension": 128, "pooling_mode": "cls"})")}) {
    TempModelDir tmp;
    tmp.write("modules.json", modules_json(false));
    tmp.write("1_Pooling/config.json", pooling);
    auto r = load(tmp.path());
    ASSERT_TRUE(r);
    auto v = r->embed(c.ids, r->default_embed_options());
    ASSERT_TRUE(v.ok()) << v.status().message();
    expect_close(*v, c.cls, "cls");
  }
  for (const std::string& pooling :
       {pooling_json(true, true), pooling_json(false, false),
        std::string(R"({"pooling_mode": ["mean", "max"]})"), std::string(R"({"pooling_mode": "max"})")}) {
    TempModelDir tmp;
    tmp.write("modules.json", modules_json(false));
    tmp.write("1_Pooling/config.json", pooling);
    auto r = Runtime::load(tmp.path(), RuntimeConfig{});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("1_Pooling/config.json"), std::string::npos) << r.status().message();
  }
  {
    TempModelDir tmp;
    tmp.write("modules.json", R"([{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
      {"idx": 1, "path": "2_Dense", "type": "sentence_transformers.models.Dense"}])");
    auto r = Runtime::load(tmp.path(), RuntimeConfig{});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("sentence_transformers.models.Dense"), std::string::npos)
        << r.status().message();
  }
}

// Unequal lengths share steps (each input attends only to its own keys through its block
// table); with 64 tokens per step the five inputs below take three steps.
TEST(Bert, RaggedBatchEqualsOneByOne) {
  FERRUM_REQUIRE_SHARED(kBert);
  auto cases = load_cases();
  ASSERT_EQ(cases.size(), 3u);
  auto r = load(shared_path(kBert));
  ASSERT_TRUE(r);
  const std::vector<size_t> order = {2, 1, 0, 2, 1};
  std::vector<std::vector<int32_t>> inputs;
  for (size_t i : order) inputs.push_back(cases[i].ids);
  for (Pooling p : {Pooling::Mean, Pooling::Cls, Pooling::None}) {
    auto batch = r->embed_batch(inputs, Opt{p, false});
    ASSERT_TRUE(batch.ok()) << batch.status().message();
    ASSERT_EQ(batch->size(), inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      SCOPED_TRACE("input " + std::to_string(i));
      const std::vector<float> alone = embed(*r, inputs[i], p, false);
      ASSERT_EQ((*batch)[i].size(), alone.size());
      EXPECT_LE(max_abs_diff((*batch)[i].data(), alone.data(), alone.size()),
                1e-6f * max_abs(alone.data(), alone.size()));
      const BertCase& c = cases[order[i]];
      expect_close((*batch)[i],
                   p == Pooling::Mean  ? c.mean
                   : p == Pooling::Cls ? c.cls
                                       : c.last_hidden,
                   "vs HF");
    }
  }
  EXPECT_EQ(r->kv_free_blocks(), r->kv_total_blocks());
}

TEST(Bert, BadInputsAreErrorsAndTheRuntimeStaysUsable) {
  FERRUM_REQUIRE_SHARED(kBert);
  auto cases = load_cases();
  ASSERT_FALSE(cases.empty());
  // Room for 600 tokens per step and per sequence, so max_position_embeddings (512) is the limit.
  auto r = load(shared_path(kBert), "cpu", 600, 600);
  ASSERT_TRUE(r);
  const int64_t V = r->config().vocab_size;
  auto expect_error = [&](const std::vector<std::vector<int32_t>>& inputs, const std::string& words) {
    auto v = r->embed_batch(inputs, Opt{});
    ASSERT_FALSE(v.ok());
    EXPECT_NE(v.status().message().find(words), std::string::npos) << v.status().message();
  };
  expect_error({cases[1].ids, {1, static_cast<int32_t>(V), 2}},
               "input 1: token id 1000 is outside the vocabulary");
  expect_error({{1, -1}}, "token id -1");
  expect_error({cases[0].ids, {}}, "input 1: no tokens");
  expect_error({}, "no inputs");
  expect_error({std::vector<int32_t>(513, 5)}, "513 tokens exceed the model's max_position_embeddings (512)");
  // The step path (prefill) guards the position table too.
  auto lv = r->prefill(0, std::vector<int32_t>(513, 5));
  ASSERT_FALSE(lv.ok());
  EXPECT_NE(lv.status().message().find("max_position_embeddings"), std::string::npos)
      << lv.status().message();
  r->reset();
  // 512 tokens is the longest input; the runtime still gives correct vectors afterwards.
  EXPECT_TRUE(r->embed(std::vector<int32_t>(512, 5), Opt{}).ok());
  expect_close(embed(*r, cases[2].ids, Pooling::Mean, false), cases[2].mean, "after errors");
  EXPECT_EQ(r->kv_free_blocks(), r->kv_total_blocks());

  // An input longer than a step cannot be split (attention is bidirectional).
  auto small = load(shared_path(kBert), "cpu", 16);
  ASSERT_TRUE(small);
  auto v = small->embed(cases[2].ids, Opt{});
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("max_batch_tokens"), std::string::npos) << v.status().message();

  // Decoders have no embeddings here.
  auto dec = load(shared_path("fixtures/hf/qwen3"));
  ASSERT_TRUE(dec);
  auto d = dec->embed(std::vector<int32_t>{1, 2}, Opt{});
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("decoder"), std::string::npos) << d.status().message();
}

}  // namespace
}  // namespace ferrum::testing

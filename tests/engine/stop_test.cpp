// StopChecker: stop strings split across chunks every possible way, false starts, overlapping stop
// strings, several EOS ids, and the token / context limits.
#include "engine/stop.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ferrum {
namespace {

constexpr int32_t kEos = 2;
constexpr int32_t kText = 100;  // any non-EOS id

StopChecker make(std::vector<std::string> stops, std::vector<int32_t> eos = {kEos}, int32_t max_tokens = 0) {
  StopConfig config;
  config.eos_ids = std::move(eos);
  config.stop_strings = std::move(stops);
  config.max_tokens = max_tokens;
  auto r = StopChecker::create(std::move(config));
  EXPECT_TRUE(r.ok()) << r.status().message();
  return std::move(r).value();
}

// Feeds chunks; returns what each call emitted, and whether/when it stopped.
struct Fed {
  std::vector<std::string> emits;
  int stopped_at = -1;
  FinishReason reason = FinishReason::None;
  std::string text() const {
    std::string t;
    for (const auto& e : emits) t += e;
    return t;
  }
};

Fed feed(StopChecker& s, const std::vector<std::string>& chunks) {
  Fed run;
  for (size_t i = 0; i < chunks.size(); ++i) {
    auto r = s.on_token(kText, chunks[i]);
    run.emits.push_back(r.emit);
    if (r.stopped && run.stopped_at < 0) {
      run.stopped_at = static_cast<int>(i);
      run.reason = r.reason;
    }
  }
  return run;
}

// All 2^(n-1) ways to cut `text` into non-empty chunks.
std::vector<std::vector<std::string>> all_splits(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  const size_t cuts = text.size() - 1;
  for (uint32_t mask = 0; mask < (1u << cuts); ++mask) {
    std::vector<std::string> chunks(1);
    for (size_t i = 0; i < text.size(); ++i) {
      chunks.back() += text[i];
      if (i < cuts && (mask >> i) & 1) chunks.emplace_back();
    }
    out.push_back(chunks);
  }
  return out;
}

TEST(StopChecker, StopStringSplitEveryWay) {
  const std::string text = "abSTOPcd";
  for (const auto& chunks : all_splits(text)) {
    auto s = make({"STOP"});
    const Fed run = feed(s, chunks);
    std::string joined;
    for (const auto& c : chunks) joined += c + "|";
    EXPECT_EQ(run.text(), "ab") << joined;
    EXPECT_EQ(run.reason, FinishReason::Stop) << joined;
    // It stops on the chunk that holds the 'P'.
    size_t seen = 0;
    int p_chunk = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      seen += chunks[i].size();
      if (seen > text.find('P')) {
        p_chunk = static_cast<int>(i);
        break;
      }
    }
    EXPECT_EQ(run.stopped_at, p_chunk) << joined;
    EXPECT_EQ(s.flush(), "");
  }
}

TEST(StopChecker, TextWithoutStopSplitEveryWayComesOutWhole) {
  // False starts of "STOP" and "STAR" everywhere; the checker holds at most a stop string's prefix.
  const std::string text = "aSTOxSTAxSTOP";
  for (const auto& chunks : all_splits(text)) {
    auto s = make({"STOP!", "STAR"});
    const Fed run = feed(s, chunks);
    EXPECT_EQ(run.stopped_at, -1);
    EXPECT_EQ(run.text(), "aSTOxSTAx");  // "STOP" may still become "STOP!"
    EXPECT_EQ(run.text() + s.flush(), text);
  }
}

TEST(StopChecker, HoldsBackOnlyWhatCouldStartAStop) {
  auto s = make({"STOP"});
  Fed run = feed(s, {"ST", "OP"});
  EXPECT_EQ(run.emits, (std::vector<std::string>{"", ""}));
  EXPECT_EQ(run.stopped_at, 1);

  s = make({"STOP"});
  run = feed(s, {"S", "T", "O", "P"});
  EXPECT_EQ(run.emits, (std::vector<std::string>{"", "", "", ""}));
  EXPECT_EQ(run.stopped_at, 3);

  s = make({"STOP"});
  run = feed(s, {"xxS", "TOPyy"});
  EXPECT_EQ(run.emits, (std::vector<std::string>{"xx", ""}));
  EXPECT_EQ(run.stopped_at, 1);

  s = make({"STOP"});
  run = feed(s, {"STO", "x", "yS"});  // false start released whole, the new "S" held
  EXPECT_EQ(run.emits, (std::vector<std::string>{"", "STOx", "y"}));
  EXPECT_EQ(run.stopped_at, -1);
  EXPECT_EQ(s.flush(), "S");
  EXPECT_EQ(s.flush(), "");
}

TEST(StopChecker, OverlappingStopStrings) {
  auto s = make({"STOP", "STAR"});
  Fed run = feed(s, {"ST", "A", "x"});
  EXPECT_EQ(run.emits, (std::vector<std::string>{"", "", "STAx"}));
  s = make({"STOP", "STAR"});
  run = feed(s, {"ST", "AR"});
  EXPECT_EQ(run.stopped_at, 1);

  // The earliest-starting stop string wins, even when a shorter one ends first.
  s = make({"bar", "foo bar"});
  run = feed(s, {"x foo ba", "r"});
  EXPECT_EQ(run.text(), "x ");

  // The longest partial match is held: "ab" could start "abc", though only "b" could start "bcd".
  s = make({"abc", "bcd"});
  run = feed(s, {"xab", "d"});
  EXPECT_EQ(run.emits, (std::vector<std::string>{"x", "abd"}));

  // A stop string that overlaps itself: "aab" inside "aaab".
  s = make({"aab"});
  run = feed(s, {"aa", "ab"});
  EXPECT_EQ(run.emits, (std::vector<std::string>{"", "a"}));
  EXPECT_EQ(run.stopped_at, 1);
}

TEST(StopChecker, MultibyteStopString) {
  auto s = make({"é!"});
  const Fed run = feed(s, {"caf", "é", "!"});
  EXPECT_EQ(run.emits, (std::vector<std::string>{"caf", "", ""}));
  EXPECT_EQ(run.stopped_at, 2);
}

TEST(StopChecker, AnyEosIdStopsAndReleasesHeldText) {
  for (const int32_t eos : {kEos, 7}) {
    auto s = make({"STOP"}, {kEos, 7});
    EXPECT_EQ(s.on_token(kText, "hi ST").emit, "hi ");
    const auto r = s.on_token(eos, "</s>");
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.reason, FinishReason::Stop);
    EXPECT_EQ(r.emit, "ST");  // the held text, not the EOS piece
    const auto after = s.on_token(kText, "more");
    EXPECT_TRUE(after.stopped);
    EXPECT_EQ(after.emit, "");
  }
}

TEST(StopChecker, MaxTokensGivesLength) {
  auto s = make({"STOP"}, {kEos}, 3);
  EXPECT_FALSE(s.on_token(kText, "a").stopped);
  EXPECT_FALSE(s.on_token(kText, "b").stopped);
  const auto r = s.on_token(kText, "S");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.reason, FinishReason::Length);
  EXPECT_EQ(r.emit, "S");
  EXPECT_EQ(finish_reason_name(r.reason), "length");

  // A stop string completed by the last allowed token is a Stop.
  s = make({"STOP"}, {kEos}, 2);
  EXPECT_FALSE(s.on_token(kText, "ST").stopped);
  EXPECT_EQ(s.on_token(kText, "OP").reason, FinishReason::Stop);
}

TEST(StopChecker, ContextLimit) {
  StopConfig config;
  config.prompt_tokens = 5;
  config.context_limit = 8;
  auto s = StopChecker::create(config);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->on_token(kText, "a").stopped);
  EXPECT_FALSE(s->on_token(kText, "b").stopped);
  const auto r = s->on_token(kText, "c");
  EXPECT_EQ(r.reason, FinishReason::ContextFull);
  EXPECT_EQ(r.emit, "c");
}

TEST(StopChecker, RejectsBadConfig) {
  StopConfig config;
  config.stop_strings = {"ok", ""};
  EXPECT_FALSE(StopChecker::create(config).ok());
  config = {};
  config.max_tokens = -1;
  EXPECT_FALSE(StopChecker::create(config).ok());
  config = {};
  config.prompt_tokens = 8;
  config.context_limit = 8;
  EXPECT_FALSE(StopChecker::create(config).ok());
  EXPECT_EQ(finish_reason_name(FinishReason::Stop), "stop");
  EXPECT_EQ(finish_reason_name(FinishReason::None), "");
}

}  // namespace
}  // namespace ferrum

#include "common/io/csv.h"

#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux::io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/csv_test_", ::getpid(), "_", name);
}

std::vector<std::vector<std::string>> ReadAll(const std::string& path, char delim,
                                              absl::Status* status,
                                              std::vector<int64_t>* lines = nullptr) {
  std::vector<std::vector<std::string>> out;
  auto reader = CsvReader::Open(path, delim);
  if (!reader.ok()) {
    *status = reader.status();
    return out;
  }
  std::vector<std::string> fields;
  while (true) {
    auto more = (*reader)->Next(&fields);
    if (!more.ok()) {
      *status = more.status();
      return out;
    }
    if (!*more) break;
    out.push_back(fields);
    if (lines) lines->push_back((*reader)->line());
  }
  *status = absl::OkStatus();
  return out;
}

TEST(CsvTest, QuotedFieldsCrlfBomAndEmbeddedNewlines) {
  std::string path = TempPath("a.csv");
  ASSERT_TRUE(WriteFileAtomic(path,
                              "\xEF\xBB\xBFname,value,note\r\n"
                              "a,1,\"hello, world\"\r\n"
                              "\r\n"
                              "b,,\"say \"\"hi\"\"\"\r\n"
                              "c,3,\"two\nlines\"\n"
                              "d,4,\"\"")
                  .ok());
  absl::Status status;
  std::vector<int64_t> lines;
  auto rows = ReadAll(path, ',', &status, &lines);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_THAT(rows[0], ElementsAre("name", "value", "note"));
  EXPECT_THAT(rows[1], ElementsAre("a", "1", "hello, world"));
  EXPECT_THAT(rows[2], ElementsAre("b", "", "say \"hi\""));
  EXPECT_THAT(rows[3], ElementsAre("c", "3", "two\nlines"));
  EXPECT_THAT(rows[4], ElementsAre("d", "4", ""));
  EXPECT_THAT(lines, ElementsAre(1, 2, 4, 5, 7));
  std::filesystem::remove(path);
}

TEST(CsvTest, WriterRoundTripsThroughGzipAndTsv) {
  std::vector<std::vector<std::string>> rows = {{"id", "text"},           {"1", "comma, inside"},
                                                {"2", "quote \" inside"}, {"3", "new\nline"},
                                                {"4", "tab\tinside"},     {"", ""}};
  for (const char* name : {"w.csv", "w.csv.gz", "w.tsv"}) {
    std::string path = TempPath(name);
    char delim = absl::EndsWith(name, ".tsv") ? '\t' : ',';
    auto writer = CsvWriter::Open(path, delim);
    ASSERT_TRUE(writer.ok());
    for (const auto& r : rows) ASSERT_TRUE((*writer)->Write(r).ok());
    ASSERT_TRUE((*writer)->Close().ok());
    absl::Status status;
    auto back = ReadAll(path, delim, &status);
    ASSERT_TRUE(status.ok()) << name << ": " << status;
    // The all-empty record "," survives; a record with a single empty field would be a blank line.
    EXPECT_EQ(back, rows) << name;
    if (absl::EndsWith(name, ".gz")) {
      auto raw = ReadFile(path);
      ASSERT_TRUE(raw.ok());
      EXPECT_EQ(static_cast<unsigned char>((*raw)[0]), 0x1f);  // gzip magic
    }
    std::filesystem::remove(path);
  }
}

TEST(CsvTest, MalformedInputNamesFileAndLine) {
  std::string path = TempPath("bad.csv");
  ASSERT_TRUE(WriteFileAtomic(path, "a,b\n1,\"open\n2,3\n").ok());
  absl::Status status;
  ReadAll(path, ',', &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(path + ":2"));
  EXPECT_THAT(status.message(), HasSubstr("unterminated"));

  ASSERT_TRUE(WriteFileAtomic(path, "a,b\n1,x\"y\n").ok());
  ReadAll(path, ',', &status);
  EXPECT_THAT(status.message(), HasSubstr(path + ":2: field 2"));

  ASSERT_TRUE(WriteFileAtomic(path, "a,b\n1,2\n3\n").ok());
  auto table = ReadCsvTable(path);
  EXPECT_THAT(table.status().message(), HasSubstr(path + ":3: expected 2 fields"));

  auto missing = CsvReader::Open(TempPath("nope.csv"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  std::filesystem::remove(path);
}

TEST(CsvTest, CorruptGzipIsDataLoss) {
  std::string path = TempPath("bad.csv.gz");
  std::string good;
  {
    auto writer = CsvWriter::Open(path);
    ASSERT_TRUE(writer.ok());
    for (int i = 0; i < 2000; ++i)
      ASSERT_TRUE((*writer)->Write({absl::StrCat(i), "payload payload payload"}).ok());
    ASSERT_TRUE((*writer)->Close().ok());
    auto raw = ReadFile(path);
    ASSERT_TRUE(raw.ok());
    good = *raw;
  }
  std::string bad = good;
  for (size_t i = 20; i < 60; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
  ASSERT_TRUE(WriteFileAtomic(path, bad).ok());
  absl::Status status;
  ReadAll(path, ',', &status);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr(path));
  std::filesystem::remove(path);
}

TEST(CsvTest, TableColumnLookup) {
  std::string path = TempPath("t.tsv");
  ASSERT_TRUE(WriteFileAtomic(path, "well_position\tbroad_sample\nA01\t\nA02\tBRD-K1\n").ok());
  auto table = ReadCsvTable(path, '\t');
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->Column("broad_sample"), 1);
  EXPECT_EQ(table->Column("nope"), -1);
  ASSERT_EQ(table->rows.size(), 2u);
  EXPECT_EQ(table->rows[0][1], "");
  EXPECT_EQ(table->rows[1][1], "BRD-K1");
  EXPECT_THAT(table->lines, ElementsAre(2, 3));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace cellflux::io

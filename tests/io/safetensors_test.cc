#include "common/io/safetensors.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellflux::io {
namespace {

using ::testing::HasSubstr;

constexpr char kLabel[] = "bad.safetensors";

// 8-byte little-endian length + header JSON + data, with no padding.
std::string Blob(const std::string& json, const std::string& data = "") {
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

absl::Status ParseStatus(const std::string& bytes) {
  return SafetensorsFile::Parse(bytes, kLabel).status();
}

// Every malformed-file error is INVALID_ARGUMENT, names the file, and contains `what`
// (and the tensor, when given).
void ExpectInvalid(const std::string& bytes, const std::string& what,
                   const std::string& tensor = "") {
  absl::Status s = ParseStatus(bytes);
  ASSERT_FALSE(s.ok()) << "accepted a malformed file expected to fail with: " << what;
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(kLabel));
  EXPECT_THAT(std::string(s.message()), HasSubstr(what));
  if (!tensor.empty()) EXPECT_THAT(std::string(s.message()), HasSubstr("tensor '" + tensor + "'"));
}

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

// --- Malformed files -------------------------------------------------------------------------

TEST(SafetensorsMalformedTest, ShorterThanEightBytes) {
  ExpectInvalid("", "truncated: 0 bytes");
  ExpectInvalid(std::string(7, '\0'), "truncated: 7 bytes");
}

TEST(SafetensorsMalformedTest, HeaderLengthPastEnd) {
  std::string bytes = Blob("{}");
  bytes[0] = 100;
  ExpectInvalid(bytes, "header length 100 runs past the end");
}

TEST(SafetensorsMalformedTest, HeaderLengthAboveLimit) {
  std::string bytes = Blob("{}");
  uint64_t n = 200'000'000;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  ExpectInvalid(bytes, "exceeds the 100000000-byte limit");
  // All-ones length: must not wrap around in the bounds arithmetic.
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(0xff);
  ExpectInvalid(bytes, "exceeds the 100000000-byte limit");
}

TEST(SafetensorsMalformedTest, HeaderNotJson) {
  ExpectInvalid(Blob("{not json"), "not valid JSON");
  ExpectInvalid(Blob(""), "not a JSON object");
  ExpectInvalid(Blob("{} trailing"), "not valid JSON");
}

TEST(SafetensorsMalformedTest, HeaderNotAnObject) {
  ExpectInvalid(Blob("[1, 2]"), "not a JSON object");
  ExpectInvalid(Blob("\"x\""), "not a JSON object");
}

TEST(SafetensorsMalformedTest, EntryNotAnObject) {
  ExpectInvalid(Blob(R"({"w": 3})"), "entry is not an object", "w");
}

TEST(SafetensorsMalformedTest, EntryMissingFields) {
  ExpectInvalid(Blob(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", std::string(4, 'x')),
                "missing string field 'dtype'", "w");
  ExpectInvalid(Blob(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", std::string(4, 'x')),
                "missing array field 'shape'", "w");
  ExpectInvalid(Blob(R"({"w": {"dtype": "F32", "shape": [1]}})", std::string(4, 'x')),
                "'data_offsets' must be an array [begin, end]", "w");
  ExpectInvalid(
      Blob(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", std::string(4, 'x')),
      "'data_offsets' must be an array [begin, end]", "w");
  ExpectInvalid(
      Blob(R"({"w": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}})", std::string(4, 'x')),
      "missing string field 'dtype'", "w");
}

TEST(SafetensorsMalformedTest, UnknownDType) {
  ExpectInvalid(Blob(R"({"w": {"dtype": "F8_E4M3X", "shape": [1], "data_offsets": [0, 1]}})", "x"),
                "unsupported dtype 'F8_E4M3X'", "w");
}

TEST(SafetensorsMalformedTest, NegativeOrNonIntegerShape) {
  ExpectInvalid(Blob(R"({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}})"),
                "shape entries must be non-negative integers", "w");
  ExpectInvalid(Blob(R"({"w": {"dtype": "U8", "shape": [1.5], "data_offsets": [0, 1]}})", "x"),
                "shape entries must be non-negative integers", "w");
  ExpectInvalid(Blob(R"({"w": {"dtype": "U8", "shape": [1.0], "data_offsets": [0, 1]}})", "x"),
                "shape entries must be non-negative integers", "w");
  ExpectInvalid(Blob(R"({"w": {"dtype": "U8", "shape": ["1"], "data_offsets": [0, 1]}})", "x"),
                "shape entries must be non-negative integers", "w");
  ExpectInvalid(Blob(R"({"w": {"dtype": "U8", "shape": [true], "data_offsets": [0, 1]}})", "x"),
                "shape entries must be non-negative integers", "w");
}

TEST(SafetensorsMalformedTest, RankAboveLimit) {
  ExpectInvalid(Blob(R"({"w": {"dtype": "U8", "shape": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],)"
                     R"( "data_offsets": [0, 1]}})",
                     "x"),
                "rank 17 exceeds 16", "w");
}

TEST(SafetensorsMalformedTest, NegativeOrNonIntegerOffsets) {
  ExpectInvalid(Blob(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}})", "x"),
                "data_offsets must be non-negative integers", "w");
  ExpectInvalid(Blob(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1.0]}})", "x"),
                "data_offsets must be non-negative integers", "w");
}

TEST(SafetensorsMalformedTest, OffsetsBeginAfterEnd) {
  ExpectInvalid(Blob(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [2, 1]}})", "xx"),
                "data_offsets [2, 1] has begin > end", "w");
}

TEST(SafetensorsMalformedTest, OffsetsPastEndOfData) {
  // Header promises 8 bytes of F32 [2], the file holds only 5 (truncated download).
  ExpectInvalid(Blob(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "12345"),
                "data_offsets [0, 8] run past the end of the data section (5 bytes", "w");
  // Offsets near 2^64 must not wrap.
  ExpectInvalid(
      Blob(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [18446744073709551615, )"
           R"(18446744073709551615]}})",
           "x"),
      "run past the end of the data section", "w");
}

TEST(SafetensorsMalformedTest, ByteSizeMismatch) {
  ExpectInvalid(Blob(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 6]}})", "123456"),
                "byte size 6 does not match dtype F32 × shape [2] (expected 8)", "w");
}

TEST(SafetensorsMalformedTest, OverlappingOffsets) {
  ExpectInvalid(Blob(R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                     R"( "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}})",
                     "123456"),
                "overlap tensor 'a'", "b");
  // Same range twice.
  ExpectInvalid(Blob(R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                     R"( "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}})",
                     "1234"),
                "overlap tensor");
}

TEST(SafetensorsMalformedTest, Holes) {
  ExpectInvalid(Blob(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},)"
                     R"( "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}})",
                     "123456"),
                "hole in the data section: bytes [2, 4)", "b");
  ExpectInvalid(Blob(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}})", "123"),
                "hole in the data section: bytes [0, 1)", "a");
}

TEST(SafetensorsMalformedTest, TrailingBytes) {
  ExpectInvalid(Blob(R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})", "1234"),
                "data section has 4 bytes but tensors cover 2 (trailing bytes)");
  ExpectInvalid(Blob("{}", "z"), "data section has 1 bytes but tensors cover 0");
}

TEST(SafetensorsMalformedTest, ShapeProductOverflow) {
  const std::string big = std::to_string(uint64_t{1} << 40);
  ExpectInvalid(Blob(R"({"w": {"dtype": "F32", "shape": [)" + big + ", " + big +
                         R"(], "data_offsets": [0, 4]}})",
                     "1234"),
                "overflows", "w");
  // A zero dimension does not excuse an overflowing product: numel() must stay defined.
  ExpectInvalid(Blob(R"({"w": {"dtype": "F32", "shape": [)" + big + ", " + big +
                     R"(, 0], "data_offsets": [0, 0]}})"),
                "overflows", "w");
  ExpectInvalid(Blob(R"({"w": {"dtype": "F32", "shape": [18446744073709551615], )"
                     R"("data_offsets": [0, 4]}})",
                     "1234"),
                "overflows", "w");
}

TEST(SafetensorsMalformedTest, MetadataNotStringToString) {
  ExpectInvalid(Blob(R"({"__metadata__": [1]})"), "__metadata__ is not an object");
  ExpectInvalid(Blob(R"({"__metadata__": {"format": 1}})"),
                "__metadata__ value of 'format' is not a string");
  ExpectInvalid(Blob(R"({"__metadata__": {"k": {"nested": "x"}}})"),
                "__metadata__ value of 'k' is not a string");
}

TEST(SafetensorsMalformedTest, ReadNamesThePath) {
  std::string path =
      testing::TempDir() + "/truncated_" + std::to_string(::getpid()) + ".safetensors";
  std::ofstream(path, std::ios::binary)
      << Blob(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "1234");
  absl::Status s = SafetensorsFile::Read(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_THAT(std::string(s.message()), HasSubstr("tensor 'w'"));
  std::filesystem::remove(path);

  s = SafetensorsFile::Read(path).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));

  s = SafetensorsFile::Read(testing::TempDir()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("not a regular file"));
}

TEST(SafetensorsMalformedTest, ExpectNamesFileTensorAndBothValues) {
  float v[2] = {1, 2};
  auto bytes = SerializeSafetensors({{"w", DType::kF32, {2}, Bytes(v, 8)}});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto file = SafetensorsFile::Parse(*bytes, "m.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  absl::Status s = file->Expect("w", DType::kF32, {1, 2}).status();
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("'m.safetensors', tensor 'w': shape [2], expected [1, 2]"));
  s = file->Expect("w", DType::kF16, {2}).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("dtype F32, expected F16"));
  s = file->Expect("missing", DType::kF32, {2}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'m.safetensors': tensor 'missing' is missing"));
}

// --- Writer errors ---------------------------------------------------------------------------

TEST(SafetensorsWriteTest, RejectsBadTensors) {
  char b[4] = {};
  EXPECT_THAT(
      std::string(SerializeSafetensors({{"w", DType::kF32, {2}, Bytes(b, 4)}}).status().message()),
      HasSubstr("tensor 'w': 4 bytes given, dtype F32 × shape [2] needs 8"));
  EXPECT_FALSE(SerializeSafetensors({{"", DType::kU8, {0}, ""}}).ok());
  EXPECT_FALSE(SerializeSafetensors({{"__metadata__", DType::kU8, {0}, ""}}).ok());
  EXPECT_THAT(
      std::string(SerializeSafetensors({{"a", DType::kU8, {0}, ""}, {"a", DType::kU8, {0}, ""}})
                      .status()
                      .message()),
      HasSubstr("duplicate tensor name 'a'"));
  EXPECT_THAT(std::string(SerializeSafetensors({{"w", DType::kU8, {-1}, ""}}).status().message()),
              HasSubstr("negative"));
  const int64_t big = int64_t{1} << 40;
  EXPECT_THAT(
      std::string(SerializeSafetensors({{"w", DType::kU8, {big, big}, ""}}).status().message()),
      HasSubstr("overflows"));
}

TEST(SafetensorsWriteTest, RejectsInvalidUtf8InsteadOfThrowing) {
  // JSON can only carry UTF-8; the serializer must return an error, not throw.
  absl::StatusOr<std::string> bytes = SerializeSafetensors({{"w\xff", DType::kU8, {0}, ""}});
  ASSERT_FALSE(bytes.ok());
  EXPECT_THAT(std::string(bytes.status().message()), HasSubstr("UTF-8"));
  bytes = SerializeSafetensors({}, {{"k", "\xc3"}});
  ASSERT_FALSE(bytes.ok());
  EXPECT_THAT(std::string(bytes.status().message()), HasSubstr("UTF-8"));
}

TEST(SafetensorsWriteTest, WriteReportsThePath) {
  std::string path =
      testing::TempDir() + "/no_such_dir_" + std::to_string(::getpid()) + "/x.safetensors";
  absl::Status s = WriteSafetensors(path, {});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
}

// --- Round trips -----------------------------------------------------------------------------

// Random bytes (any bit pattern, including NaN payloads) must come back unchanged.
std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

TEST(SafetensorsRoundTripTest, EveryDTypeBitExact) {
  const std::vector<DType> dtypes = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64,
                                     DType::kI64, DType::kI32, DType::kU8,   DType::kI16,
                                     DType::kI8,  DType::kBool};
  std::vector<std::string> data;
  std::vector<TensorToWrite> w;
  data.reserve(dtypes.size());
  for (size_t i = 0; i < dtypes.size(); ++i) {
    std::vector<int64_t> shape = {3, static_cast<int64_t>(i) + 1};
    data.push_back(RandomBytes(3 * (i + 1) * DTypeSize(dtypes[i]), 100 + i));
    w.push_back({std::string("t.") + DTypeName(dtypes[i]), dtypes[i], shape, data.back()});
  }
  auto bytes = SerializeSafetensors(w, {{"format", "pt"}, {"note", "µm ✓"}});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  // The data section starts 8-byte aligned.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>((*bytes)[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  auto file = SafetensorsFile::Parse(*bytes, "mem");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->tensors().size(), dtypes.size());
  EXPECT_EQ(file->metadata().at("note"), "µm ✓");
  for (size_t i = 0; i < dtypes.size(); ++i) {
    auto t = file->Expect(w[i].name, dtypes[i], w[i].shape);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ((*t)->numel(), 3 * static_cast<int64_t>(i + 1));
    EXPECT_EQ(file->Data(**t), data[i]) << w[i].name;
  }
}

TEST(SafetensorsRoundTripTest, EmptyTensorsAndScalars) {
  float scalar = 3.5f;
  std::vector<TensorToWrite> w = {{"empty", DType::kF32, {0, 4}, ""},
                                  {"empty2", DType::kI64, {5, 0, 2}, ""},
                                  {"scalar", DType::kF32, {}, Bytes(&scalar, 4)}};
  auto bytes = SerializeSafetensors(w);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto file = SafetensorsFile::Parse(*bytes, "mem");
  ASSERT_TRUE(file.ok()) << file.status();
  auto e = file->Expect("empty", DType::kF32, {0, 4});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->numel(), 0);
  EXPECT_TRUE(file->Data(**e).empty());
  ASSERT_TRUE(file->Expect("empty2", DType::kI64, {5, 0, 2}).ok());
  auto s = file->Expect("scalar", DType::kF32, {});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->numel(), 1);
  EXPECT_EQ(file->Data(**s), Bytes(&scalar, 4));
}

TEST(SafetensorsRoundTripTest, NoTensorsAtAll) {
  auto bytes = SerializeSafetensors({});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto file = SafetensorsFile::Parse(*bytes, "mem");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->tensors().empty());
}

TEST(SafetensorsRoundTripTest, WriteThenReadFromDisk) {
  std::string path = testing::TempDir() + "/rt_" + std::to_string(::getpid()) + ".safetensors";
  std::string d = RandomBytes(2 * 3 * 2, 7);
  ASSERT_TRUE(WriteSafetensors(path, {{"h", DType::kBF16, {2, 3}, d}}, {{"a", "b"}}).ok());
  auto file = SafetensorsFile::Read(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->label(), path);
  auto t = file->Expect("h", DType::kBF16, {2, 3});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(file->Data(**t), d);
  EXPECT_EQ(file->metadata().at("a"), "b");
  std::filesystem::remove(path);
}

// A file written by the Python writer (tests/python/safetensors_io.py, the reference library's
// layout). tests/io/testdata/python_written.safetensors was produced by kPythonScript; the test
// checks the values Python put in and, where python3 with torch exists, that a fresh run of the
// script still produces exactly the committed bytes.
constexpr char kPythonGolden[] = "tests/io/testdata/python_written.safetensors";
constexpr char kPythonScript[] =
    "import sys, torch; sys.path.insert(0, 'tests/python'); import safetensors_io as s; "
    "s.save(sys.argv[1], {"
    "'f32': torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4, "
    "'f16': torch.tensor([1.5, -2.0], dtype=torch.float16), "
    "'bf16': torch.tensor([0.5, 3.0, -1.0], dtype=torch.bfloat16), "
    "'f64': torch.tensor([[1e300]], dtype=torch.float64), "
    "'i64': torch.tensor([-(2**62), 5]), "
    "'i32': torch.tensor([7], dtype=torch.int32), "
    "'u8': torch.tensor([0, 255], dtype=torch.uint8), "
    "'scalar1': torch.tensor([2.25]), "
    "'empty': torch.zeros(0, 3)}, {'format': 'pt'})";

void CheckPythonWrittenFile(const SafetensorsFile& file) {
  EXPECT_EQ(file.tensors().size(), 9u);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  auto f32 = file.Expect("f32", DType::kF32, {2, 3});
  ASSERT_TRUE(f32.ok()) << f32.status();
  std::vector<float> fv(6);
  std::memcpy(fv.data(), file.Data(**f32).data(), 24);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(fv[i], i / 4.0f);
  auto f16 = file.Expect("f16", DType::kF16, {2});
  ASSERT_TRUE(f16.ok()) << f16.status();
  EXPECT_EQ(file.Data(**f16), std::string("\x00\x3e\x00\xc0", 4));  // 1.5, -2.0 in IEEE half
  auto bf16 = file.Expect("bf16", DType::kBF16, {3});
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(file.Data(**bf16), std::string("\x00\x3f\x40\x40\x80\xbf", 6));  // 0.5, 3, -1
  auto f64 = file.Expect("f64", DType::kF64, {1, 1});
  ASSERT_TRUE(f64.ok()) << f64.status();
  double dv;
  std::memcpy(&dv, file.Data(**f64).data(), 8);
  EXPECT_EQ(dv, 1e300);
  auto i64 = file.Expect("i64", DType::kI64, {2});
  ASSERT_TRUE(i64.ok()) << i64.status();
  int64_t iv[2];
  std::memcpy(iv, file.Data(**i64).data(), 16);
  EXPECT_EQ(iv[0], -(int64_t{1} << 62));
  EXPECT_EQ(iv[1], 5);
  auto i32 = file.Expect("i32", DType::kI32, {1});
  ASSERT_TRUE(i32.ok()) << i32.status();
  EXPECT_EQ(file.Data(**i32), std::string("\x07\x00\x00\x00", 4));
  auto u8 = file.Expect("u8", DType::kU8, {2});
  ASSERT_TRUE(u8.ok()) << u8.status();
  EXPECT_EQ(file.Data(**u8), std::string("\x00\xff", 2));
  auto scalar = file.Expect("scalar1", DType::kF32, {1});
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  float sv;
  std::memcpy(&sv, file.Data(**scalar).data(), 4);
  EXPECT_EQ(sv, 2.25f);
  EXPECT_TRUE(file.Expect("empty", DType::kF32, {0, 3}).ok());
}

TEST(SafetensorsRoundTripTest, ReadsCommittedPythonWrittenFile) {
  auto file = SafetensorsFile::Read(kPythonGolden);
  ASSERT_TRUE(file.ok()) << file.status();
  CheckPythonWrittenFile(*file);
}

std::string PythonWithTorch();

// Returns a python3 that can import torch ("" if none): Debian's python3-torch lives under
// /usr/bin/python3, which a pyenv shim on PATH may hide.
std::string PythonWithTorch() {
  for (const char* py : {"/usr/bin/python3", "python3"}) {
    std::string cmd = std::string(py) + " -c 'import torch' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return "";
}

// Without python3 + torch only the committed file is checked (the test above); this one then
// only checks that the golden file exists.
TEST(SafetensorsRoundTripTest, PythonWriterStillProducesTheCommittedBytes) {
  ASSERT_TRUE(std::filesystem::exists(kPythonGolden));
  std::string py = PythonWithTorch();
  if (py.empty()) {
    std::cerr << "no python3 with torch: not regenerating " << kPythonGolden << "\n";
    return;
  }
  std::string path = testing::TempDir() + "/py_" + std::to_string(::getpid()) + ".safetensors";
  std::string cmd = py + " -c \"" + kPythonScript + "\" " + path;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto fresh = SafetensorsFile::Read(path);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  CheckPythonWrittenFile(*fresh);
  std::ifstream a(path, std::ios::binary), b(kPythonGolden, std::ios::binary);
  std::stringstream sa, sb;
  sa << a.rdbuf();
  sb << b.rdbuf();
  EXPECT_EQ(sa.str(), sb.str());
  std::filesystem::remove(path);
}

TEST(SafetensorsDTypeTest, NamesRoundTrip) {
  for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64, DType::kI32,
                  DType::kI16, DType::kI8, DType::kU8, DType::kBool}) {
    auto parsed = ParseDType(DTypeName(d));
    ASSERT_TRUE(parsed.ok()) << DTypeName(d);
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
  EXPECT_FALSE(ParseDType("f32").ok());
  EXPECT_EQ(ShapeString({}), "[]");
  EXPECT_EQ(ShapeString({2, 3}), "[2, 3]");
}

}  // namespace
}  // namespace cellflux::io

#include "common/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/util/files.h"
#include "nlohmann/json.hpp"

namespace cellflux::io {
namespace {

// Same bound as the reference implementation: a header above 100 MB is rejected unread.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr int64_t kMaxRank = 16;

absl::Status Invalid(const std::string& label, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors '", label, "': ", what));
}

// *out = a * b if the product is at most `limit`; false otherwise (nothing overflows).
bool CheckedMul(uint64_t a, uint64_t b, uint64_t limit, uint64_t* out) {
  if (a != 0 && b > limit / a) return false;
  *out = a * b;
  return true;
}

// Largest element count: TensorInfo::numel() is int64.
constexpr uint64_t kMaxNumel = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

absl::Status InvalidTensor(const std::string& label, absl::string_view tensor,
                           absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors '", label, "', tensor '", tensor, "': ", what));
}

}  // namespace

struct SafetensorsFile::Backing {
  std::string owned;
  void* map = nullptr;
  size_t map_size = 0;
  const char* data = nullptr;
  size_t size = 0;
  ~Backing() {
    if (map != nullptr) ::munmap(map, map_size);
  }
};

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "F64") return DType::kF64;
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  if (name == "I64") return DType::kI64;
  if (name == "I32") return DType::kI32;
  if (name == "I16") return DType::kI16;
  if (name == "I8") return DType::kI8;
  if (name == "U8") return DType::kU8;
  if (name == "BOOL") return DType::kBool;
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype '", name,
                                                 "' (expected F64, F32, F16, BF16, I64, I32, "
                                                 "I16, I8, U8 or BOOL)"));
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF64:
      return "F64";
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kI16:
      return "I16";
    case DType::kI8:
      return "I8";
    case DType::kU8:
      return "U8";
    case DType::kBool:
      return "BOOL";
  }
  return "?";
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
      return 1;
  }
  return 1;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

int64_t TensorInfo::numel() const {
  // Validation guarantees every prefix product fits; compute in uint64 anyway so a hand-built
  // TensorInfo can never trigger signed-overflow UB.
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return static_cast<int64_t>(n);
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Read(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return absl::NotFoundError(absl::StrCat("safetensors '", path, "': no such file"));
    return absl::InternalError(
        absl::StrCat("safetensors '", path, "': cannot open: ", std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Invalid(path, "not a regular file");
  }
  auto backing = std::make_shared<Backing>();
  backing->size = static_cast<size_t>(st.st_size);
  if (backing->size > 0) {
    void* m = ::mmap(nullptr, backing->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(
          absl::StrCat("safetensors '", path, "': mmap failed: ", std::strerror(errno)));
    }
    backing->map = m;
    backing->map_size = backing->size;
    backing->data = static_cast<const char*>(m);
  }
  ::close(fd);
  return Validate(std::move(backing), path);
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Parse(std::string bytes, std::string label) {
  auto backing = std::make_shared<Backing>();
  backing->owned = std::move(bytes);
  backing->data = backing->owned.data();
  backing->size = backing->owned.size();
  return Validate(std::move(backing), std::move(label));
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Validate(std::shared_ptr<Backing> backing,
                                                          std::string label) {
  const size_t size = backing->size;
  if (size < 8) {
    return Invalid(
        label, absl::StrCat("truncated: ", size, " bytes, the 8-byte header length alone needs 8"));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(backing->data[i]);
  if (n > kMaxHeaderBytes) {
    return Invalid(
        label, absl::StrCat("header length ", n, " exceeds the ", kMaxHeaderBytes, "-byte limit"));
  }
  if (n > size - 8) {
    return Invalid(label, absl::StrCat("header length ", n, " runs past the end of the file (",
                                       size - 8, " bytes after the length field)"));
  }
  absl::string_view header(backing->data + 8, n);
  if (header.empty() || header[0] != '{') {
    return Invalid(label, "header is not a JSON object (must start with '{')");
  }
  nlohmann::json j = nlohmann::json::parse(header.begin(), header.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Invalid(label, "header is not valid JSON object");

  SafetensorsFile file;
  file.label_ = std::move(label);
  file.data_start_ = 8 + n;
  const uint64_t data_size = size - file.data_start_;

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Invalid(file.label_, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          return Invalid(file.label_,
                         absl::StrCat("__metadata__ value of '", m.key(), "' is not a string"));
        }
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) return InvalidTensor(file.label_, name, "entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string())
      return InvalidTensor(file.label_, name, "missing string field 'dtype'");
    if (sh == v.end() || !sh->is_array())
      return InvalidTensor(file.label_, name, "missing array field 'shape'");
    if (off == v.end() || !off->is_array() || off->size() != 2) {
      return InvalidTensor(file.label_, name, "'data_offsets' must be an array [begin, end]");
    }
    TensorInfo info;
    info.name = name;
    absl::StatusOr<DType> dtype = ParseDType(dt->get<std::string>());
    if (!dtype.ok()) return InvalidTensor(file.label_, name, dtype.status().message());
    info.dtype = *dtype;
    if (static_cast<int64_t>(sh->size()) > kMaxRank) {
      return InvalidTensor(file.label_, name,
                           absl::StrCat("rank ", sh->size(), " exceeds ", kMaxRank));
    }
    // Every prefix product of the shape must fit in int64, as in the reference implementation:
    // numel() and every caller multiply left to right, so a later zero does not excuse an
    // overflowing prefix ([2^40, 2^40, 0] is rejected, [0, 2^40, 2^40] is an empty tensor).
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0)) {
        return InvalidTensor(file.label_, name, "shape entries must be non-negative integers");
      }
      const uint64_t dim = d.get<uint64_t>();
      if (!CheckedMul(numel, dim, kMaxNumel, &numel)) {
        // sh holds only numbers here, so dump() cannot throw.
        return InvalidTensor(
            file.label_, name,
            absl::StrCat("shape ", sh->dump(), " overflows: element count above 2^63 - 1"));
      }
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t nbytes = 0;
    if (!CheckedMul(numel, DTypeSize(info.dtype), std::numeric_limits<uint64_t>::max(), &nbytes)) {
      return InvalidTensor(file.label_, name, "byte size overflows 64 bits");
    }
    for (const auto& o : *off) {
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0)) {
        return InvalidTensor(file.label_, name, "data_offsets must be non-negative integers");
      }
    }
    info.begin = (*off)[0].get<uint64_t>();
    info.end = (*off)[1].get<uint64_t>();
    if (info.begin > info.end) {
      return InvalidTensor(
          file.label_, name,
          absl::StrCat("data_offsets [", info.begin, ", ", info.end, "] has begin > end"));
    }
    if (info.end > data_size) {
      return InvalidTensor(file.label_, name,
                           absl::StrCat("data_offsets [", info.begin, ", ", info.end,
                                        "] run past the end of the data section (", data_size,
                                        " bytes; file truncated?)"));
    }
    if (info.end - info.begin != nbytes) {
      return InvalidTensor(
          file.label_, name,
          absl::StrCat("byte size ", info.end - info.begin, " does not match dtype ",
                       DTypeName(info.dtype), " × shape ", ShapeString(info.shape), " (expected ",
                       nbytes, ")"));
    }
    file.tensors_.push_back(std::move(info));
  }

  std::sort(file.tensors_.begin(), file.tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  uint64_t expected = 0;
  for (size_t i = 0; i < file.tensors_.size(); ++i) {
    const TensorInfo& t = file.tensors_[i];
    if (t.begin < expected) {
      return InvalidTensor(file.label_, t.name,
                           absl::StrCat("data_offsets [", t.begin, ", ", t.end,
                                        "] overlap tensor '", file.tensors_[i - 1].name, "'"));
    }
    if (t.begin > expected) {
      return InvalidTensor(file.label_, t.name,
                           absl::StrCat("hole in the data section: bytes [", expected, ", ",
                                        t.begin, ") belong to no tensor"));
    }
    expected = t.end;
  }
  if (expected != data_size) {
    return Invalid(file.label_,
                   absl::StrCat("data section has ", data_size, " bytes but tensors cover ",
                                expected, " (trailing bytes)"));
  }
  file.backing_ = std::move(backing);
  return file;
}

const TensorInfo* SafetensorsFile::Find(absl::string_view name) const {
  for (const TensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::string_view SafetensorsFile::Data(const TensorInfo& info) const {
  return absl::string_view(backing_->data + data_start_ + info.begin, info.nbytes());
}

absl::StatusOr<const TensorInfo*> SafetensorsFile::Expect(absl::string_view name, DType dtype,
                                                          const std::vector<int64_t>& shape) const {
  const TensorInfo* t = Find(name);
  if (t == nullptr)
    return absl::NotFoundError(
        absl::StrCat("safetensors '", label_, "': tensor '", name, "' is missing"));
  if (t->dtype != dtype) {
    return InvalidTensor(
        label_, name, absl::StrCat("dtype ", DTypeName(t->dtype), ", expected ", DTypeName(dtype)));
  }
  if (t->shape != shape) {
    return InvalidTensor(
        label_, name,
        absl::StrCat("shape ", ShapeString(t->shape), ", expected ", ShapeString(shape)));
  }
  return t;
}

absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<TensorToWrite>& tensors, const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    const TensorToWrite& t = *order[i];
    if (t.name.empty() || t.name == "__metadata__") {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write tensor with name '", t.name, "'"));
    }
    if (i > 0 && order[i - 1]->name == t.name) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor name '", t.name, "'"));
    }
    if (static_cast<int64_t>(t.shape.size()) > kMaxRank) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t.name, "': rank ", t.shape.size(), " exceeds ", kMaxRank));
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "': negative dim in shape ", ShapeString(t.shape)));
      }
      if (!CheckedMul(numel, static_cast<uint64_t>(d), kMaxNumel, &numel)) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': shape ",
                                                       ShapeString(t.shape),
                                                       " overflows: element count above 2^63 - 1"));
      }
    }
    uint64_t nbytes = 0;
    if (!CheckedMul(numel, DTypeSize(t.dtype), std::numeric_limits<uint64_t>::max(), &nbytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t.name, "': byte size overflows 64 bits"));
    }
    if (nbytes != t.data.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", t.name, "': ", t.data.size(), " bytes given, dtype ",
                       DTypeName(t.dtype), " × shape ", ShapeString(t.shape), " needs ", nbytes));
    }
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  // JSON carries UTF-8 only; dump() throws on anything else, so turn that into a status.
  std::string h;
  try {
    h = header.dump();
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor names and metadata must be valid UTF-8: ", e.what()));
  }
  // Pad the header with spaces so the data section starts 8-byte aligned (as the reference does).
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  std::string out;
  out.reserve(8 + h.size() + offset);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += h;
  for (const TensorToWrite* t : order) out.append(t->data.data(), t->data.size());
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  absl::StatusOr<std::string> bytes = SerializeSafetensors(tensors, metadata);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("writing '", path, "': ", bytes.status().message()));
  }
  return WriteFileAtomic(path, *bytes);
}

}  // namespace cellflux::io

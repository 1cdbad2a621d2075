#include "common/io/gctx.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::io {
namespace {

constexpr char kMatrixPath[] = "/0/DATA/0/matrix";
constexpr char kRowMetaPath[] = "/0/META/ROW";
constexpr char kColMetaPath[] = "/0/META/COL";

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Hid {
 public:
  Hid() = default;
  Hid(hid_t id, herr_t (*closer)(hid_t)) : id_(id), closer_(closer) {}
  ~Hid() { Reset(); }
  Hid(Hid&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }
  Hid& operator=(Hid&& o) noexcept {
    if (this != &o) {
      Reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = -1;
    }
    return *this;
  }
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  void Reset() {
    if (id_ >= 0 && closer_ != nullptr) closer_(id_);
    id_ = -1;
  }
  hid_t id_ = -1;
  herr_t (*closer_)(hid_t) = nullptr;
};

// HDF5 prints its error stack to stderr by default; we report through Status instead.
void SilenceHdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

absl::Status H5Error(const std::string& file, absl::string_view object, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": ", object, ": ", what));
}

// ---- reading --------------------------------------------------------------------------------

absl::StatusOr<std::vector<std::string>> ReadTextDataset(hid_t file, const std::string& name,
                                                         const std::string& label,
                                                         size_t expected) {
  Hid ds(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.ok()) return H5Error(label, name, "dataset missing");
  Hid space(H5Dget_space(ds.get()), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.get());
  hsize_t dims[2] = {0, 0};
  if (rank < 1 || rank > 2)
    return H5Error(label, name, absl::StrCat("expected a 1-D dataset, found rank ", rank));
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  size_t n = dims[0] * (rank == 2 ? dims[1] : 1);
  if (n != expected)
    return H5Error(label, name, absl::StrCat("expected ", expected, " values, found ", n));
  std::vector<std::string> out(n);
  if (n == 0) return out;
  Hid type(H5Dget_type(ds.get()), H5Tclose);
  H5T_class_t cls = H5Tget_class(type.get());
  if (cls == H5T_STRING) {
    if (H5Tis_variable_str(type.get()) > 0) {
      Hid mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      std::vector<char*> ptrs(n, nullptr);
      if (H5Dread(ds.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0) {
        return H5Error(label, name, "cannot read variable-length strings");
      }
      for (size_t i = 0; i < n; ++i) out[i] = ptrs[i] != nullptr ? ptrs[i] : "";
      H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, ptrs.data());
    } else {
      size_t width = H5Tget_size(type.get());
      Hid mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), width);
      H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
      std::vector<char> buf(n * width);
      if (H5Dread(ds.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0) {
        return H5Error(label, name, "cannot read fixed-length strings");
      }
      bool space_pad = H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD;
      for (size_t i = 0; i < n; ++i) {
        const char* p = buf.data() + i * width;
        size_t len = std::find(p, p + width, '\0') - p;
        if (space_pad) {
          while (len > 0 && p[len - 1] == ' ') --len;
        }
        out[i].assign(p, len);
      }
    }
  } else if (cls == H5T_INTEGER) {
    std::vector<long long> v(n);
    if (H5Dread(ds.get(), H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0) {
      return H5Error(label, name, "cannot read integers");
    }
    for (size_t i = 0; i < n; ++i) out[i] = absl::StrCat(v[i]);
  } else if (cls == H5T_FLOAT) {
    char buf[40];
    if (H5Tget_size(type.get()) <= 4) {
      std::vector<float> v(n);
      if (H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0) {
        return H5Error(label, name, "cannot read floats");
      }
      for (size_t i = 0; i < n; ++i) out[i] = FormatFloat(v[i]);
    } else {
      std::vector<double> v(n);
      if (H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0) {
        return H5Error(label, name, "cannot read doubles");
      }
      for (size_t i = 0; i < n; ++i) {
        if (v[i] != v[i]) {
          out[i] = "NaN";
        } else {
          out[i].assign(buf, std::to_chars(buf, buf + sizeof(buf), v[i]).ptr);
        }
      }
    }
  } else {
    return H5Error(label, name, "unsupported datatype (expected strings, integers or floats)");
  }
  return out;
}

struct LinkNames {
  std::vector<std::string> names;
};

herr_t CollectLink(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<LinkNames*>(data)->names.emplace_back(name);
  return 0;
}

absl::Status ReadMetaGroup(hid_t file, const std::string& group_path, const std::string& label,
                           std::vector<std::string>* ids, GctMeta* meta, size_t expected) {
  Hid group(H5Gopen2(file, group_path.c_str(), H5P_DEFAULT), H5Gclose);
  if (!group.ok()) return H5Error(label, group_path, "group missing");
  Hid gcpl(H5Gget_create_plist(group.get()), H5Pclose);
  unsigned order_flags = 0;
  H5Pget_link_creation_order(gcpl.get(), &order_flags);
  H5_index_t index = (order_flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
  LinkNames links;
  hsize_t idx = 0;
  if (H5Literate(group.get(), index, H5_ITER_INC, &idx, CollectLink, &links) < 0) {
    return H5Error(label, group_path, "cannot list datasets");
  }
  CF_ASSIGN_OR_RETURN(*ids, ReadTextDataset(file, group_path + "/id", label, expected));
  for (const std::string& name : links.names) {
    if (name == "id") continue;
    CF_ASSIGN_OR_RETURN(auto values,
                        ReadTextDataset(file, group_path + "/" + name, label, expected));
    meta->emplace_back(name, std::move(values));
  }
  return absl::OkStatus();
}

// ---- writing --------------------------------------------------------------------------------

absl::StatusOr<Hid> MakeGroup(hid_t parent, const char* name, const std::string& label,
                              bool track_order) {
  Hid gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  if (track_order)
    H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  Hid g(H5Gcreate2(parent, name, H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
  if (!g.ok()) return H5Error(label, name, "cannot create group");
  return g;
}

absl::Status WriteTextDataset(hid_t group, const std::string& name,
                              const std::vector<std::string>& values, const std::string& label) {
  size_t width = 1;
  for (const auto& v : values) width = std::max(width, v.size());
  Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), width);
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  hsize_t dims[1] = {values.size()};
  Hid space(H5Screate_simple(1, dims, nullptr), H5Sclose);
  Hid ds(H5Dcreate2(group, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                    H5P_DEFAULT),
         H5Dclose);
  if (!ds.ok()) return H5Error(label, name, "cannot create dataset");
  if (values.empty()) return absl::OkStatus();
  std::vector<char> buf(values.size() * width, '\0');
  for (size_t i = 0; i < values.size(); ++i)
    std::copy(values[i].begin(), values[i].end(), buf.begin() + i * width);
  if (H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0) {
    return H5Error(label, name, "cannot write");
  }
  return absl::OkStatus();
}

absl::Status WriteMetaGroup(hid_t parent, const char* name, const std::vector<std::string>& ids,
                            const GctMeta& meta, const std::string& label) {
  CF_ASSIGN_OR_RETURN(Hid group, MakeGroup(parent, name, label, /*track_order=*/true));
  CF_RETURN_IF_ERROR(WriteTextDataset(group.get(), "id", ids, label));
  for (const auto& [field, values] : meta) {
    if (field == "id") return H5Error(label, name, "a metadata field may not be named 'id'");
    CF_RETURN_IF_ERROR(WriteTextDataset(group.get(), field, values, label));
  }
  return absl::OkStatus();
}

absl::Status WriteVersionAttribute(hid_t file, const std::string& label) {
  const std::string version = "GCTX1.0";
  Hid type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), version.size());
  Hid space(H5Screate(H5S_SCALAR), H5Sclose);
  Hid attr(H5Acreate2(file, "version", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
           H5Aclose);
  if (!attr.ok() || H5Awrite(attr.get(), type.get(), version.data()) < 0) {
    return H5Error(label, "/", "cannot write the version attribute");
  }
  return absl::OkStatus();
}

absl::Status WriteGctxFile(const std::string& path, const std::string& label, const GctMatrix& m) {
  Hid file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) return absl::InternalError(absl::StrCat("cannot create HDF5 file '", path, "'"));
  CF_RETURN_IF_ERROR(WriteVersionAttribute(file.get(), label));
  CF_ASSIGN_OR_RETURN(Hid g0, MakeGroup(file.get(), "0", label, false));
  CF_ASSIGN_OR_RETURN(Hid data, MakeGroup(g0.get(), "DATA", label, false));
  CF_ASSIGN_OR_RETURN(Hid data0, MakeGroup(data.get(), "0", label, false));
  CF_ASSIGN_OR_RETURN(Hid meta, MakeGroup(g0.get(), "META", label, false));
  CF_RETURN_IF_ERROR(WriteMetaGroup(meta.get(), "ROW", m.row_ids, m.row_meta, label));
  CF_RETURN_IF_ERROR(WriteMetaGroup(meta.get(), "COL", m.col_ids, m.col_meta, label));

  // HDF5 dims [cols, rows]: transpose our row-major [rows, cols].
  const hsize_t n_rows = m.rows(), n_cols = m.cols();
  std::vector<float> t(n_rows * n_cols);
  for (hsize_t r = 0; r < n_rows; ++r) {
    for (hsize_t c = 0; c < n_cols; ++c) t[c * n_rows + r] = m.data[r * n_cols + c];
  }
  hsize_t dims[2] = {n_cols, n_rows};
  Hid space(H5Screate_simple(2, dims, nullptr), H5Sclose);
  Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (n_rows > 0 && n_cols > 0) {
    // About 1 MiB chunks of whole samples, like cmapPy.
    hsize_t per_chunk = std::max<hsize_t>(1, (1 << 20) / (4 * n_rows));
    hsize_t chunk[2] = {std::min(n_cols, per_chunk), n_rows};
    H5Pset_chunk(dcpl.get(), 2, chunk);
    H5Pset_deflate(dcpl.get(), 6);
  }
  Hid ds(H5Dcreate2(data0.get(), "matrix", H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, dcpl.get(),
                    H5P_DEFAULT),
         H5Dclose);
  if (!ds.ok()) return H5Error(label, kMatrixPath, "cannot create dataset");
  if (!t.empty() &&
      H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data()) < 0) {
    return H5Error(label, kMatrixPath, "cannot write");
  }
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) return H5Error(label, "/", "cannot flush");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GctMatrix> ReadGctx(const std::string& path) {
  SilenceHdf5();
  std::ifstream probe(path, std::ios::binary);
  if (!probe) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  char head[4] = {0, 0, 0, 0};
  probe.read(head, 4);
  if (std::string(head, 3) == "#1.") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not an HDF5 file: it starts with '",
                                                   std::string(head, 4),
                                                   "', i.e. it is GCT text (whatever its name); "
                                                   "read it with ReadGct or ReadExpressionMatrix"));
  }
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not an HDF5 file (no HDF5 signature)"));
  }
  Hid file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open as HDF5"));

  Hid ds(H5Dopen2(file.get(), kMatrixPath, H5P_DEFAULT), H5Dclose);
  if (!ds.ok()) return H5Error(path, kMatrixPath, "dataset missing");
  Hid space(H5Dget_space(ds.get()), H5Sclose);
  if (H5Sget_simple_extent_ndims(space.get()) != 2) {
    return H5Error(path, kMatrixPath,
                   absl::StrCat("expected a 2-D matrix, found rank ",
                                H5Sget_simple_extent_ndims(space.get())));
  }
  hsize_t dims[2];
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  const hsize_t n_cols = dims[0], n_rows = dims[1];  // stored samples × genes
  Hid type(H5Dget_type(ds.get()), H5Tclose);
  H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    return H5Error(path, kMatrixPath, "expected a numeric matrix");

  GctMatrix m;
  CF_RETURN_IF_ERROR(
      ReadMetaGroup(file.get(), kRowMetaPath, path, &m.row_ids, &m.row_meta, n_rows));
  CF_RETURN_IF_ERROR(
      ReadMetaGroup(file.get(), kColMetaPath, path, &m.col_ids, &m.col_meta, n_cols));
  std::vector<float> t(n_rows * n_cols);
  if (!t.empty() &&
      H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data()) < 0) {
    return H5Error(path, kMatrixPath, "cannot read");
  }
  m.data.resize(t.size());
  for (hsize_t c = 0; c < n_cols; ++c) {
    for (hsize_t r = 0; r < n_rows; ++r) m.data[r * n_cols + c] = t[c * n_rows + r];
  }
  CF_RETURN_IF_ERROR(m.Validate());
  return m;
}

absl::Status WriteGctx(const std::string& path, const GctMatrix& matrix) {
  SilenceHdf5();
  absl::Status valid = matrix.Validate();
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", valid.message()));
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  absl::Status s = WriteGctxFile(tmp, path, matrix);  // closes the file before the rename
  if (s.ok()) {
    int fd = ::open(tmp.c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      s = absl::InternalError(absl::StrCat("cannot rename to '", path, "'"));
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<GctMatrix> ReadExpressionMatrix(const std::string& path) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  char head[3] = {0, 0, 0};
  probe.read(head, 3);
  if (std::string(head, 3) == "#1.") return ReadGct(path);
  return ReadGctx(path);
}

}  // namespace cellflux::io

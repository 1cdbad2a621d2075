#include "common/io/csv.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux::io {
namespace {

constexpr size_t kBufferSize = 1 << 16;

gzFile Gz(void* p) { return static_cast<gzFile>(p); }

}  // namespace

bool EndsWithGz(absl::string_view path) { return absl::EndsWithIgnoreCase(path, ".gz"); }

// ---------------------------------------------------------------------------------------------
// CsvReader

CsvReader::CsvReader(std::string path, char delimiter, void* gz)
    : path_(std::move(path)), delimiter_(delimiter), gz_(gz), buffer_(kBufferSize) {}

CsvReader::~CsvReader() {
  if (gz_ != nullptr) gzclose(Gz(gz_));
}

absl::StatusOr<std::unique_ptr<CsvReader>> CsvReader::Open(const std::string& path,
                                                           char delimiter) {
  gzFile gz = gzopen(path.c_str(), "rb");
  if (gz == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  gzbuffer(gz, kBufferSize);
  return std::unique_ptr<CsvReader>(new CsvReader(path, delimiter, gz));
}

absl::StatusOr<int> CsvReader::GetChar() {
  if (pos_ == size_) {
    if (eof_) return -1;
    int n = gzread(Gz(gz_), buffer_.data(), static_cast<unsigned>(buffer_.size()));
    if (n < 0) {
      int errnum = 0;
      const char* msg = gzerror(Gz(gz_), &errnum);
      return absl::DataLossError(absl::StrCat(path_, ": read error near line ", line_, ": ", msg));
    }
    if (n == 0) {
      eof_ = true;
      return -1;
    }
    pos_ = 0;
    size_ = static_cast<size_t>(n);
    if (first_byte_) {
      first_byte_ = false;
      // Skip a UTF-8 byte-order mark (Excel writes one).
      if (size_ >= 3 && static_cast<unsigned char>(buffer_[0]) == 0xEF &&
          static_cast<unsigned char>(buffer_[1]) == 0xBB &&
          static_cast<unsigned char>(buffer_[2]) == 0xBF) {
        pos_ = 3;
        if (pos_ == size_) return GetChar();
      }
    }
  }
  return static_cast<unsigned char>(buffer_[pos_++]);
}

absl::StatusOr<bool> CsvReader::Next(std::vector<std::string>* fields) {
  fields->clear();
  while (true) {
    record_line_ = line_;
    std::string field;
    bool in_quotes = false;
    bool was_quoted = false;   // the current field started with a quote
    bool after_quote = false;  // just closed a quoted section
    bool any = false;          // saw any byte of this record
    while (true) {
      CF_ASSIGN_OR_RETURN(int c, GetChar());
      if (c < 0) {
        if (in_quotes) {
          return absl::InvalidArgumentError(
              absl::StrCat(path_, ":", record_line_, ": unterminated quoted field at end of file"));
        }
        if (!any) return false;
        fields->push_back(std::move(field));
        return true;
      }
      any = true;
      if (in_quotes) {
        if (c == '"') {
          in_quotes = false;
          after_quote = true;
        } else {
          if (c == '\n') ++line_;
          field.push_back(static_cast<char>(c));
        }
        continue;
      }
      if (c == '"') {
        if (after_quote) {  // "" inside a quoted field
          field.push_back('"');
          in_quotes = true;
          after_quote = false;
        } else if (field.empty() && !was_quoted) {
          in_quotes = true;
          was_quoted = true;
        } else {
          return absl::InvalidArgumentError(absl::StrCat(path_, ":", line_, ": field ",
                                                         fields->size() + 1,
                                                         ": quote inside an unquoted field"));
        }
        continue;
      }
      after_quote = false;
      if (c == delimiter_) {
        fields->push_back(std::move(field));
        field.clear();
        was_quoted = false;
        continue;
      }
      if (c == '\r') continue;  // CRLF (a bare CR inside a field is dropped too)
      if (c == '\n') {
        ++line_;
        if (fields->empty() && field.empty() && !was_quoted) {  // blank line
          record_line_ = line_;
          any = false;
          continue;
        }
        fields->push_back(std::move(field));
        return true;
      }
      if (was_quoted) {
        return absl::InvalidArgumentError(absl::StrCat(
            path_, ":", line_, ": field ", fields->size() + 1, ": text after the closing quote"));
      }
      field.push_back(static_cast<char>(c));
    }
  }
}

int CsvTable::Column(absl::string_view name) const {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return static_cast<int>(i);
  }
  return -1;
}

absl::StatusOr<CsvTable> ReadCsvTable(const std::string& path, char delimiter) {
  CF_ASSIGN_OR_RETURN(auto reader, CsvReader::Open(path, delimiter));
  CsvTable table;
  CF_ASSIGN_OR_RETURN(bool has_header, reader->Next(&table.header));
  if (!has_header)
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty file (no header line)"));
  std::vector<std::string> fields;
  while (true) {
    CF_ASSIGN_OR_RETURN(bool more, reader->Next(&fields));
    if (!more) break;
    if (fields.size() != table.header.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", reader->line(), ": expected ", table.header.size(),
                       " fields (as in the header), found ", fields.size()));
    }
    table.rows.push_back(fields);
    table.lines.push_back(reader->line());
  }
  return table;
}

// ---------------------------------------------------------------------------------------------
// Writing

std::string FormatCsvRecord(const std::vector<std::string>& fields, char delimiter) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out.push_back(delimiter);
    const std::string& f = fields[i];
    bool quote = f.find_first_of(std::string("\"\r\n") + delimiter) != std::string::npos;
    if (!quote) {
      out += f;
      continue;
    }
    out.push_back('"');
    for (char c : f) {
      if (c == '"') out.push_back('"');
      out.push_back(c);
    }
    out.push_back('"');
  }
  return out;
}

CsvWriter::CsvWriter(std::string path, std::string tmp_path, char delimiter, bool gzip,
                     void* handle)
    : path_(std::move(path)),
      tmp_path_(std::move(tmp_path)),
      delimiter_(delimiter),
      gzip_(gzip),
      handle_(handle) {}

CsvWriter::~CsvWriter() {
  if (closed_) return;
  if (gzip_) {
    gzclose(Gz(handle_));
  } else {
    std::fclose(static_cast<FILE*>(handle_));
  }
  ::unlink(tmp_path_.c_str());
}

absl::StatusOr<std::unique_ptr<CsvWriter>> CsvWriter::Open(const std::string& path,
                                                           char delimiter) {
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  bool gzip = EndsWithGz(path);
  void* handle = gzip ? static_cast<void*>(gzopen(tmp.c_str(), "wb6"))
                      : static_cast<void*>(std::fopen(tmp.c_str(), "wb"));
  if (handle == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create '", tmp, "': ", std::strerror(errno)));
  }
  return std::unique_ptr<CsvWriter>(new CsvWriter(path, tmp, delimiter, gzip, handle));
}

absl::Status CsvWriter::Write(const std::vector<std::string>& fields) {
  pending_ += FormatCsvRecord(fields, delimiter_);
  pending_.push_back('\n');
  if (pending_.size() >= kBufferSize) return Flush();
  return absl::OkStatus();
}

absl::Status CsvWriter::WriteRaw(absl::string_view text) {
  pending_.append(text.data(), text.size());
  if (pending_.size() >= kBufferSize) return Flush();
  return absl::OkStatus();
}

absl::Status CsvWriter::Flush() {
  if (closed_) return absl::FailedPreconditionError(absl::StrCat(path_, ": writer already closed"));
  if (pending_.empty()) return absl::OkStatus();
  bool ok;
  if (gzip_) {
    ok = gzwrite(Gz(handle_), pending_.data(), static_cast<unsigned>(pending_.size())) ==
         static_cast<int>(pending_.size());
  } else {
    ok = std::fwrite(pending_.data(), 1, pending_.size(), static_cast<FILE*>(handle_)) ==
         pending_.size();
  }
  pending_.clear();
  if (!ok)
    return absl::InternalError(
        absl::StrCat("cannot write '", tmp_path_, "': ", std::strerror(errno)));
  return absl::OkStatus();
}

absl::Status CsvWriter::Close() {
  CF_RETURN_IF_ERROR(Flush());
  closed_ = true;
  bool ok;
  if (gzip_) {
    ok = gzclose(Gz(handle_)) == Z_OK;
  } else {
    FILE* f = static_cast<FILE*>(handle_);
    ok = std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
    ok = (std::fclose(f) == 0) && ok;
  }
  if (ok && gzip_) {
    int fd = ::open(tmp_path_.c_str(), O_RDONLY);
    ok = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
  }
  if (!ok || std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    absl::Status s =
        absl::InternalError(absl::StrCat("cannot finish '", path_, "': ", std::strerror(errno)));
    ::unlink(tmp_path_.c_str());
    return s;
  }
  return FsyncDirectory(std::filesystem::path(path_).parent_path().string());
}

}  // namespace cellflux::io

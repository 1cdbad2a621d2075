// RFC-4180 CSV / TSV reading and writing, LibTorch-free.
//
// CsvReader streams a file record by record (bounded memory: one record plus a 64 KiB read
// buffer). It accepts quoted fields ("a,b", doubled quotes "" inside quotes, newlines inside
// quotes), LF and CRLF line ends, and a UTF-8 BOM at the start. Files whose name ends in ".gz"
// are decompressed with zlib; any other file is read as is (zlib's gzread passes plain files
// through unchanged, so a gzip file with another name is also accepted).
//
//   CF_ASSIGN_OR_RETURN(auto reader, CsvReader::Open(path, ','));
//   std::vector<std::string> fields;
//   while (true) {
//     CF_ASSIGN_OR_RETURN(bool more, reader->Next(&fields));
//     if (!more) break;
//     ... reader->line() is the 1-based line where this record starts ...
//   }
//
// Errors (INVALID_ARGUMENT / NOT_FOUND / DATA_LOSS) name the file and the line.
//
// CsvWriter writes records with minimal quoting (a field is quoted only when it contains the
// delimiter, a quote, CR or LF; quotes are doubled), "\n" line ends, gzip when the path ends in
// ".gz". It writes to `<path>.tmp.<pid>` and renames on Close(), so a reader never sees a half
// file; destroying an unclosed writer removes the temp file.
#ifndef CELLFLUX_COMMON_IO_CSV_H_
#define CELLFLUX_COMMON_IO_CSV_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellflux::io {

class CsvReader {
 public:
  // NOT_FOUND when the file cannot be opened.
  static absl::StatusOr<std::unique_ptr<CsvReader>> Open(const std::string& path,
                                                         char delimiter = ',');
  ~CsvReader();
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  // Reads the next record into `fields` (cleared first). Returns false at end of file. Blank lines
  // are skipped. INVALID_ARGUMENT for an unterminated quoted field or a quote inside an unquoted
  // field; DATA_LOSS for a corrupt gzip stream.
  absl::StatusOr<bool> Next(std::vector<std::string>* fields);

  // 1-based line number where the last record returned by Next() starts.
  int64_t line() const { return record_line_; }
  const std::string& path() const { return path_; }

 private:
  CsvReader(std::string path, char delimiter, void* gz);
  absl::StatusOr<int> GetChar();  // next byte or -1 at EOF

  std::string path_;
  char delimiter_;
  void* gz_;  // gzFile
  std::vector<char> buffer_;
  size_t pos_ = 0;
  size_t size_ = 0;
  bool eof_ = false;
  int64_t line_ = 1;
  int64_t record_line_ = 0;
  bool first_byte_ = true;
};

// Reads a whole delimited file: the header and every record. Convenience for small files (plate
// maps); INVALID_ARGUMENT when a record's field count differs from the header's, naming the line.
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int64_t> lines;  // 1-based source line of each row
  // Column index of `name` in the header, or -1.
  int Column(absl::string_view name) const;
};
absl::StatusOr<CsvTable> ReadCsvTable(const std::string& path, char delimiter = ',');

// One record as text (no line end), quoting as described above.
std::string FormatCsvRecord(const std::vector<std::string>& fields, char delimiter = ',');

class CsvWriter {
 public:
  static absl::StatusOr<std::unique_ptr<CsvWriter>> Open(const std::string& path,
                                                         char delimiter = ',');
  ~CsvWriter();
  CsvWriter(const CsvWriter&) = delete;
  CsvWriter& operator=(const CsvWriter&) = delete;

  absl::Status Write(const std::vector<std::string>& fields);
  // Appends already formatted text verbatim (callers that format numbers themselves).
  absl::Status WriteRaw(absl::string_view text);
  // Flushes, fsyncs and renames into place. Must be called once; the writer is unusable after.
  absl::Status Close();

 private:
  CsvWriter(std::string path, std::string tmp_path, char delimiter, bool gzip, void* handle);
  absl::Status Flush();

  std::string path_;
  std::string tmp_path_;
  char delimiter_;
  bool gzip_;
  void* handle_;  // gzFile when gzip_, else FILE*
  std::string pending_;
  bool closed_ = false;
};

bool EndsWithGz(absl::string_view path);

}  // namespace cellflux::io

#endif  // CELLFLUX_COMMON_IO_CSV_H_

// The server's control bank (`cellflux-server --controls DATA_DIR`, DESIGN.md §4): the DMSO
// wells of a prepared dataset (common/data/manifest.h), one entry per (plate, well, site), each
// with the centre crop the model was evaluated on and an L1000 control profile, so `control.ref`
// requests need no image upload. The model backend encodes every entry once at start-up and keeps
// only the latents (model_backend.cc); this reader hands out the raw inputs one at a time so the
// pixels of a large bank never sit in memory together.
//
//   ControlBankReader::Options o;  o.dir = "out/demo/data";  o.image_size = 64;
//   o.channel_names = info.channel_names;  o.gene_ids = info.gene_ids;
//   CF_ASSIGN_OR_RETURN(auto reader, ControlBankReader::Open(o));
//   for (size_t i = 0; i < reader->size(); ++i) { CF_ASSIGN_OR_RETURN(BankControl c, reader->Read(i)); … }
//
// Expression: the bank well's images come from a Cell Painting plate, its expression from the
// L1000 plate that plate's treatments were paired with most often in the manifest (ties: the
// smallest name; a CP plate without pairs uses the L1000 plate with most DMSO rows). Of that
// plate's DMSO rows one is chosen by a stable hash of (plate, well, site), so the same bank entry
// always starts from the same profile, on every build and restart — as in training, where the
// control's profile is one DMSO row of the paired L1000 plate.
#ifndef CELLFLUX_SERVER_CONTROL_BANK_H_
#define CELLFLUX_SERVER_CONTROL_BANK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/model_info.h"

namespace cellflux::data {
struct Manifest;
}

namespace cellflux::server {

// One bank entry's model inputs.
struct BankControl {
  ControlKey key;
  std::string l1000_plate;  // where the expression row came from
  int64_t l1000_row = -1;   // row of expression.f32; -1 for image-only models
  ControlInput input;  // pixels [C, S, S] (model channel order), raw expression (model gene order)
};

class ControlBankReader {
 public:
  struct Options {
    std::string dir;     // prepared dataset directory
    int image_size = 0;  // S of the model
    std::vector<std::string>
        channel_names;  // model channel order (a permutation of DNA RNA ER AGP Mito)
    std::vector<std::string> gene_ids;  // model gene order; empty = image-only model
    int64_t max_controls = 0;           // 0 = every DMSO site; else the first N keys in order
  };

  // Reads the manifest (NOT_FOUND / INVALID_ARGUMENT naming the file), maps the model's channels
  // and genes onto it (INVALID_ARGUMENT naming the first channel / probe the data lacks) and
  // FAILED_PRECONDITION when the dataset has no DMSO site, or no DMSO L1000 row for a gene model.
  static absl::StatusOr<std::unique_ptr<ControlBankReader>> Open(const Options& options);
  ~ControlBankReader();

  size_t size() const { return entries_.size(); }
  // Sorted, one per entry.
  std::vector<ControlKey> keys() const;

  // Entry i: its five TIFFs read and centre-cropped to S × S (INVALID_ARGUMENT naming the site when
  // it is smaller), its expression row in model gene order (INVALID_ARGUMENT on NaN/Inf).
  absl::StatusOr<BankControl> Read(size_t i) const;

 private:
  struct Entry {
    ControlKey key;
    int site_id = -1;
    std::string l1000_plate;
    int64_t l1000_row = -1;
  };
  ControlBankReader() = default;

  Options options_;
  std::shared_ptr<const data::Manifest> manifest_;
  std::vector<int> channel_of_;   // model channel m → canonical channel
  std::vector<int> gene_column_;  // model gene g → column of expression.f32
  std::vector<Entry> entries_;    // sorted by key
};

// FNV-1a 64 of `text`: stable across builds and platforms (std::hash is not).
uint64_t StableHash(const std::string& text);

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_CONTROL_BANK_H_

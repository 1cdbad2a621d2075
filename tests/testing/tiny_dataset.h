// A small synthetic prepared dataset for server and trainer tests: `cellflux-tool synth` output (1
// CP plate, 96×96 sites, 2 sites per well) run through PrepareDataset, so the control bank reads
// exactly what `cellflux-train prepare` writes for real data.
#ifndef CELLFLUX_TESTS_TESTING_TINY_DATASET_H_
#define CELLFLUX_TESTS_TESTING_TINY_DATASET_H_

#include <unistd.h>

#include <string>

#include "absl/status/statusor.h"
#include "common/data/prepare.h"
#include "common/data/synth.h"
#include "common/util/status_macros.h"

namespace cellflux::testing {

// TempDir()/name-<pid>: CTest runs every TEST of one executable as its own process, in parallel,
// so a suite-wide fixture directory must not be shared between those processes (a fixed name let
// one test's set-up delete another's dataset mid-run in CI).
inline std::string UniqueTempDir(const std::string& temp_dir, const std::string& name) {
  return temp_dir + "/" + name + "-" + std::to_string(::getpid());
}

// Writes synth plates under root/synth and the prepared dataset under root/prepared; returns the
// prepared directory.
inline absl::StatusOr<std::string> MakeTinyPreparedDataset(const std::string& root) {
  SynthOptions s;
  s.plates = 1;
  s.compounds = 4;
  s.image_width = 96;
  s.image_height = 96;
  s.sites = 2;
  s.wells_per_plate = 20;
  s.min_dmso_wells = 4;
  s.l1000_plates = 2;
  s.l1000_replicates = 2;
  s.l1000_dmso_per_plate = 3;
  s.seed = 9;
  CF_RETURN_IF_ERROR(WriteSynthDataset(s, root + "/synth").status());
  data::PrepareOptions p;
  p.images_dir = root + "/synth/images";
  p.platemaps_dir = root + "/synth/platemaps";
  p.l1000_path = root + "/synth/l1000/replicate_level_l1k.csv";
  p.out_dir = root + "/prepared";
  p.test_perturbations = 1;
  p.val_fraction = 0.0;
  p.seed = 0;
  CF_RETURN_IF_ERROR(data::PrepareDataset(p).status());
  return p.out_dir;
}

}  // namespace cellflux::testing

#endif  // CELLFLUX_TESTS_TESTING_TINY_DATASET_H_

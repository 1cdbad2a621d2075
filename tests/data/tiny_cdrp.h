// The tiny CDRP layout the dataset and loader tests share: CP plates P1, P2 (plate map M1: A01,
// A02 DMSO; B01.. compounds C01.. at 5 mM, key Cnn_10.0), two sites per well with pixels chosen by
// the caller; L1000 plates L1, L2 with two DMSO rows and one replicate per compound (row r has
// values 0.5r, 1 + r², −0.25r, 2 — the first `genes` of them); then `cellflux-train prepare`
// (3 test perturbations, seed 5). With 12 compounds: 3 test, 1 val, 8 train → 16 train pairs.
#ifndef CELLFLUX_TESTS_DATA_TINY_CDRP_H_
#define CELLFLUX_TESTS_DATA_TINY_CDRP_H_

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/data/bbbc047.h"
#include "common/data/manifest.h"
#include "common/data/prepare.h"
#include "common/io/l1000_csv.h"
#include "common/util/files.h"

namespace cellflux::data::testing {

inline std::string Compound(int c) { return absl::StrCat("C", c < 10 ? "0" : "", c); }
inline std::string Well(int c) { return absl::StrCat("B", c < 10 ? "0" : "", c); }

// Fills the 16-bit image of (plate, well, site, w) — w is the BBBC047 channel digit 1..5.
using TinyPixels = std::function<void(const std::string& plate, const std::string& well, int site,
                                      int w, cv::Mat* m)>;

// Writes the layout under `root` and prepares it into root/prepared; *manifest gets the result.
// Fails the calling test (ASSERT) on any error: callers check HasFatalFailure().
inline void WriteTinyCdrp(const std::string& root, int compounds, int height, int width, int genes,
                          const TinyPixels& pixels, std::shared_ptr<Manifest>* manifest) {
  ASSERT_TRUE(MakeDirs(root + "/platemaps/platemap").ok());
  ASSERT_TRUE(WriteFileAtomic(root + "/platemaps/barcode_platemap.csv",
                              "Plate_Map_Name,Assay_Plate_Barcode\nM1,P1\nM1,P2\n")
                  .ok());
  std::string map =
      "well_position\tbroad_sample\tmmoles_per_liter\tsolvent\nA01\t\t\tDMSO\nA02\t\t\tDMSO\n";
  std::vector<std::string> wells = {"A01", "A02"};
  for (int c = 1; c <= compounds; ++c) {
    absl::StrAppend(&map, Well(c), "\t", Compound(c), "\t5\tDMSO\n");
    wells.push_back(Well(c));
  }
  ASSERT_TRUE(WriteFileAtomic(root + "/platemaps/platemap/M1.txt", map).ok());
  for (const char* plate : {"P1", "P2"}) {
    ASSERT_TRUE(MakeDirs(root + "/images/" + plate).ok());
    for (const std::string& well : wells) {
      for (int site = 1; site <= 2; ++site) {
        for (int w = 1; w <= 5; ++w) {
          cv::Mat m(height, width, CV_16UC1);
          pixels(plate, well, site, w, &m);
          ASSERT_TRUE(cv::imwrite(
              absl::StrCat(root, "/images/", plate, "/", MakeImageFileName(well, site, w)), m));
        }
      }
    }
  }
  const std::vector<std::string> all_genes = {"1_at", "2_at", "3_at", "4_at"};
  auto writer = io::L1000CsvWriter::Open(
      root + "/l1k.csv", {"replicate_id", "pert_id", "pert_dose", "det_plate", "pert_sample_dose"},
      {all_genes.begin(), all_genes.begin() + genes});
  ASSERT_TRUE(writer.ok());
  int r = 0;
  auto add = [&](const std::string& pert, const std::string& key, const std::string& plate) {
    ++r;
    const std::vector<float> values = {0.5f * r, 1.0f + r * r, -0.25f * r, 2.0f};
    ASSERT_TRUE(
        (*writer)
            ->Write({absl::StrCat("rep", r), pert, pert == "DMSO" ? "-666" : "10", plate, key},
                    {values.begin(), values.begin() + genes})
            .ok());
  };
  for (const char* plate : {"L1", "L2"}) {
    add("DMSO", "DMSO", plate);
    add("DMSO", "DMSO", plate);
    for (int c = 1; c <= compounds; ++c) add(Compound(c), Compound(c) + "_10.0", plate);
  }
  ASSERT_TRUE((*writer)->Close().ok());

  PrepareOptions o;
  o.images_dir = root + "/images";
  o.platemaps_dir = root + "/platemaps";
  o.l1000_path = root + "/l1k.csv";
  o.out_dir = root + "/prepared";
  o.test_perturbations = 3;
  o.seed = 5;
  auto summary = PrepareDataset(o);
  ASSERT_TRUE(summary.ok()) << summary.status();
  auto m = LoadManifest(o.out_dir);
  ASSERT_TRUE(m.ok()) << m.status();
  *manifest = std::make_shared<Manifest>(*std::move(m));
}

}  // namespace cellflux::data::testing

#endif  // CELLFLUX_TESTS_DATA_TINY_CDRP_H_

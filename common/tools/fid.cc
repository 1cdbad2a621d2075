// cellflux-tool fid: FID and KID between two folders of RGB PNGs.
//
//   cellflux-tool fid --real DIR --fake DIR [--extractor inception-2015-12-05.pt]
//                     [--kid-subset-size 1000] [--json OUT] [--device cpu]
//
// With --extractor (TorchScript, uint8 NCHW in, 2048-d out) the scores are FID/KID. Without it the
// documented fallback extractor runs and the scores are printed as fd_fallback/kd_fallback.
#include <iostream>
#include <memory>

#include "absl/strings/str_format.h"
#include "common/metrics/image_folder.h"
#include "common/tools/command.h"
#include "common/torch/runtime.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"
#include "nlohmann/json.hpp"

namespace cellflux::tool {
namespace {

struct FidOptions {
  std::string real, fake, extractor, json, device = "cpu";
  int64_t kid_subset_size = 1000;
};

absl::Status RunFid(const FidOptions& o) {
  CF_ASSIGN_OR_RETURN(c10::Device device, ParseDevice(o.device));
  CF_ASSIGN_OR_RETURN(std::unique_ptr<FeatureExtractor> ex,
                      MakeFeatureExtractor(o.extractor, device));
  CF_ASSIGN_OR_RETURN(std::vector<std::string> real_files, ListPngs(o.real));
  CF_ASSIGN_OR_RETURN(std::vector<std::string> fake_files, ListPngs(o.fake));
  CF_ASSIGN_OR_RETURN(torch::Tensor real, FolderFeatures(real_files, *ex));
  CF_ASSIGN_OR_RETURN(torch::Tensor fake, FolderFeatures(fake_files, *ex));
  CF_ASSIGN_OR_RETURN(FolderScores s,
                      ScoreFeatures(real, fake, o.kid_subset_size, ex->is_inception(), ex->name()));
  const char* fd_name = s.inception ? "fid" : "fd_fallback";
  const char* kd_name = s.inception ? "kid_x100" : "kd_fallback_x100";
  std::cout << absl::StrFormat("%s %.4f\n%s %.4f +- %.4f\nreal %d fake %d extractor %s\n", fd_name,
                               s.fid, kd_name, s.kid, s.kid_std, s.real, s.fake, s.extractor);
  if (!o.json.empty()) {
    nlohmann::json j = {
        {fd_name, s.fid}, {kd_name, s.kid}, {std::string(kd_name) + "_std", s.kid_std},
        {"real", s.real}, {"fake", s.fake}, {"extractor", s.extractor}};
    CF_RETURN_IF_ERROR(WriteFileAtomic(o.json, j.dump(2)));
  }
  return absl::OkStatus();
}

RunFn SetupFid(CLI::App* app) {
  auto o = std::make_shared<FidOptions>();
  app->add_option("--real", o->real, "folder of real RGB PNGs")->required();
  app->add_option("--fake", o->fake, "folder of generated RGB PNGs")->required();
  app->add_option(
      "--extractor", o->extractor,
      "TorchScript Inception (e.g. NVlabs inception-2015-12-05.pt); omitted = fallback");
  app->add_option("--kid-subset-size", o->kid_subset_size, "KID subset size")
      ->capture_default_str();
  app->add_option("--json", o->json, "also write the scores as JSON");
  app->add_option("--device", o->device, "cpu | cuda | cuda:N")->capture_default_str();
  return [o]() -> int { return ReportStatus("fid", RunFid(*o)); };
}

}  // namespace

CF_TOOL_COMMAND(fid, "FID and KID between two folders of RGB PNGs", SetupFid);

}  // namespace cellflux::tool

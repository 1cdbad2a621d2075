// cellflux-tool fingerprint: a compound's parent structure, canonical SMILES and Morgan
// fingerprint bits (common/chem/chem.h), as the model's structure encoder sees them.
//
//   cellflux-tool fingerprint --smiles 'CN(C)C(=N)N=C(N)N.Cl' [--radius 2] [--bits 2048] [--json]
//   cellflux-tool fingerprint --smiles-file compounds.txt --json     # one SMILES per line
//
// Text output: one line per SMILES, "<canonical parent SMILES>\t<scaffold>\t<bit,bit,...>".
// JSON: {"smiles", "canonical_smiles", "scaffold", "bits": [...]} per SMILES (an array for
// --smiles-file; an invalid SMILES there gives {"smiles", "error"}). Exit 0 when every SMILES
// parsed, 2 when one did not (its error, naming the SMILES and RDKit's reason, on stderr).
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/tools/command.h"
#include "nlohmann/json.hpp"
#ifdef CELLFLUX_WITH_RDKIT
#include "common/chem/chem.h"
#endif

namespace cellflux::tool {
namespace {

struct FingerprintFlags {
  std::string smiles;
  std::string smiles_file;
  int radius = 2;
  int bits = 2048;
  bool json = false;
};

int RunFingerprint(const FingerprintFlags& f) {
#ifndef CELLFLUX_WITH_RDKIT
  (void)f;
  return ReportStatus("fingerprint",
                      absl::FailedPreconditionError("this cellflux-tool was built without RDKit "
                                                    "(install librdkit-dev and reconfigure)"));
#else
  std::vector<std::string> inputs;
  if (!f.smiles.empty() == !f.smiles_file.empty()) {
    return ReportStatus("fingerprint", absl::InvalidArgumentError(
                                           "give exactly one of --smiles and --smiles-file"));
  }
  if (!f.smiles.empty()) {
    inputs.push_back(f.smiles);
  } else {
    std::ifstream in(f.smiles_file);
    if (!in) {
      return ReportStatus("fingerprint",
                          absl::NotFoundError("--smiles-file " + f.smiles_file + ": cannot open"));
    }
    for (std::string line; std::getline(in, line);) {
      const std::string s(absl::StripAsciiWhitespace(line));
      if (!s.empty() && s[0] != '#') inputs.push_back(s);
    }
  }
  int rc = 0;
  nlohmann::json array = nlohmann::json::array();
  for (const std::string& smiles : inputs) {
    absl::StatusOr<chem::Structure> s = chem::ParseStructure(smiles, f.radius, f.bits);
    if (!s.ok()) {
      rc = ReportStatus("fingerprint", s.status());
      if (f.json)
        array.push_back({{"smiles", smiles}, {"error", std::string(s.status().message())}});
      continue;
    }
    if (f.json) {
      array.push_back({{"smiles", s->smiles},
                       {"canonical_smiles", s->canonical_smiles},
                       {"scaffold", s->scaffold},
                       {"bits", s->bits}});
    } else {
      std::cout << s->canonical_smiles << "\t" << s->scaffold << "\t" << absl::StrJoin(s->bits, ",")
                << "\n";
    }
  }
  if (f.json) {
    if (f.smiles_file.empty() && array.size() == 1) {
      std::cout << array[0].dump() << "\n";
    } else {
      std::cout << array.dump() << "\n";
    }
  }
  return rc;
#endif
}

}  // namespace

CF_TOOL_COMMAND(fingerprint,
                "Parent structure, canonical SMILES and Morgan fingerprint bits of a compound",
                ([](CLI::App* app) -> RunFn {
                  auto f = std::make_shared<FingerprintFlags>();
                  app->add_option("--smiles", f->smiles, "one SMILES (salts are dropped)");
                  app->add_option("--smiles-file", f->smiles_file,
                                  "a file with one SMILES per line ('#' comments)");
                  app->add_option("--radius", f->radius, "Morgan radius")
                      ->check(CLI::Range(0, 8))
                      ->capture_default_str();
                  app->add_option("--bits", f->bits, "fingerprint length")
                      ->check(CLI::Range(1, 1 << 20))
                      ->capture_default_str();
                  app->add_flag("--json", f->json, "JSON instead of tab-separated text");
                  return [f]() { return RunFingerprint(*f); };
                }));

}  // namespace cellflux::tool

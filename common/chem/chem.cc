#include "common/chem/chem.h"

#include <DataStructs/ExplicitBitVect.h>
#include <GraphMol/ChemTransforms/ChemTransforms.h>
#include <GraphMol/Fingerprints/MorganFingerprints.h>
#include <GraphMol/MolStandardize/Fragment.h>
#include <GraphMol/ROMol.h>
#include <GraphMol/SmilesParse/SmilesParse.h>
#include <GraphMol/SmilesParse/SmilesWrite.h>
#include <RDGeneral/RDLog.h>

#include <memory>
#include <mutex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace cellflux::chem {
namespace {

std::string Shorten(const std::string& s) { return s.size() <= 64 ? s : s.substr(0, 64) + "…"; }

// RDKit reports parse and sanitization problems on its error log; capture them per call.
std::mutex& LogMutex() {
  static std::mutex mu;
  return mu;
}

absl::Status Invalid(const std::string& smiles, const std::string& reason) {
  // RDKit's first line says what is wrong ("[12:00:00] SMILES Parse Error: syntax error while
  // parsing: <smiles>"); drop the timestamp and never echo more than 64 characters of the input.
  std::string why(absl::StripAsciiWhitespace(reason.substr(0, reason.find('\n'))));
  if (!why.empty() && why[0] == '[' && why.find("] ") != std::string::npos) {
    why = why.substr(why.find("] ") + 2);
  }
  why = absl::StrReplaceAll(why, {{smiles, Shorten(smiles)}});
  if (why.size() > 300) why = why.substr(0, 300) + "…";
  return absl::InvalidArgumentError(absl::StrCat(
      "SMILES '", Shorten(smiles), "': ", why.empty() ? "RDKit cannot parse it" : why));
}

}  // namespace

absl::StatusOr<Structure> ParseStructure(const std::string& smiles, int radius, int num_bits) {
  if (absl::StripAsciiWhitespace(smiles).empty()) {
    return absl::InvalidArgumentError("SMILES is empty");
  }
  if (radius < 0 || radius > 8 || num_bits < 1 || num_bits > (1 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("Morgan fingerprint radius ", radius, " / bits ",
                                                   num_bits,
                                                   " out of range (radius 0..8, bits 1..2^20)"));
  }
  std::unique_ptr<RDKit::ROMol> mol;
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(LogMutex());
    static std::once_flag init;
    std::call_once(init, [] { RDLog::InitLogs(); });
    // Point RDKit's error and warning logs at a string for this call (not stderr).
    std::ostringstream log;
    std::ostream* error_dest = rdErrorLog ? rdErrorLog->dp_dest : nullptr;
    std::ostream* warning_dest = rdWarningLog ? rdWarningLog->dp_dest : nullptr;
    if (rdErrorLog) rdErrorLog->dp_dest = &log;
    if (rdWarningLog) rdWarningLog->dp_dest = &log;
    try {
      mol.reset(RDKit::SmilesToMol(smiles));
    } catch (const std::exception& e) {
      log << e.what();
    }
    if (rdErrorLog) rdErrorLog->dp_dest = error_dest;
    if (rdWarningLog) rdWarningLog->dp_dest = warning_dest;
    reason = log.str();
  }
  if (mol == nullptr) return Invalid(smiles, reason);

  Structure s;
  s.smiles = smiles;
  s.num_bits = num_bits;
  try {
    RDKit::MolStandardize::LargestFragmentChooser chooser;
    std::unique_ptr<RDKit::ROMol> parent(chooser.choose(*mol));
    if (parent == nullptr) return Invalid(smiles, "no fragment to keep");
    s.canonical_smiles = RDKit::MolToSmiles(*parent);
    std::unique_ptr<RDKit::ROMol> scaffold(RDKit::MurckoDecompose(*parent));
    if (scaffold != nullptr && scaffold->getNumAtoms() > 0) {
      s.scaffold = RDKit::MolToSmiles(*scaffold);
    }
    std::unique_ptr<ExplicitBitVect> fp(RDKit::MorganFingerprints::getFingerprintAsBitVect(
        *parent, static_cast<unsigned int>(radius), static_cast<unsigned int>(num_bits)));
    std::vector<int> on;
    fp->getOnBits(on);
    s.bits = std::move(on);
  } catch (const std::exception& e) {
    return Invalid(smiles, e.what());
  }
  return s;
}

double Tanimoto(const std::vector<int>& a, const std::vector<int>& b) {
  size_t i = 0, j = 0, both = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] == b[j]) {
      ++both;
      ++i;
      ++j;
    } else if (a[i] < b[j]) {
      ++i;
    } else {
      ++j;
    }
  }
  const size_t either = a.size() + b.size() - both;
  return either == 0 ? 0.0 : static_cast<double>(both) / static_cast<double>(either);
}

}  // namespace cellflux::chem

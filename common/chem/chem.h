// Chemistry on Debian's RDKit (librdkit-dev, RDKit 2022.09), LibTorch-free: a compound's parent
// structure, its canonical SMILES, its Morgan fingerprint and its Bemis–Murcko scaffold.
//
//   CF_ASSIGN_OR_RETURN(Structure s, ParseStructure("CN(C)C(=N)N=C(N)N.Cl"));   // metformin HCl
//   s.canonical_smiles == "CN(C)C(=N)N=C(N)N";  s.bits = {...set bit indices, ascending...}
//   double sim = Tanimoto(s.bits, other.bits);
//
// Parent: RDKit's MolStandardize::LargestFragmentChooser with its default options (the fragment
// with the most atoms, hydrogens included; salts and solvents dropped), exactly as the Python
// rdMolStandardize.LargestFragmentChooser().choose(mol) picks it. Fingerprint: Morgan (ECFP-like)
// radius 2, 2048 bits, RDKit defaults (bond types on, no chirality, no feature invariants) — the
// bits of Python's AllChem.GetMorganFingerprintAsBitVect(parent, 2, nBits=2048); the golden test
// (tests/chem) checks that on real drug SMILES. Scaffold: RDKit's MurckoDecompose of the parent as
// canonical SMILES ("" for acyclic compounds).
//
// Errors: INVALID_ARGUMENT naming the SMILES (the first 64 characters) and RDKit's reason (the
// parse or sanitization message it logs) for empty, unparsable or chemically invalid SMILES.
// Thread-safe (RDKit's error log is captured under a mutex).
#ifndef CELLFLUX_COMMON_CHEM_CHEM_H_
#define CELLFLUX_COMMON_CHEM_CHEM_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cellflux::chem {

inline constexpr int kDefaultRadius = 2;
inline constexpr int kDefaultBits = 2048;

struct Structure {
  std::string smiles;            // as given
  std::string canonical_smiles;  // RDKit canonical (isomeric) SMILES of the parent
  std::string scaffold;          // Bemis–Murcko scaffold of the parent, canonical; "" if acyclic
  int num_bits = kDefaultBits;   // fingerprint length
  std::vector<int> bits;         // set bits of the parent's Morgan fingerprint, ascending
};

absl::StatusOr<Structure> ParseStructure(const std::string& smiles, int radius = kDefaultRadius,
                                         int num_bits = kDefaultBits);

// |a ∩ b| / |a ∪ b| over sorted bit-index lists; 0 when both are empty.
double Tanimoto(const std::vector<int>& a, const std::vector<int>& b);

}  // namespace cellflux::chem

#endif  // CELLFLUX_COMMON_CHEM_CHEM_H_

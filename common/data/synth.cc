#include "common/data/synth.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/data/landmark_genes.h"
#include "common/data/synth_cells.h"
#include "common/util/files.h"
#include "common/util/status_macros.h"

namespace cellflux {
namespace {

constexpr int kWellsPerPlate384 = 384;
constexpr double kTopDose = 5.0;          // mmoles_per_liter of the strongest CP dose
constexpr double kExpressionGain = 1.5;   // expression shift per unit effect, in gene sd units
constexpr double kLoadingDensity = 0.35;  // fraction of genes each latent dimension moves
// Doses chosen so that 2 * m has at most two decimals (the matching key is exact).
constexpr double kHighDoses[] = {5.0, 3.33, 2.5};
constexpr double kLowDoses[] = {1.25, 0.625};

// Seeds of the independent random streams (world model, each plate, each site, compound
// structures and fragment effect vectors).
enum Stream : uint64_t { kWorld = 1, kCpLayout = 2, kL1000 = 3, kSites = 4, kStructures = 5 };

struct Treatment {
  int compound;
  double mmoles_per_liter;
  double effect;  // s_c * dose factor
  MorphologyDelta morph;
  std::vector<double> shift;  // expression shift per gene, expression units
  std::string key;            // pert_sample_dose
};

struct Compound {
  std::string broad_sample, pert_id, name, smiles;
  int scaffold, variant;                  // kScaffolds[scaffold].variants[variant]
  std::vector<int> substituents;          // kSubstituents index per attachment point
  std::vector<double> attachment_weight;  // w_i per attachment point
  std::vector<double> z;
  double strength;
};

struct Well {
  int index;      // 0..383, row-major
  int treatment;  // -1 = DMSO
};

struct CpPlate {
  std::string barcode, map_name;
  std::array<double, kNumChannels> gains;
  std::vector<Well> wells;  // sorted by index
};

struct L1000Row {
  int well, treatment;  // treatment -1 = DMSO
};

struct L1000Plate {
  std::string det_plate;
  std::vector<double> offset;  // per gene
  std::vector<L1000Row> rows;  // sorted by well
};

struct World {
  std::vector<double> gene_mean, gene_sd;
  std::vector<std::vector<double>> w;                // [genes][k]
  std::vector<std::vector<double>> m;                // [morph params][k]
  std::vector<std::vector<double>> scaffold_vec;     // [kNumScaffolds][k], unit
  std::vector<std::vector<double>> substituent_vec;  // [kNumSubstituents][k], unit
  std::vector<Compound> compounds;
  std::vector<Treatment> treatments;
  std::vector<CpPlate> cp_plates;
  std::vector<L1000Plate> l1000_plates;
};

std::string WellName(int index, bool upper) {
  const char row = static_cast<char>((upper ? 'A' : 'a') + index / 24);
  return absl::StrFormat("%c%02d", row, index % 24 + 1);
}

// Shortest decimal with at least one fractional digit, like Python's str(float) for these values.
std::string FloatString(double x, int max_decimals) {
  std::string s = absl::StrFormat("%.*f", max_decimals, x);
  while (s.size() > 2 && s.back() == '0' && s[s.size() - 2] != '.') s.pop_back();
  return s;
}

std::vector<int> Shuffled(int n, SynthRng& rng) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  for (int i = n - 1; i > 0; --i) std::swap(v[i], v[rng.UniformInt(i + 1)]);
  return v;
}

// The fragment library. Compound structures are a scaffold template (a ring system) with an acyclic
// substituent at each attachment point of one of its variants; every attachment atom is an
// aromatic or aliphatic carbon with a hydrogen to replace, so every combination is a valid
// molecule, and since substituents hold no ring, its Bemis–Murcko scaffold is the template's ring
// system. Variant patterns mark each attachment point with a branch "(*)", '*' standing for the
// substituent's SMILES. They are chosen so that no symmetry of the ring system permutes a
// variant's points (para-benzene, the one exception, is flagged and its substituents sorted) and
// no two variants of a template are related by a symmetry or (benzimidazole) by the N–H
// tautomerism: distinct (template, variant, substituents) then give distinct molecules, hence
// distinct canonical SMILES, without RDKit.
struct Variant {
  const char* pattern;
  bool first_two_equivalent;  // a symmetry swaps points 0 and 1: substituents stored sorted
};

struct ScaffoldTemplate {
  const char* name;
  const char* smiles;   // the ring system alone
  Variant variants[3];  // 1, 2 and 3 attachment points
};

constexpr ScaffoldTemplate kScaffolds[] = {
    {"benzene",
     "c1ccccc1",
     {{"c1ccc(*)cc1", false}, {"c1(*)ccc(*)cc1", true}, {"c1(*)c(*)cc(*)cc1", false}}},
    {"pyridine",
     "c1ccncc1",
     {{"c1(*)ccncc1", false}, {"c1(*)cc(*)ncc1", false}, {"c1(*)c(*)cnc(*)c1", false}}},
    {"thiophene",
     "c1ccsc1",
     {{"c1cc(*)sc1", false}, {"c1c(*)c(*)sc1", false}, {"c1c(*)c(*)sc1(*)", false}}},
    {"phenylpiperidine",
     "c1ccc(cc1)N1CCCCC1",
     {{"c1(*)ccc(cc1)N1CCCCC1", false},
      {"c1(*)ccc(cc1)N1CCC(*)CC1", false},
      {"c1(*)c(*)cc(cc1)N1CCC(*)CC1", false}}},
    {"indole",
     "c1ccc2[nH]ccc2c1",
     {{"c1ccc2[nH]cc(*)c2c1", false},
      {"c1c(*)cc2[nH]cc(*)c2c1", false},
      {"c1c(*)cc2[nH]c(*)c(*)c2c1", false}}},
    {"benzimidazole",
     "c1ccc2[nH]cnc2c1",
     {{"c1ccc2[nH]c(*)nc2c1", false},
      {"c1c(*)cc2[nH]c(*)nc2c1", false},
      {"c1c(*)c(*)c2[nH]c(*)nc2c1", false}}},
    {"quinoline",
     "c1ccc2ncccc2c1",
     {{"c1ccc2ncc(*)cc2c1", false},
      {"c1(*)ccc2ncc(*)cc2c1", false},
      {"c1c(*)cc2nc(*)cc(*)c2c1", false}}},
    {"naphthalene",
     "c1ccc2ccccc2c1",
     {{"c1c(*)cc2ccccc2c1", false},
      {"c1c(*)cc2c(*)cccc2c1", false},
      {"c1c(*)cc2c(*)cccc2c1(*)", false}}},
};

struct Substituent {
  const char* name;
  const char* smiles;  // acyclic, bonded through its first atom
};

constexpr Substituent kSubstituents[] = {
    {"methyl", "C"},
    {"ethyl", "CC"},
    {"propyl", "CCC"},
    {"isopropyl", "C(C)C"},
    {"fluoro", "F"},
    {"chloro", "Cl"},
    {"bromo", "Br"},
    {"trifluoromethyl", "C(F)(F)F"},
    {"hydroxy", "O"},
    {"methoxy", "OC"},
    {"ethoxy", "OCC"},
    {"trifluoromethoxy", "OC(F)(F)F"},
    {"hydroxymethyl", "CO"},
    {"amino", "N"},
    {"dimethylamino", "N(C)C"},
    {"acetamido", "NC(C)=O"},
    {"carboxamide", "C(N)=O"},
    {"carboxy", "C(=O)O"},
    {"methoxycarbonyl", "C(=O)OC"},
    {"acetyl", "C(C)=O"},
    {"cyano", "C#N"},
    {"sulfamoyl", "S(N)(=O)=O"},
    {"methylsulfonyl", "S(C)(=O)=O"},
    {"methylthio", "SC"},
};

constexpr int kNumScaffolds = sizeof(kScaffolds) / sizeof(kScaffolds[0]);
constexpr int kNumSubstituents = sizeof(kSubstituents) / sizeof(kSubstituents[0]);
// Probability of 1 and of 1 or 2 attachment points.
constexpr double kOnePointP = 0.25, kUpToTwoPointsP = 0.65;
// z_c = normalize(kScaffoldWeight u_scaffold + kSubstituentWeight sum_i w_i u_substituent_i +
// kSpecificWeight e_c), u and e_c random unit vectors, sum_i w_i^2 = 1 with w_i proportional to
// kAttachmentWeight[i] (equal for equivalent points). Scaffold and substituents carry about equal
// parts of the variance, the compound-specific part about 4 %.
constexpr double kScaffoldWeight = 1.0, kSubstituentWeight = 1.0, kSpecificWeight = 0.3;
constexpr double kAttachmentWeight[] = {1.0, 0.75, 0.6};

int NumPoints(const Variant& v) {
  return static_cast<int>(std::count(v.pattern, v.pattern + std::strlen(v.pattern), '*'));
}

std::string AssembleSmiles(const Variant& v, const std::vector<int>& substituents) {
  std::string s;
  size_t next = 0;
  for (const char* p = v.pattern; *p != '\0'; ++p) {
    if (*p == '*') {
      s += kSubstituents[substituents[next++]].smiles;
    } else {
      s += *p;
    }
  }
  return s;
}

// Normalized attachment weights of a variant's points (sum of squares 1).
std::vector<double> AttachmentWeights(const Variant& v) {
  std::vector<double> w;
  for (int i = 0; i < NumPoints(v); ++i)
    w.push_back(kAttachmentWeight[v.first_two_equivalent && i == 1 ? 0 : i]);
  double norm = 0;
  for (double x : w) norm += x * x;
  for (double& x : w) x /= std::sqrt(norm);
  return w;
}

// Number of distinct structures the library can make.
int64_t FragmentCapacity() {
  int64_t total = 0;
  for (const ScaffoldTemplate& t : kScaffolds) {
    for (const Variant& v : t.variants) {
      int64_t n = 1;
      for (int i = 0; i < NumPoints(v); ++i) n *= kNumSubstituents;
      if (v.first_two_equivalent) n = n / kNumSubstituents * (kNumSubstituents + 1) / 2;
      total += n;
    }
  }
  return total;
}

std::vector<double> RandomUnitVector(int k, SynthRng& rng) {
  std::vector<double> v(k);
  double norm = 0;
  do {
    norm = 0;
    for (double& x : v) {
      x = rng.Normal();
      norm += x * x;
    }
  } while (norm < 1e-12);
  for (double& x : v) x /= std::sqrt(norm);
  return v;
}

std::string Uuid(uint64_t seed) {
  SynthRng rng(seed);
  const uint64_t a = rng.Next(), b = rng.Next();
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", a >> 32, (a >> 16) & 0xFFFF, a & 0xFFFF,
                         b >> 48, b & 0xFFFFFFFFFFFFULL);
}

// Key of a structure: scaffold, variant, substituents.
using StructureKey = std::vector<int>;

StructureKey KeyOf(const Compound& c) {
  StructureKey key = {c.scaffold, c.variant};
  key.insert(key.end(), c.substituents.begin(), c.substituents.end());
  return key;
}

// Draws a structure not in `used` (and adds it): a random template, 1-3 attachment points, random
// substituents; after many collisions (a library nearly used up) the first free structure in
// enumeration order. Validate() keeps the compound count within FragmentCapacity().
void DrawStructure(SynthRng& rng, std::set<StructureKey>& used, Compound& c) {
  auto canonical = [&c]() {
    const Variant& v = kScaffolds[c.scaffold].variants[c.variant];
    if (v.first_two_equivalent && c.substituents[0] > c.substituents[1])
      std::swap(c.substituents[0], c.substituents[1]);
  };
  for (int attempt = 0; attempt < 1000; ++attempt) {
    c.scaffold = rng.UniformInt(kNumScaffolds);
    const double u = rng.Uniform();
    c.variant = u < kOnePointP ? 0 : u < kUpToTwoPointsP ? 1 : 2;
    c.substituents.resize(NumPoints(kScaffolds[c.scaffold].variants[c.variant]));
    for (int& s : c.substituents) s = rng.UniformInt(kNumSubstituents);
    canonical();
    if (used.insert(KeyOf(c)).second) return;
  }
  for (c.scaffold = 0; c.scaffold < kNumScaffolds; ++c.scaffold) {
    for (c.variant = 0; c.variant < 3; ++c.variant) {
      const int points = NumPoints(kScaffolds[c.scaffold].variants[c.variant]);
      int64_t combos = 1;
      for (int i = 0; i < points; ++i) combos *= kNumSubstituents;
      for (int64_t n = 0; n < combos; ++n) {
        c.substituents.resize(points);
        int64_t rest = n;
        for (int& s : c.substituents) {
          s = static_cast<int>(rest % kNumSubstituents);
          rest /= kNumSubstituents;
        }
        canonical();
        if (used.insert(KeyOf(c)).second) return;
      }
    }
  }
}

// `rng` is the world stream, `structure_rng` the structures' own (see below).
void BuildCompounds(const SynthOptions& o, SynthRng& rng, SynthRng& structure_rng, World& world) {
  const int genes = static_cast<int>(kNumLandmarkGenes);
  std::vector<int> ids;
  std::set<StructureKey> used;
  for (int c = 0; c < o.compounds; ++c) {
    Compound cp;
    int id;
    do {
      id = 10000000 + rng.UniformInt(90000000);
    } while (std::find(ids.begin(), ids.end(), id) != ids.end());
    ids.push_back(id);
    cp.pert_id = absl::StrFormat("BRD-K%08d", id);
    cp.broad_sample =
        absl::StrCat(cp.pert_id, "-001-0", 1 + rng.UniformInt(9), "-", rng.UniformInt(10));
    cp.name = absl::StrFormat("cfsyn-%03d", c + 1);
    // The world stream skips the draws of the former placeholder SMILES, and the compound-specific
    // part of z takes the draws of the former random z, so every other draw (ids, strengths, doses)
    // is as before: a seed's dataset changes only in its structures and effect directions, and the
    // tests and demo numbers calibrated on it stay comparable. Structures come from their own
    // stream.
    for (int i = 3 + rng.UniformInt(4); i > 0; --i) rng.Next();
    DrawStructure(structure_rng, used, cp);
    const Variant& variant = kScaffolds[cp.scaffold].variants[cp.variant];
    cp.smiles = AssembleSmiles(variant, cp.substituents);
    cp.attachment_weight = AttachmentWeights(variant);
    const std::vector<double> specific = RandomUnitVector(o.latent_dim, rng);
    cp.z.assign(o.latent_dim, 0.0);
    for (int k = 0; k < o.latent_dim; ++k) {
      cp.z[k] =
          kScaffoldWeight * world.scaffold_vec[cp.scaffold][k] + kSpecificWeight * specific[k];
      for (size_t i = 0; i < cp.substituents.size(); ++i) {
        cp.z[k] += kSubstituentWeight * cp.attachment_weight[i] *
                   world.substituent_vec[cp.substituents[i]][k];
      }
    }
    double norm = 0;
    for (double v : cp.z) norm += v * v;
    if (norm < 1e-12) {  // cancellation (practically never): the scaffold's direction
      cp.z = world.scaffold_vec[cp.scaffold];
      norm = 1.0;
    }
    for (double& v : cp.z) v /= std::sqrt(norm);
    // Strength stays compound-specific (not fragment-derived), distributed as before: analogues of
    // an active compound can be inactive, and the effect sizes the tests calibrate on are kept.
    cp.strength = rng.Uniform() < 0.25 ? 0.0 : rng.Uniform(0.3, 1.5);
    world.compounds.push_back(cp);
  }
  // Guarantee a null compound and a strong one, so truth-based scoring always has both ends.
  auto& cs = world.compounds;
  auto by_strength = [](const Compound& a, const Compound& b) { return a.strength < b.strength; };
  if (cs.size() >= 2) {
    std::min_element(cs.begin(), cs.end(), by_strength)->strength = 0.0;
    auto strongest = std::max_element(cs.begin(), cs.end(), by_strength);
    strongest->strength = std::max(strongest->strength, 1.2);
  }
  for (int c = 0; c < o.compounds; ++c) {
    std::vector<double> doses = {kHighDoses[rng.UniformInt(3)]};
    if (rng.Uniform() < 0.5) doses.push_back(kLowDoses[rng.UniformInt(2)]);
    for (double dose : doses) {
      Treatment t;
      t.compound = c;
      t.mmoles_per_liter = dose;
      t.effect = cs[c].strength * (dose / (dose + 1.0)) / (kTopDose / (kTopDose + 1.0));
      for (int j = 0; j < kNumMorphParams; ++j) {
        double mz = 0;
        for (int k = 0; k < o.latent_dim; ++k) mz += world.m[j][k] * cs[c].z[k];
        t.morph[j] = MorphParamMaxDelta(j) * std::tanh(t.effect * mz);
      }
      t.shift.resize(genes);
      for (int g = 0; g < genes; ++g) {
        double wz = 0;
        for (int k = 0; k < o.latent_dim; ++k) wz += world.w[g][k] * cs[c].z[k];
        t.shift[g] = world.gene_sd[g] * kExpressionGain * t.effect * wz;
      }
      t.key = absl::StrCat(cs[c].broad_sample, "_", PythonDoseString(2.0 * dose));
      world.treatments.push_back(std::move(t));
    }
  }
}

absl::Status BuildCpPlates(const SynthOptions& o, SynthRng& rng, World& world) {
  const int n_treat = static_cast<int>(world.treatments.size());
  const int slots = o.wells_per_plate - o.min_dmso_wells;
  const int reps = std::min(o.max_cp_replicates, o.plates * slots / std::max(1, n_treat));
  if (reps < 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "synth: %d treatments need %d treated wells for 2 replicates each, but %d plates x (%d "
        "wells - %d DMSO) give %d; raise --plates or --wells-per-plate",
        n_treat, 2 * n_treat, o.plates, o.wells_per_plate, o.min_dmso_wells, o.plates * slots));
  }
  std::vector<std::vector<int>> plate_treatments(o.plates);
  for (int t = 0; t < n_treat; ++t) {
    for (int r = 0; r < reps; ++r) {
      int p = (t + r) % o.plates;  // replicates on different plates where possible
      while (static_cast<int>(plate_treatments[p].size()) >= slots) p = (p + 1) % o.plates;
      plate_treatments[p].push_back(t);
    }
  }
  int barcode = 24000 + rng.UniformInt(1000);
  for (int p = 0; p < o.plates; ++p) {
    CpPlate plate;
    barcode += 1 + rng.UniformInt(5);
    plate.barcode = absl::StrCat(barcode);
    plate.map_name = absl::StrFormat("C-7161-01-LM6-%03d", p + 1);
    for (double& g : plate.gains) g = std::exp(0.08 * rng.Normal());
    std::vector<int> positions = Shuffled(kWellsPerPlate384, rng);
    positions.resize(o.wells_per_plate);
    for (int i = 0; i < o.wells_per_plate; ++i) {
      const int n_treated = static_cast<int>(plate_treatments[p].size());
      plate.wells.push_back({positions[i], i < n_treated ? plate_treatments[p][i] : -1});
    }
    std::sort(plate.wells.begin(), plate.wells.end(),
              [](const Well& a, const Well& b) { return a.index < b.index; });
    world.cp_plates.push_back(std::move(plate));
  }
  return absl::OkStatus();
}

void BuildL1000Plates(const SynthOptions& o, SynthRng& rng, World& world) {
  const int genes = static_cast<int>(kNumLandmarkGenes);
  for (int p = 0; p < o.l1000_plates; ++p) {
    L1000Plate plate;
    plate.det_plate = absl::StrFormat("CPC%03d_A549_6H_X%d_B3_DUO52HI53LO", 4 + p / 3, p % 3 + 1);
    for (int g = 0; g < genes; ++g) plate.offset.push_back(0.3 * world.gene_sd[g] * rng.Normal());
    world.l1000_plates.push_back(std::move(plate));
  }
  std::vector<std::vector<int>> plate_rows(o.l1000_plates);
  for (int p = 0; p < o.l1000_plates; ++p) plate_rows[p].assign(o.l1000_dmso_per_plate, -1);
  for (int t = 0; t < static_cast<int>(world.treatments.size()); ++t) {
    for (int r = 0; r < o.l1000_replicates; ++r) plate_rows[(t + r) % o.l1000_plates].push_back(t);
  }
  for (int p = 0; p < o.l1000_plates; ++p) {
    // More rows than a 384-well plate holds would repeat wells; then the replicate id gets a suffix.
    const std::vector<int> positions = Shuffled(kWellsPerPlate384, rng);
    for (size_t i = 0; i < plate_rows[p].size(); ++i) {
      world.l1000_plates[p].rows.push_back(
          {static_cast<int>(positions[i % kWellsPerPlate384] +
                            kWellsPerPlate384 * (i / kWellsPerPlate384)),
           plate_rows[p][i]});
    }
    std::sort(world.l1000_plates[p].rows.begin(), world.l1000_plates[p].rows.end(),
              [](const L1000Row& a, const L1000Row& b) { return a.well < b.well; });
  }
}

World BuildWorld(const SynthOptions& o) {
  World world;
  SynthRng rng(MixSeed(o.seed, kWorld));
  for (size_t g = 0; g < kNumLandmarkGenes; ++g) {
    world.gene_mean.push_back(rng.Uniform(4.5, 13.0));
    world.gene_sd.push_back(rng.Uniform(0.15, 0.6));
    std::vector<double> row(o.latent_dim);
    for (double& v : row) v = rng.Uniform() < kLoadingDensity ? rng.Normal() : 0.0;
    world.w.push_back(std::move(row));
  }
  for (int j = 0; j < kNumMorphParams; ++j) {
    std::vector<double> row(o.latent_dim);
    for (double& v : row) v = rng.Normal();
    world.m.push_back(std::move(row));
  }
  SynthRng structure_rng(MixSeed(o.seed, kStructures));
  for (int t = 0; t < kNumScaffolds; ++t)
    world.scaffold_vec.push_back(RandomUnitVector(o.latent_dim, structure_rng));
  for (int t = 0; t < kNumSubstituents; ++t)
    world.substituent_vec.push_back(RandomUnitVector(o.latent_dim, structure_rng));
  BuildCompounds(o, rng, structure_rng, world);
  return world;
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  return WriteFileAtomic(path, text);
}

absl::Status WritePlateMaps(const World& world, const std::string& dir) {
  CF_RETURN_IF_ERROR(MakeDirs(dir + "/platemap"));
  std::string csv = "Plate_Map_Name,Assay_Plate_Barcode\n";
  for (const CpPlate& plate : world.cp_plates) {
    absl::StrAppend(&csv, plate.map_name, ",", plate.barcode, "\n");
    std::string tsv = "well_position\tbroad_sample\tmmoles_per_liter\tsolvent\n";
    for (const Well& well : plate.wells) {
      if (well.treatment < 0) {
        absl::StrAppend(&tsv, WellName(well.index, true), "\t\t0\tDMSO\n");
      } else {
        const Treatment& t = world.treatments[well.treatment];
        absl::StrAppend(&tsv, WellName(well.index, true), "\t",
                        world.compounds[t.compound].broad_sample, "\t",
                        absl::StrFormat("%g", t.mmoles_per_liter), "\tDMSO\n");
      }
    }
    CF_RETURN_IF_ERROR(WriteText(absl::StrCat(dir, "/platemap/", plate.map_name, ".txt"), tsv));
  }
  return WriteText(dir + "/barcode_platemap.csv", csv);
}

absl::Status WriteL1000(const SynthOptions& o, const World& world, const std::string& dir,
                        int* n_rows) {
  CF_RETURN_IF_ERROR(MakeDirs(dir));
  SynthRng rng(MixSeed(o.seed, kL1000));
  std::string csv = "replicate_id,pert_id,pert_dose,det_plate,pert_sample_dose,CPD_NAME,CPD_SMILES";
  for (const LandmarkGene& gene : LandmarkGenes()) absl::StrAppend(&csv, ",", gene.probe_id);
  csv += "\n";
  char buf[32];
  for (const L1000Plate& plate : world.l1000_plates) {
    for (const L1000Row& row : plate.rows) {
      const std::string well = row.well < kWellsPerPlate384
                                   ? WellName(row.well, true)
                                   : absl::StrCat(WellName(row.well % kWellsPerPlate384, true), "_",
                                                  row.well / kWellsPerPlate384);
      absl::StrAppend(&csv, plate.det_plate, ":", well, ",");
      const Treatment* t = row.treatment < 0 ? nullptr : &world.treatments[row.treatment];
      if (t == nullptr) {
        absl::StrAppend(&csv, "DMSO,-666,", plate.det_plate, ",DMSO,DMSO,CS(C)=O");
      } else {
        const Compound& c = world.compounds[t->compound];
        absl::StrAppend(&csv, c.pert_id, ",", PythonDoseString(2.0 * t->mmoles_per_liter), ",",
                        plate.det_plate, ",", t->key, ",", c.name, ",", c.smiles);
      }
      for (size_t g = 0; g < kNumLandmarkGenes; ++g) {
        const double value = world.gene_mean[g] + plate.offset[g] + (t ? t->shift[g] : 0.0) +
                             world.gene_sd[g] * rng.Normal();
        std::snprintf(buf, sizeof(buf), ",%.4f", value);
        csv += buf;
      }
      csv += "\n";
      ++*n_rows;
    }
  }
  return WriteText(dir + "/replicate_level_l1k.csv", csv);
}

absl::Status WriteImages(const SynthOptions& o, const World& world, const std::string& dir,
                         int* n_images) {
  struct Job {
    int plate, well, site;
  };
  std::vector<Job> jobs;
  for (int p = 0; p < static_cast<int>(world.cp_plates.size()); ++p) {
    CF_RETURN_IF_ERROR(MakeDirs(absl::StrCat(dir, "/", world.cp_plates[p].barcode)));
    for (int w = 0; w < static_cast<int>(world.cp_plates[p].wells.size()); ++w)
      for (int s = 1; s <= o.sites; ++s) jobs.push_back({p, w, s});
  }
  // Each job owns its status slot, so workers share only the atomic cursor.
  std::vector<absl::Status> statuses(jobs.size());
  std::atomic<size_t> next{0};
  auto work = [&]() {
    SiteRenderOptions render;
    render.width = o.image_width;
    render.height = o.image_height;
    for (size_t j = next++; j < jobs.size(); j = next++) {
      const CpPlate& plate = world.cp_plates[jobs[j].plate];
      const Well& well = plate.wells[jobs[j].well];
      const MorphologyDelta delta =
          well.treatment < 0 ? MorphologyDelta{} : world.treatments[well.treatment].morph;
      const uint64_t site_seed = MixSeed(
          MixSeed(MixSeed(MixSeed(o.seed, kSites), jobs[j].plate), well.index), jobs[j].site);
      const auto channels = RenderSite(render, delta, plate.gains, site_seed);
      for (int ch = 0; ch < kNumChannels; ++ch) {
        const std::string path =
            absl::StrFormat("%s/%s/cdp2bioactives_%s_s%d_w%d%s.tif", dir, plate.barcode,
                            WellName(well.index, false), jobs[j].site, ChannelFileDigit(ch),
                            Uuid(MixSeed(site_seed, ch)));
        bool ok = false;
        try {
          ok = cv::imwrite(path, channels[ch], {cv::IMWRITE_TIFF_COMPRESSION, 1});
        } catch (const cv::Exception& e) {
          statuses[j] = absl::InternalError(absl::StrCat("synth: writing ", path, ": ", e.what()));
        }
        if (!ok && statuses[j].ok())
          statuses[j] = absl::InternalError(absl::StrCat("synth: could not write ", path));
        if (!statuses[j].ok()) break;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < o.threads; ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : statuses) CF_RETURN_IF_ERROR(s);
  *n_images = static_cast<int>(jobs.size()) * kNumChannels;
  return absl::OkStatus();
}

absl::Status WriteGroundTruth(const SynthOptions& o, const World& world, const std::string& path) {
  using Json = nlohmann::ordered_json;
  Json j;
  j["generator"] = "cellflux-tool synth";
  j["seed"] = o.seed;
  j["latent_dim"] = o.latent_dim;
  j["image_size"] = {o.image_width, o.image_height};
  j["sites"] = o.sites;
  j["channels"] = Json::array();
  for (int ch = 0; ch < kNumChannels; ++ch)
    j["channels"].push_back({{"name", ChannelName(ch)}, {"file_digit", ChannelFileDigit(ch)}});
  j["model"] = {
      {"dose_factor", "effect = strength * (m / (m + 1)) / (5 / 6), m = mmoles_per_liter"},
      {"morphology", "delta_j = max_delta_j * tanh(effect * (morphology_loadings z)_j)"},
      {"expression",
       "x_g = mean_g + plate_offset_g + sd_g * (expression_gain * effect * (expression_loadings "
       "z)_g + N(0,1))"},
      {"expression_gain", kExpressionGain},
      {"latent",
       "z = normalize(scaffold_weight * scaffold_vector + substituent_weight * sum_i "
       "attachment_weight_i * substituent_vector_i + specific_weight * specific_unit_vector), "
       "sum_i attachment_weight_i^2 = 1"},
      {"strength",
       "0 for about a quarter of the compounds, else uniform in [0.3, 1.5); "
       "compound-specific, not fragment-derived"}};
  j["morphology_parameters"] = Json::array();
  for (int p = 0; p < kNumMorphParams; ++p)
    j["morphology_parameters"].push_back(
        {{"name", MorphParamName(p)}, {"max_delta", MorphParamMaxDelta(p)}});
  j["morphology_loadings"] = world.m;
  j["genes"] = Json::array();
  for (size_t g = 0; g < kNumLandmarkGenes; ++g) {
    j["genes"].push_back({{"probe_id", LandmarkGenes()[g].probe_id},
                          {"symbol", LandmarkGenes()[g].symbol},
                          {"mean", world.gene_mean[g]},
                          {"sd", world.gene_sd[g]}});
  }
  j["expression_loadings"] = world.w;
  Json fragments = {{"scaffold_weight", kScaffoldWeight},
                    {"substituent_weight", kSubstituentWeight},
                    {"specific_weight", kSpecificWeight},
                    {"scaffolds", Json::array()},
                    {"substituents", Json::array()}};
  for (int t = 0; t < kNumScaffolds; ++t) {
    fragments["scaffolds"].push_back({{"name", kScaffolds[t].name},
                                      {"smiles", kScaffolds[t].smiles},
                                      {"vector", world.scaffold_vec[t]}});
  }
  for (int t = 0; t < kNumSubstituents; ++t) {
    fragments["substituents"].push_back({{"name", kSubstituents[t].name},
                                         {"smiles", kSubstituents[t].smiles},
                                         {"vector", world.substituent_vec[t]}});
  }
  j["fragments"] = fragments;
  j["compounds"] = Json::array();
  for (int c = 0; c < static_cast<int>(world.compounds.size()); ++c) {
    const Compound& cp = world.compounds[c];
    Json doses = Json::array();
    for (const Treatment& t : world.treatments) {
      if (t.compound != c) continue;
      Json morph;
      for (int p = 0; p < kNumMorphParams; ++p) morph[MorphParamName(p)] = t.morph[p];
      doses.push_back({{"mmoles_per_liter", t.mmoles_per_liter},
                       {"pert_sample_dose", t.key},
                       {"effect", t.effect},
                       {"morphology_delta", morph},
                       {"expression_shift", t.shift}});
    }
    Json substituents = Json::array();
    for (size_t i = 0; i < cp.substituents.size(); ++i) {
      substituents.push_back({{"name", kSubstituents[cp.substituents[i]].name},
                              {"smiles", kSubstituents[cp.substituents[i]].smiles},
                              {"attachment_weight", cp.attachment_weight[i]}});
    }
    j["compounds"].push_back({{"broad_sample", cp.broad_sample},
                              {"pert_id", cp.pert_id},
                              {"name", cp.name},
                              {"smiles", cp.smiles},
                              {"scaffold_name", kScaffolds[cp.scaffold].name},
                              {"scaffold_smiles", kScaffolds[cp.scaffold].smiles},
                              {"substituents", substituents},
                              {"strength", cp.strength},
                              {"latent", cp.z},
                              {"doses", doses}});
  }
  j["cp_plates"] = Json::array();
  for (const CpPlate& plate : world.cp_plates) {
    Json gains;
    for (int ch = 0; ch < kNumChannels; ++ch) gains[ChannelName(ch)] = plate.gains[ch];
    const auto dmso = std::count_if(plate.wells.begin(), plate.wells.end(),
                                    [](const Well& w) { return w.treatment < 0; });
    j["cp_plates"].push_back({{"barcode", plate.barcode},
                              {"plate_map_name", plate.map_name},
                              {"channel_gain", gains},
                              {"dmso_wells", dmso}});
  }
  j["l1000_plates"] = Json::array();
  for (const L1000Plate& plate : world.l1000_plates) {
    j["l1000_plates"].push_back({{"det_plate", plate.det_plate}, {"offset", plate.offset}});
  }
  return WriteText(path, j.dump(1) + "\n");
}

}  // namespace

absl::Status SynthOptions::Validate() const {
  auto check = [](bool ok, const char* field, int value, const char* range) {
    return ok ? absl::OkStatus()
              : absl::InvalidArgumentError(
                    absl::StrFormat("synth: %s = %d, expected %s", field, value, range));
  };
  CF_RETURN_IF_ERROR(check(plates >= 1 && plates <= 1000, "plates", plates, "1..1000"));
  CF_RETURN_IF_ERROR(
      check(compounds >= 1 && compounds <= 100000, "compounds", compounds, "1..100000"));
  if (compounds > FragmentCapacity()) {  // not reached: the library makes more than 100000
    return absl::InvalidArgumentError(
        absl::StrFormat("synth: compounds = %d, expected at most %d (the distinct structures of "
                        "the fragment library)",
                        compounds, FragmentCapacity()));
  }
  CF_RETURN_IF_ERROR(
      check(image_width >= 16 && image_width <= 4096, "image width", image_width, "16..4096"));
  CF_RETURN_IF_ERROR(
      check(image_height >= 16 && image_height <= 4096, "image height", image_height, "16..4096"));
  CF_RETURN_IF_ERROR(check(sites >= 1 && sites <= 9, "sites", sites, "1..9"));
  CF_RETURN_IF_ERROR(check(min_dmso_wells >= 1, "min_dmso_wells", min_dmso_wells, ">= 1"));
  CF_RETURN_IF_ERROR(check(wells_per_plate > min_dmso_wells && wells_per_plate <= kWellsPerPlate384,
                           "wells_per_plate", wells_per_plate, "min_dmso_wells+1..384"));
  CF_RETURN_IF_ERROR(check(max_cp_replicates >= 2, "max_cp_replicates", max_cp_replicates, ">= 2"));
  CF_RETURN_IF_ERROR(check(latent_dim >= 1 && latent_dim <= 64, "latent_dim", latent_dim, "1..64"));
  CF_RETURN_IF_ERROR(check(l1000_plates >= 1, "l1000_plates", l1000_plates, ">= 1"));
  CF_RETURN_IF_ERROR(check(l1000_replicates >= 1, "l1000_replicates", l1000_replicates, ">= 1"));
  CF_RETURN_IF_ERROR(
      check(l1000_dmso_per_plate >= 1, "l1000_dmso_per_plate", l1000_dmso_per_plate, ">= 1"));
  return check(threads >= 1 && threads <= 256, "threads", threads, "1..256");
}

std::string PythonDoseString(double x) { return FloatString(std::round(x * 100.0) / 100.0, 2); }

absl::StatusOr<SynthSummary> WriteSynthDataset(const SynthOptions& options,
                                               const std::string& out_dir) {
  CF_RETURN_IF_ERROR(options.Validate());
  World world = BuildWorld(options);
  SynthRng layout_rng(MixSeed(options.seed, kCpLayout));
  CF_RETURN_IF_ERROR(BuildCpPlates(options, layout_rng, world));
  BuildL1000Plates(options, layout_rng, world);

  SynthSummary summary;
  summary.treatments = static_cast<int>(world.treatments.size());
  for (const CpPlate& plate : world.cp_plates)
    summary.wells += static_cast<int>(plate.wells.size());
  CF_RETURN_IF_ERROR(MakeDirs(out_dir));
  CF_RETURN_IF_ERROR(WritePlateMaps(world, out_dir + "/platemaps"));
  CF_RETURN_IF_ERROR(WriteL1000(options, world, out_dir + "/l1000", &summary.l1000_rows));
  CF_RETURN_IF_ERROR(WriteGroundTruth(options, world, out_dir + "/ground_truth.json"));
  CF_RETURN_IF_ERROR(WriteImages(options, world, out_dir + "/images", &summary.images));
  return summary;
}

}  // namespace cellflux

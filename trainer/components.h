// Pieces several stages share: the model with its frozen autoencoders loaded from the earlier
// stages, and the vocabularies a checkpoint carries.
#ifndef CELLFLUX_TRAINER_COMPONENTS_H_
#define CELLFLUX_TRAINER_COMPONENTS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "common/checkpoint/vocab_tsv.h"
#include "common/data/manifest.h"
#include "common/models/cellflux_model.h"
#include "trainer/stages.h"

namespace cellflux::trainer {

// CellFluxModel(ctx.model) seeded with ctx.config.seed, with the gene autoencoder from
// work_dir/gene_ae and the VAE from work_dir/vae (FAILED_PRECONDITION naming the stage to run
// when missing), on ctx.device.
absl::StatusOr<CellFluxModel> BuildModelWithComponents(const StageContext& ctx);

std::vector<PerturbationEntry> VocabularyEntries(const data::Manifest& m);

// For a structure encoder (ctx.model.sit.uses_structure()): parses every vocabulary compound's
// SMILES with RDKit (common/chem), replaces it with the parent's canonical SMILES (what the
// checkpoint carries), and writes the fingerprints and doses into the SiT's structure table.
// Compounds without a parsable structure keep an all-zero fingerprint (the encoder then sees only
// their dose); they are logged with the reason. Returns how many have none. No-op (0) for an id
// model.
absl::StatusOr<int> ApplyVocabularyStructures(CellFluxModel& model,
                                              std::vector<PerturbationEntry>& vocab);
std::vector<GeneEntry> GeneEntries(const data::Manifest& m);

}  // namespace cellflux::trainer

#endif  // CELLFLUX_TRAINER_COMPONENTS_H_

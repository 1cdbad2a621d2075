// The smallest CellFluxMM config the model and trainer tests build: 16×16 images of 5 channels →
// 20 latent channels at 8×8, a 2-block SiT of width 32, 16 genes, 4 perturbations. Random weights
// run a forward in milliseconds on one CPU core.
#ifndef CELLFLUX_TESTS_TESTING_SMALL_MODEL_CONFIG_H_
#define CELLFLUX_TESTS_TESTING_SMALL_MODEL_CONFIG_H_

#include "common/models/config.h"

namespace cellflux::testing {

inline ModelConfig SmallModelConfig() {
  ModelConfig c;
  c.image_size = 16;
  c.vae.block_out_channels = {8, 8};
  c.vae.layers_per_block = 1;
  c.vae.norm_num_groups = 4;
  c.vae.scaling_factor = 1.0;
  c.sit.input_size = 8;
  c.sit.patch_size = 4;
  c.sit.in_channels = 20;
  c.sit.hidden_size = 32;
  c.sit.depth = 2;
  c.sit.num_heads = 2;
  c.sit.num_classes = 4;
  c.sit.gene_latent_dim = 8;
  c.sit.gene_tokens = 2;
  c.gene_ae.num_genes = 16;
  c.gene_ae.hidden_dims = {16};
  c.gene_ae.latent_dim = 8;
  return c;
}

}  // namespace cellflux::testing

#endif  // CELLFLUX_TESTS_TESTING_SMALL_MODEL_CONFIG_H_

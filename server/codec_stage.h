// Stage 3 of the scheduler: the codec stage, which runs the encoders and decoders (VAE + gene
// autoencoder) beside the step loop so the velocity forwards never wait for them.
//
// Jobs: an encode is a whole task (one Backend::Encode call for its num_samples seeds; the task
// comes from the admission queue through CodecClient::ClaimEncode, which decides the order); a
// decode is one retired row (one Backend::Decode call). Workers take encodes first (they keep the
// batch full), then decodes in the order the rows retired, one job at a time, so an encode that
// arrives waits for at most one decode.
//
//   CodecStage(options, client)  starts options.threads workers ("cf-codec")
//   NotifyEncodeWork()            the admission queue may have a task to encode
//   SubmitDecode(rows)            rows (kDecoding) to decode, in order
//   Help()                        the step loop lends a hand: see below
//   Abort()                       pending and later decodes fail with UNAVAILABLE instead
//   Finish()                      runs (or, after Abort, fails) the pending decodes, then joins the
//                                 workers; encodes not yet claimed are left. Idempotent; blocks.
//
// Lending a hand: on a small CPU the encoders and decoders cost about as much as the forwards;
// when every worker is inside a job and more work waits, samples sit outside a part-empty batch.
// Then Help() runs one job (a decode, else an encode) on the calling thread and returns true. It
// never runs a job while a worker is free, so the step loop only helps when the stage is behind.
//
// Results go to the CodecClient (the scheduler): Encoded(task, latents or error) and
// Decoded(row, output or error), on the thread that ran the job, with no codec lock held.
//
// Device streams: on CUDA the backend runs each codec thread's jobs on a stream of that thread's
// own (device_streams.h), so they overlap the step loop's forwards on the GPU as well.
//
// Thread-safety: every method is thread-safe. One mutex, never held while calling the backend
// or the client.
//
// Implementation details follow; API users need not read.
//
// Invariants (under mu_):
//  * busy_ = workers inside a backend call (≤ threads); it drops before the job's result is
//    reported, so once a result is visible its worker no longer counts as busy;
//  * decodes_ holds kDecoding rows in retirement order; each row is taken by exactly one thread;
//  * after finishing_, workers exit once decodes_ is empty, and claim no more encodes.
#ifndef CELLFLUX_SERVER_CODEC_STAGE_H_
#define CELLFLUX_SERVER_CODEC_STAGE_H_

#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/sample.h"

namespace cellflux::server {

class CodecClient {
 public:
  virtual ~CodecClient() = default;
  // The next task to encode (its samples now kEncoding), or null.
  virtual std::shared_ptr<TaskState> ClaimEncode() = 0;
  // rows[k] = z_0 of sample k ([1, ...] each), or the error.
  virtual void Encoded(const std::shared_ptr<TaskState>& task,
                       absl::StatusOr<std::vector<JointLatent>> rows) = 0;
  virtual void Decoded(Sample row, absl::StatusOr<SampleOutput> output) = 0;
};

struct CodecStageOptions {
  int threads = 1;  // workers; ≥ 1
};

class CodecStage {
 public:
  // client is not owned and must outlive the stage.
  CodecStage(const CodecStageOptions& options, CodecClient* client);
  ~CodecStage();  // Finish()
  CodecStage(const CodecStage&) = delete;
  CodecStage& operator=(const CodecStage&) = delete;

  void NotifyEncodeWork();
  void SubmitDecode(std::vector<Sample> rows);
  // decodes = false: help only with an encode (rows in flight would wait for a decode).
  bool Help(bool decodes);
  void Abort();
  void Finish();

 private:
  void Work();
  // Claims and runs one encode; false when there was none to claim.
  bool RunEncode(bool worker);
  void RunDecode(Sample row, bool worker);

  const CodecStageOptions options_;
  CodecClient* const client_;

  absl::Mutex mu_;
  std::deque<Sample> decodes_ ABSL_GUARDED_BY(mu_);
  bool encode_hint_ ABSL_GUARDED_BY(mu_) = false;  // a task may be waiting to be encoded
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex finish_mu_;  // serialises Finish() callers
  std::vector<std::thread> workers_;
};

}  // namespace cellflux::server

#endif  // CELLFLUX_SERVER_CODEC_STAGE_H_

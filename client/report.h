// report.html: one self-contained page (no external files or network: images are inlined as
// base64 PNG data URIs, styles inline) for looking at a screen.
//
// Per perturbation (in plan order): a compound section — the mean Δ over all its rows (each from
// its own control), its top up- and down-regulated genes and how many rows agree on each gene's
// sign — then per plan row: the control composite (or a note that the control lives in the server's
// bank), the generated composites (up to `max_samples_shown`), and two tables of genes: the top
// `top_genes` up- and down-regulated, ranked by the mean over samples of generated minus control
// expression. Rows whose control came from the bank have no control expression on the client; they
// are ranked against the mean of all predictions in the screen instead, and the table says so.
// Failed rows are listed at the end with the server's message.
#ifndef CELLFLUX_CLIENT_REPORT_H_
#define CELLFLUX_CLIENT_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/plan.h"
#include "client/row_record.h"
#include "client/screen_outputs.h"

namespace cellflux::client {

struct ReportOptions {
  int max_rows = 500;         // rows with panels; the rest are only counted
  int max_samples_shown = 4;  // generated panels per row
  int top_genes = 10;         // genes per up / down table
};

// Writes `<out_dir>/report.html` atomically; reads the composites named by `records` from out_dir.
absl::Status WriteReport(const std::string& out_dir, const Plan& plan,
                         const std::vector<RowRecord>& records,
                         const std::vector<RowFailure>& failures, const ReportOptions& options);

// HTML-escapes text (&, <, >, ", ').
std::string HtmlEscape(const std::string& text);

}  // namespace cellflux::client

#endif  // CELLFLUX_CLIENT_REPORT_H_

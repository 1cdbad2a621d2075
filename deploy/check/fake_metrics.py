#!/usr/bin/python3
"""A stand-in /metrics endpoint with the metric families of server/metrics.h whose counters grow on
every scrape. Only for developing the dashboard and rules without a built server:
    scripts/monitoring_check.sh --fake-server BUILD_DIR
The real check (tests/deploy) scrapes the real cellflux-server.

    fake_metrics.py --listen 127.0.0.1:PORT --seconds 120
"""
import argparse
import http.server
import threading

N = [0]
DUR = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 600]
BATCH = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def histo(name, labels, bounds, value, n):
    lines = [f"# TYPE {name} histogram"]
    sep = "," if labels else ""
    for b in bounds:
        lines.append(f'{name}_bucket{{{labels}{sep}le="{b}"}} {n if value <= b else 0}')
    lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {n}')
    lines.append(f"{name}_sum{{{labels}}} {value * n}")
    lines.append(f"{name}_count{{{labels}}} {n}")
    return lines


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        N[0] += 1
        n = N[0]
        out = ["# TYPE cellflux_requests_total counter",
               f'cellflux_requests_total{{method="Predict",code="OK"}} {4 * n}',
               f'cellflux_requests_total{{method="Predict",code="INVALID_ARGUMENT"}} {n}',
               f'cellflux_requests_total{{method="GetModelInfo",code="OK"}} {n}']
        out += histo("cellflux_request_duration_seconds", 'method="Predict"', DUR, 0.3, 5 * n)
        out += histo("cellflux_queue_duration_seconds", "", DUR, 0.01, 4 * n)
        out += histo("cellflux_compute_duration_seconds", "", DUR, 0.2, 4 * n)
        out += histo("cellflux_batch_size", "", BATCH, 6, 16 * n)
        out += ["# TYPE cellflux_queue_depth gauge", f"cellflux_queue_depth {n % 3}",
                "# TYPE cellflux_active_samples gauge", f"cellflux_active_samples {n % 8}",
                "# TYPE cellflux_samples_total counter", f"cellflux_samples_total {8 * n}",
                "# TYPE cellflux_euler_steps_total counter", f"cellflux_euler_steps_total {64 * n}",
                "# TYPE cellflux_model_info gauge", 'cellflux_model_info{model_id="fake"} 1',
                "# TYPE cellflux_model_step gauge", "cellflux_model_step 0",
                "# TYPE cellflux_model_load_seconds gauge", "cellflux_model_load_seconds 1.5",
                "# TYPE cellflux_reload_failures_total counter", "cellflux_reload_failures_total 0",
                "# TYPE cellflux_gpu_memory_bytes gauge", "cellflux_gpu_memory_bytes 0",
                "# TYPE cellflux_nonfinite_outputs_total counter",
                "cellflux_nonfinite_outputs_total 0",
                "# TYPE cellflux_structure_cache_hits_total counter",
                f"cellflux_structure_cache_hits_total {3 * n}",
                "# TYPE cellflux_structure_cache_misses_total counter",
                f"cellflux_structure_cache_misses_total {n}"]
        body = ("\n".join(out) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--seconds", type=float, default=120)
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    threading.Timer(args.seconds, server.shutdown).start()  # stops by itself
    server.serve_forever()


if __name__ == "__main__":
    main()

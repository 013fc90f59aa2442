"""Prometheus metrics, served at /metrics."""

from prometheus_client import Counter, Gauge, Histogram

BUILDS = Counter("binderlab_builds_total", "Builds that ended, by outcome.", ["outcome"])
BUILDER_RUNS = Counter("binderlab_builder_runs_total", "Times the builder (repo2docker) was run.")
BUILD_SECONDS = Histogram(
    "binderlab_build_duration_seconds", "Build duration, by outcome.", ["outcome"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
CACHE = Counter("binderlab_image_cache_total", "Image look-ups, by result.", ["result"])
LAUNCHES = Counter("binderlab_launches_total", "Launches that ended, by outcome.", ["outcome"])
LAUNCH_SECONDS = Histogram(
    "binderlab_launch_duration_seconds", "Time from launch request to ready, by outcome.",
    ["outcome"], buckets=(0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300),
)
GPUS_TOTAL = Gauge("binderlab_gpus_total", "GPU devices sessions can get.")
GPUS_IN_USE = Gauge("binderlab_gpus_in_use", "GPU devices held by sessions or launches.")
GPU_QUEUE = Gauge("binderlab_gpu_queue_length", "Launches waiting for a GPU.")
SESSIONS = Gauge("binderlab_sessions_running", "Sessions of this host running now.")
BUILDS_WAITING = Gauge("binderlab_builds_waiting", "Builds waiting for a build slot.")
BUILDS_RUNNING = Gauge("binderlab_builds_running", "Builds running now.")
REPO_DISK_BYTES = Gauge("binderlab_repo_disk_bytes",
                        "Bytes git mirrors and content archives take on the state disk.")
DISK_REFUSALS = Counter("binderlab_disk_refusals_total",
                        "Launches refused to protect the state disk, by reason.", ["reason"])
FINGERPRINT_FAILURES = Counter("binderlab_fingerprint_failures_total",
                               "Fingerprints that failed, by reason.", ["reason"])
BUILDS_REFUSED = Counter("binderlab_builds_refused_total",
                         "Builds refused before they started, by reason.", ["reason"])
WEBHOOK_DELIVERIES = Counter("binderlab_webhook_deliveries_total",
                             "GitHub webhook deliveries, by what became of them.", ["result"])
POOL_WARM = Gauge("binderlab_pool_warm_sessions",
                  "Warm-pool sessions started and waiting for a launch (not user sessions).")
POOL_STARTING = Gauge("binderlab_pool_starting_sessions", "Warm-pool sessions starting now.")
POOL_CLAIMS = Counter("binderlab_pool_claims_total",
                      "Launches that asked the warm pool, by result (hit, miss).", ["result"])
POOL_FAILURES = Counter("binderlab_pool_start_failures_total",
                        "Warm-pool sessions that failed to start.")

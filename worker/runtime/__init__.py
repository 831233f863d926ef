"""The process around the loop: the watchdog, periodic threads, the HTTP endpoints, the
Prometheus metrics and the logs."""

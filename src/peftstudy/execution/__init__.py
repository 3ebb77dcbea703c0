"""How jobs run: the job wrapper, the zygote that keeps the stack imported, cluster settings, and the
Snakefile-side helpers (fingerprints, the failure report)."""

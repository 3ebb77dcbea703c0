"""Metrics: quality (quality.py), diversity (diversity.py), efficiency (efficiency.py), costs (cost.py), and
scoring a run into the tidy metrics table (scoring.py).

Nothing is imported here: training and generation import efficiency.py alone, and the workflow's code
fingerprints (execution.snakefile.import_closure) follow imports, so an edit to scoring must not redo training.
"""

"""The claims of the reproduced papers checked against this study's measurements (spec: study.claims)."""

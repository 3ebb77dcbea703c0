"""The study: its config (validated against ``study.schema.yaml``), the run matrix, per-run settings, the claim spec.

Everything downstream reads a study through these names; the schema ships inside the package.
"""

from peftstudy.study.config import (
    STATISTICS_DEFAULTS,
    StudyConfigError,
    load_schema,
    load_studies,
    load_study,
    read_yaml,
    shared_definitions_conflicts,
    validate_study,
)
from peftstudy.study.matrix import (
    Run,
    expand_runs,
    is_excluded,
    method_variants,
    parse_variant,
    variant_name,
)
from peftstudy.study.settings import method_options, run_settings, training_settings

__all__ = [
    "STATISTICS_DEFAULTS", "StudyConfigError", "load_schema", "load_study", "load_studies", "read_yaml", "shared_definitions_conflicts",
    "validate_study", "Run", "expand_runs", "is_excluded", "method_variants", "parse_variant", "variant_name",
    "method_options", "run_settings", "training_settings",
]

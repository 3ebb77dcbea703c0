"""Statistics over seeds, from the tidy metrics table (scipy and statsmodels do the maths).

Every function takes the tidy metrics table (study, dataset, model, method, rank, seed, metric, value),
drops NaN values (not measured) and returns a tidy DataFrame in a deterministic row order:

* describe: per cell n, mean, SD and a t (or seeded bootstrap) CI            -> summarise
* compare: pairwise paired/Welch t, Holm or BH, Hedges' g, practical labels -> pairwise_comparisons
* anova: one-way with checks, Welch and Kruskal-Wallis; Tukey HSD; two-way  -> one_way_anova, tukey_hsd, two_way_anova
* correlation: Pearson and Spearman between metrics across runs              -> metric_correlations
* rank_study: per-rank means, knee, best rank and its bootstrap stability    -> rank_study
* power: power achieved and seeds needed for the practical threshold         -> seed_power
* degenerate: when a statistic is undefined at the data in hand, and why      -> why_undefined, is_constant
"""

from __future__ import annotations

from peftstudy.stats.anova import one_way_anova, tukey_hsd, two_way_anova
from peftstudy.stats.compare import (
    correct_p_values,
    hedges_g,
    pairwise_comparisons,
    pooled_sd,
)
from peftstudy.stats.correlation import metric_correlations
from peftstudy.stats.degenerate import is_constant, why_undefined
from peftstudy.stats.describe import bootstrap_interval, confidence_interval, summarise
from peftstudy.stats.direction import HIGHER_IS_BETTER, higher_is_better
from peftstudy.stats.power import seed_power
from peftstudy.stats.practical import label_practical_significance, practical_label
from peftstudy.stats.rank_study import rank_study
from peftstudy.stats.tables import read_metrics, read_table, select_metrics
from peftstudy.stats.tidy import CELL, FAMILY, RUN

__all__ = [
    "CELL", "RUN", "FAMILY", "HIGHER_IS_BETTER",
    "read_metrics", "read_table", "select_metrics",
    "confidence_interval", "bootstrap_interval", "summarise",
    "pairwise_comparisons", "correct_p_values", "hedges_g", "pooled_sd",
    "practical_label", "label_practical_significance",
    "one_way_anova", "tukey_hsd", "two_way_anova",
    "metric_correlations", "rank_study", "seed_power", "higher_is_better", "why_undefined", "is_constant",
]

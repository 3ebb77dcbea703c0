"""The output catalogue: every table and figure of the paper, the rule that builds it, in the paper's order.

The workflow (targets, each rule's wildcard constraint), the paper's Results section and its figure pages all
read this one catalogue: adding a table means one entry here and its renderer.
"""

from __future__ import annotations

# The paper's figures (each a target under reports/{study}/figures/) and their captions: what n is, what is drawn.
FIGURES = {  # name: caption
    "rank_saturation": ("Rank study: mean quality per LoRA rank with its confidence band over the seeds, the"
                        " saturation point (dashed, Kneedle) and the best rank by the declared rule (star; the share of"
                        " seed bootstraps choosing it in each panel's title). Table~\\ref{tab:rank_study} has the numbers."),
    "quality_vs_parameters": ("Quality against trainable parameters (log scale) on the Table-1 dataset: each variant's"
                              " mean ($\\pm$ sd over seeds when $n > 1$); the line is the Pareto front (no variant has"
                              " fewer trainable parameters and higher quality)."),
    "efficiency": ("Training peak memory, time and energy per variant on the Table-1 dataset: means with sd error"
                   " bars over the seeds ($n$ as in Table~\\ref{tab:methods}); a quantity this hardware cannot measure"
                   " is marked not measured, never drawn as zero."),
    "correlation_heatmap": ("Pearson correlation between the compared metrics across every run on the Table-1 dataset;"
                            " * marks $p < \\alpha$ (uncorrected; Table~\\ref{tab:correlations})."),
    "diversity": ("Diversity of the outputs per variant on the Table-1 dataset: distinct-1/2, MATTR and the mean"
                  " pairwise cosine similarity of the outputs' embeddings (means $\\pm$ sd over seeds)."),
    "output_clusters": ("Semantic clustering of the outputs: every method variant's test outputs (first seed) embedded"
                        " with the sentence-embedding model and projected on their first two principal components; the"
                        " legend gives each variant's number of clusters (average linkage, cosine distance threshold"
                        " from the config). Methods whose outputs collapse to one point produce the same text for every"
                        " input."),
}


# The Results section: (subsection heading, whether it starts a page, its tables), in order.
RESULTS_SECTIONS = (
    (None, False, ("table1_methods", "learned", "significance", "anova", "power")),
    ("The data", True, ("data_card",)),
    ("The papers' claims beside this study's measurements", True, ("claims_check",)),
    ("Integrity of the results table", True, ("integrity",)),
    ("Adaptive seeds", False, ("adaptive_seeds",)),
    ("Rank, quantization, architecture and domain", True, ("rank_study", "qlora", "architecture", "domain")),
    ("Quality, diversity, efficiency and cost", True, ("quality", "diversity", "efficiency", "cost", "correlations")),
    ("Classification and question answering", True, ("classification", "extractive_qa", "per_class")),
    ("Human evaluation", False, ("table2_human", "human_errors")),
)

# The rule that builds each output (report.smk, human_eval.smk); a rule with several outputs takes the name as its
# {table} or {figure} wildcard, constrained to exactly the names listed here.
TABLE_RULES = {
    "table1_methods": "table1_methods", "learned": "learned_table", "significance": "significance_table", "data_card": "data_card",
    "claims_check": "claims_table", "integrity": "integrity_table", "adaptive_seeds": "adaptive_seeds_table", "table2_human": "human_tables", "human_errors": "human_tables",
    **{name: "stats_table" for name in ("anova", "power", "rank_study", "qlora", "architecture", "domain",
                                        "correlations")},
    **{name: "metric_table" for name in ("quality", "diversity", "efficiency", "cost", "classification",
                                         "extractive_qa", "per_class")},
}
FIGURE_RULES = {
    **{name: "figure_stats" for name in ("rank_saturation", "quality_vs_parameters", "efficiency",
                                         "correlation_heatmap", "diversity")},
    "output_clusters": "figure_output_clusters",
}


def paper_tables() -> list[str]:
    return [name for _, _, tables in RESULTS_SECTIONS for name in tables]


def outputs_of(rule: str) -> list[str]:
    """The tables or figures one rule builds, in the paper's order (a table and a figure may share a name)."""
    return ([name for name in paper_tables() if TABLE_RULES[name] == rule]
            + [name for name in FIGURES if FIGURE_RULES[name] == rule])


def wildcard_constraint(rule: str) -> str:
    """The regex a rule's {table} or {figure} wildcard must match: exactly its outputs' names."""
    names = outputs_of(rule)
    if not names:
        raise ValueError(f"rule {rule!r} builds no table or figure of the catalogue")
    return "|".join(names)

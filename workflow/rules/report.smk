# Tables (each its own target, CSV twin + booktabs .tex) and the paper PDF.


rule table1_methods:
    input:
        summary="results/{study}/stats/summary.csv",
        tests="results/{study}/stats/welch_tests.csv",
    output:
        csv="reports/{study}/tables/table1_methods.csv",
        tex="reports/{study}/tables/table1_methods.tex",
    params:
        study=study_of,
    log:
        "logs/{study}/table1_methods.log",
    script:
        "../scripts/table1_methods.py"


rule significance_table:
    input:
        tests="results/{study}/stats/welch_tests.csv",
    output:
        csv="reports/{study}/tables/significance.csv",
        tex="reports/{study}/tables/significance.tex",
    params:
        study=study_of,
    log:
        "logs/{study}/significance_table.log",
    script:
        "../scripts/significance_table.py"


rule paper_tex:
    input:
        tables=paper_tables,
        metrics="results/{study}/metrics.csv",
        data=study_data_manifests,
        runs=lambda w: run_paths(w.study, "metrics.json"),
    output:
        "reports/{study}/paper.tex",
    params:
        study=study_of,
    log:
        "logs/{study}/paper_tex.log",
    script:
        "../scripts/paper_tex.py"


rule paper_pdf:
    input:
        tex="reports/{study}/paper.tex",
        tables=paper_tables,
        figures=paper_figures,
    output:
        "reports/{study}/paper.pdf",
    log:
        "logs/{study}/paper_pdf.log",
    script:
        "../scripts/paper_pdf.py"


# The measured metrics by group (quality, diversity, efficiency, cost), each table its own target.
rule metric_table:
    input:
        summary="results/{study}/stats/summary.csv",
        metrics="results/{study}/metrics.csv",
    output:
        csv="reports/{study}/tables/{table}.csv",
        tex="reports/{study}/tables/{table}.tex",
    wildcard_constraints:
        table="quality|diversity|efficiency|cost|classification|extractive_qa|per_class",
    params:
        study=study_of,
    log:
        "logs/{study}/metric_table_{table}.log",
    script:
        "../scripts/metric_table.py"


rule figure_output_clusters:
    input:
        generations=lambda w: [s["generations"] for p in cluster_figure_panels(w) for s in p["series"]],
        metrics=lambda w: [s["metrics"] for p in cluster_figure_panels(w) for s in p["series"]],
    output:
        "reports/{study}/figures/output_clusters.pdf",
    params:
        panels=cluster_figure_panels,
        embedding_model=lambda w: study_of(w).get("metrics", {}).get("embeddings", {}).get("model", "all-MiniLM-L6-v2"),
    log:
        "logs/{study}/figure_output_clusters.log",
    script:
        "../scripts/figure_output_clusters.py"

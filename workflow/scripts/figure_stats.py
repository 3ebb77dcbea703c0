from peftstudy import stats
from peftstudy.execution.jobs import logged
from peftstudy.report import figures

with logged(snakemake):
    study, name, out = snakemake.params.study, snakemake.wildcards.figure, snakemake.output[0]
    if name == "rank_saturation":
        figures.rank_saturation(stats.read_table(snakemake.input.rank_study), study, out)
    elif name == "correlation_heatmap":
        figures.correlation_heatmap(stats.read_table(snakemake.input.correlations), study, out)
    else:
        draw = {"quality_vs_parameters": figures.quality_vs_parameters, "efficiency": figures.efficiency_bars,
                "diversity": figures.diversity_comparison}[name]
        draw(stats.read_table(snakemake.input.summary), study, out)

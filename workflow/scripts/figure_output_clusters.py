from peftstudy.execution import zygote
from peftstudy.execution.jobs import logged

with logged(snakemake):
    zygote.call("peftstudy.report.figures:output_clusters_from_runs", snakemake.params.panels, snakemake.params.embedding_model,
                snakemake.output[0], log=snakemake.log[0])

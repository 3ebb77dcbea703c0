from peftstudy import zygote
from peftstudy.workflow_support import logged

with logged(snakemake):
    zygote.call("peftstudy.figures:output_clusters_from_runs", snakemake.params.panels, snakemake.params.embedding_model,
                snakemake.output[0], log=snakemake.log[0])

from peftstudy import figures, io
from peftstudy.workflow_support import logged

with logged(snakemake):
    panels = [{**panel, "series": [{**s, "clusters": int(io.read_json(s["metrics"])["metrics"]["semantic_clusters"])}
                                   for s in panel["series"]]} for panel in snakemake.params.panels]
    figures.output_clusters(panels, snakemake.params.embedding_model, snakemake.output[0])

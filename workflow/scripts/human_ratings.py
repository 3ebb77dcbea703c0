import csv

from peftstudy import human_eval, io
from peftstudy.execution.jobs import logged

with logged(snakemake):
    with open(snakemake.input.key, newline="", encoding="utf-8") as handle:
        key = list(csv.DictReader(handle))
    known = {row["item"] for row in key}
    # Every sheet is checked before anything is written: a bad one fails the job with no output.
    ratings = human_eval.read_all_ratings(snakemake.input.ratings, known)
    result = human_eval.summarise_ratings(ratings, key)
    for name in ("table2", "agreement", "errors", "ratings"):
        with io.atomic_path(snakemake.output[name]) as tmp:
            result[name].to_csv(tmp, index=False)

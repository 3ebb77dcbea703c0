from peftstudy import human_eval
from peftstudy.workflow_support import logged

with logged(snakemake):
    settings = snakemake.params.settings
    runs = [(run, f"{run['directory']}/generations.jsonl") for run in snakemake.params.runs]
    sheet, key = human_eval.build_sheet(runs, settings["examples_per_cell"], settings["seed"],
                                        secret=f"{snakemake.wildcards.study}:{settings['seed']}")
    human_eval.write_csv(snakemake.output.sheet, sheet, human_eval.SHEET_COLUMNS)
    human_eval.write_csv(snakemake.output.key, key, human_eval.KEY_COLUMNS)

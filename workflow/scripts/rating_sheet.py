from peftstudy import human_eval, io
from peftstudy.execution.jobs import logged

with logged(snakemake):
    settings = snakemake.params.settings
    runs = [(run, f"{run['directory']}/generations.jsonl") for run in snakemake.params.runs]
    # Kept beside the key, not in the sheet or the config: made on the first run, reused on every rerun.
    secret = human_eval.blinding_secret(human_eval.secret_path(snakemake.output.key))
    sheet, key = human_eval.build_sheet(runs, settings["examples_per_cell"], settings["seed"], secret=secret)
    io.write_csv(snakemake.output.sheet, sheet, list(human_eval.SHEET_COLUMNS))
    io.write_csv(snakemake.output.key, key, list(human_eval.KEY_COLUMNS))

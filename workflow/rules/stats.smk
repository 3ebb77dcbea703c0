# Statistics over seeds from the tidy metrics table.


rule statistics:
    input:
        "results/{study}/metrics.csv",
    output:
        summary="results/{study}/stats/summary.csv",
        tests="results/{study}/stats/welch_tests.csv",
    params:
        statistics=lambda w: study_of(w)["statistics"],
    log:
        "logs/{study}/statistics.log",
    script:
        "../scripts/statistics.py"
